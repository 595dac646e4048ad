"""Run cacophony-format Noise test vectors against :mod:`messenger.protocol.noise`.

Usage::

    python -m messenger.protocol.noise_vectors PATH_TO_JSON [--protocol NAME]

``PATH_TO_JSON`` is a cacophony/snow style file ``{"vectors": [...]}``; each vector has
``protocol_name``, ``init_prologue``, ``init_static``, ``init_ephemeral``,
``init_remote_static``, ``init_psks`` and the matching ``resp_*`` fields (all hex,
optional ones may be absent), an optional ``handshake_hash`` and a list of
``messages`` ``{"payload": hex, "ciphertext": hex}``. The file is not part of this
repository; point the tool at a local copy.

Running one pattern with fixed keys
-----------------------------------
Pass ``--protocol`` with the full protocol name to run only the vectors for that
name, e.g.::

    python -m messenger.protocol.noise_vectors vectors.json \\
        --protocol Noise_XXpsk3_25519_ChaChaPoly_BLAKE2b

Every vector is run with the fixed keys it specifies: the static keys become
``KeyPair.from_private(bytes.fromhex(init_static))``, the ephemerals are pinned with
the ``e=`` argument of :class:`~messenger.protocol.noise.HandshakeState` (tests/vectors only,
never in production), ``init_remote_static`` / ``resp_remote_static`` go to ``rs=``
and the PSK lists to ``psks=``. The same thing by hand::

    from messenger.protocol.noise import HandshakeState, KeyPair
    h = bytes.fromhex
    init = HandshakeState(name, initiator=True, prologue=h(v["init_prologue"]),
                          s=KeyPair.from_private(h(v["init_static"])),
                          e=KeyPair.from_private(h(v["init_ephemeral"])),
                          psks=[h(p) for p in v.get("init_psks", [])])
    resp = HandshakeState(name, initiator=False, ...)   # resp_* fields likewise
    assert init.write_message(h(m0["payload"])) == h(m0["ciphertext"])

Message direction: message ``i`` goes initiator->responder when ``i`` is even and
responder->initiator when it is odd (the cacophony convention; the handshake
messages already alternate this way and transport messages simply continue the
alternation). For one-way patterns (N, K, X) every message goes
initiator->responder. Handshake messages are checked byte-for-byte with
``write_message`` and decrypted with ``read_message``; once the handshake is
complete both handshake hashes are compared with ``handshake_hash`` and the
remaining messages go through the ``split()`` CipherStates.

Output: one line per vector, ``PASS name``, ``FAIL name: reason`` or
``SKIP name: reason`` (unsupported cipher suites / features). Exit status is 1
if any vector failed, 2 on usage errors or if no vector was selected, else 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from messenger.protocol.noise import (
    CipherState,
    HandshakeState,
    KeyPair,
    NoiseError,
    UnsupportedProtocolError,
    parse_protocol_name,
)

_UNSUPPORTED_FIELDS = ("fallback", "fallback_pattern", "hybrid", "init_remote_ephemeral_fallback")


class VectorFailure(Exception):
    """A vector did not produce the expected bytes."""


class VectorSkip(Exception):
    """A vector uses something this implementation does not support."""


def _hex(vector: Mapping[str, Any], key: str) -> bytes | None:
    value = vector.get(key)
    if value is None or value == "":
        return None if value is None else b""
    return bytes.fromhex(value)


def _keypair(vector: Mapping[str, Any], key: str) -> KeyPair | None:
    raw = _hex(vector, key)
    return None if raw is None else KeyPair.from_private(raw)


def _make_state(vector: Mapping[str, Any], name: str, side: str) -> HandshakeState:
    return HandshakeState(
        name,
        initiator=side == "init",
        prologue=_hex(vector, f"{side}_prologue") or b"",
        s=_keypair(vector, f"{side}_static"),
        e=_keypair(vector, f"{side}_ephemeral"),
        rs=_hex(vector, f"{side}_remote_static"),
        re=_hex(vector, f"{side}_remote_ephemeral"),
        psks=[bytes.fromhex(p) for p in vector.get(f"{side}_psks") or ()],
    )


def run_vector(vector: Mapping[str, Any]) -> None:
    """Run one vector; raise VectorFailure / VectorSkip, return normally on success."""
    name = vector.get("protocol_name")
    if not isinstance(name, str):
        raise VectorFailure("vector has no protocol_name")
    for field in _UNSUPPORTED_FIELDS:
        if vector.get(field):
            raise VectorSkip(f"{field!r} is not supported")
    try:
        pattern = parse_protocol_name(name)
    except UnsupportedProtocolError as exc:
        raise VectorSkip(str(exc)) from exc

    try:
        _run_checked(vector, name, one_way=pattern.one_way)
    except NoiseError as exc:
        if vector.get("fail"):
            return  # expected failure
        raise VectorFailure(f"NoiseError: {exc}") from exc
    if vector.get("fail"):
        raise VectorFailure("vector is marked 'fail' but everything succeeded")


def _run_checked(vector: Mapping[str, Any], name: str, *, one_way: bool) -> None:
    init = _make_state(vector, name, "init")
    resp = _make_state(vector, name, "resp")
    messages: Sequence[Mapping[str, str]] = vector.get("messages") or ()
    expected_hash = _hex(vector, "handshake_hash")
    transport: dict[bool, tuple[CipherState, CipherState]] = {}

    for i, msg in enumerate(messages):
        payload = bytes.fromhex(msg["payload"])
        expected = bytes.fromhex(msg["ciphertext"])
        from_init = one_way or i % 2 == 0
        if not transport:
            writer, reader = (init, resp) if from_init else (resp, init)
            if not writer.is_my_turn:
                raise VectorFailure(f"message {i}: direction does not match the pattern")
            got = writer.write_message(payload)
            _compare(i, "ciphertext", got, expected)
            _compare(i, "decrypted payload", reader.read_message(got), payload)
            if init.is_complete and resp.is_complete:
                if expected_hash is not None:
                    _compare(i, "initiator handshake hash", init.handshake_hash, expected_hash)
                    _compare(i, "responder handshake hash", resp.handshake_hash, expected_hash)
                if init.handshake_hash != resp.handshake_hash:
                    raise VectorFailure("handshake hashes of the two sides differ")
                transport[True] = init.split()
                transport[False] = resp.split()
            continue
        send = transport[from_init][0]
        recv = transport[not from_init][1]
        got = send.encrypt_with_ad(b"", payload)
        _compare(i, "ciphertext", got, expected)
        _compare(i, "decrypted payload", recv.decrypt_with_ad(b"", got), payload)

    if not transport and messages:
        raise VectorFailure("handshake did not complete within the vector's messages")


def _compare(index: int, what: str, got: bytes, expected: bytes) -> None:
    if got != expected:
        raise VectorFailure(
            f"message {index}: {what} mismatch: expected {expected.hex()}, got {got.hex()}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m messenger.protocol.noise_vectors",
        description="Check messenger.protocol.noise against cacophony-format Noise test vectors.",
    )
    parser.add_argument("path", help="JSON file with {'vectors': [...]}")
    parser.add_argument("--protocol", help="only run vectors with this exact protocol_name")
    args = parser.parse_args(argv)

    try:
        with open(args.path, encoding="utf-8") as fh:
            data = json.load(fh)
        vectors = data["vectors"]
        if not isinstance(vectors, list):
            raise TypeError("'vectors' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"error: cannot load vectors from {args.path}: {exc}", file=sys.stderr)
        return 2

    ran = failed = 0
    for index, vector in enumerate(vectors):
        name = vector.get("protocol_name", f"<vector #{index}>")
        if args.protocol is not None and name != args.protocol:
            continue
        ran += 1
        try:
            run_vector(vector)
        except VectorSkip as exc:
            print(f"SKIP {name}: {exc}")
        except VectorFailure as exc:
            failed += 1
            print(f"FAIL {name}: vector #{index}: {exc}")
        except (ValueError, KeyError, TypeError) as exc:  # malformed vector
            failed += 1
            print(f"FAIL {name}: vector #{index}: malformed vector: {exc!r}")
        else:
            print(f"PASS {name}")

    if ran == 0:
        print("error: no vectors selected", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
