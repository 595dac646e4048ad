"""Fixtures of the LAN tests: a `lan` of network namespaces (see netns.py) and the CLI
helpers the tests use to drive `chinwag-cli run` processes over their control sockets."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .netns import ENV, Lan, _ip, make_profiles, make_strangers, namespaces_unavailable

__all__ = [
    "ENV",
    "Lan",
    "bodies",
    "cli",
    "cli_json",
    "contacts",
    "make_profiles",
    "make_strangers",
    "online",
    "wait_until",
]


@pytest.fixture
def lan(tmp_path: Path) -> Iterator[Lan]:
    reason = namespaces_unavailable()
    if reason is not None:
        pytest.skip(reason)
    net = Lan(tmp_path)
    try:
        yield net
    finally:
        net.cleanup()
        net.dump()
        leftovers = [ns for ns in _ip("netns", "list").stdout.split() if ns.startswith(net.prefix)]
        assert not leftovers, f"namespaces left behind: {leftovers}"


# -- driving the peers --------------------------------------------------------------------


def cli(
    profile: Path, *args: str, check: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """chinwag-cli in the test's own namespace (it reaches a running peer by its socket)."""
    result = subprocess.run(
        [sys.executable, "-m", "messenger.cli", "--profile", str(profile), *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"chinwag-cli {args} failed: {result.stderr}")
    return result


def cli_json(profile: Path, *args: str, timeout: float = 60) -> object:
    return json.loads(cli(profile, *args, "--json", timeout=timeout).stdout)


def contacts(profile: Path) -> dict[str, dict[str, object]]:
    rows = cli_json(profile, "contacts")
    assert isinstance(rows, list)
    return {str(r["name"]): r for r in rows}


def bodies(profile: Path, contact: str) -> list[str]:
    history = cli_json(profile, "history", contact, "--limit", "500")
    assert isinstance(history, dict)
    return [m["body"] for m in history["messages"]]


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 20.0,
    what: str = "condition",
    every: float = 0.1,
) -> float:
    """Poll until predicate() is true (every `every` s); returns the seconds it took."""
    start = time.monotonic()
    last: object = None
    while time.monotonic() - start < timeout:
        try:
            last = predicate()
            if last:
                return time.monotonic() - start
        except (AssertionError, json.JSONDecodeError) as exc:
            last = exc
        time.sleep(every)
    raise AssertionError(f"{what} not met within {timeout} s (last: {last!r})")


def online(profile: Path, name: str) -> bool:
    return bool(contacts(profile).get(name, {}).get("online"))
