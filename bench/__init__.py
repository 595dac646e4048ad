"""Benchmarks: each prints a ratio against a raw baseline measured in the same run.

Run all with ``python -m bench.run_all`` (``make bench``), or one with
``python -m bench.bench_throughput`` etc.; ``--quick`` makes a short smoke run.
"""
