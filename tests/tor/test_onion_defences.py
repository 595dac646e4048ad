"""Tor's onion DoS defences on our onion service, against the real tor on the private Tor
network: the proof-of-work defence is announced in the descriptor, and a rendezvous
circuit that carries more than MAX_STREAMS_PER_CIRCUIT streams is closed by tor."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess

import pytest
import stem.control
from python_socks.async_.asyncio import Proxy
from stem.descriptor.hidden_service import HiddenServiceDescriptorV3

from messenger.net.tor.control import MAX_STREAMS_PER_CIRCUIT

from .conftest import PeerFactory, echo_server
from .network import find_tor
from .test_tor_manager import PORT, close, exchange

pytestmark = [pytest.mark.tor, pytest.mark.timeout(300)]


def inner_descriptor(control: tuple[str, int], address: str) -> str:
    """The decrypted inner layer of the onion descriptor a client's tor holds (it fetched
    it to dial). Through its control port, cookie authentication as our tor is set up;
    stem's get_hidden_service_descriptor parses as v2, so the v3 class is named here."""
    service_id = address.removesuffix(".onion")
    with stem.control.Controller.from_port(address=control[0], port=control[1]) as controller:
        controller.authenticate()
        raw = controller.get_info(f"hs/client/desc/id/{service_id}")
    descriptor = HiddenServiceDescriptorV3(raw.encode())
    return str(descriptor.decrypt(service_id))


def tor_version() -> tuple[int, ...]:
    tor = find_tor()
    assert tor is not None
    out = subprocess.run([tor, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"Tor version (\d+)\.(\d+)\.(\d+)", out)
    assert match, out
    return tuple(int(part) for part in match.groups())


async def test_onion_announces_the_proof_of_work_defence(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    async with echo_server() as port:
        service = await alice.tor.publish(PORT, ("127.0.0.1", port))
        # ADD_ONION takes PoWDefensesEnabled from tor 0.4.9 on (Debian 12's tor is 0.4.9.x);
        # an older tor gets the onion without it, and its descriptor has no pow-params.
        takes_pow = tor_version() >= (0, 4, 9)
        assert service.pow_defence is takes_pow
        assert bob.tor.control_address is not None
        reader, writer = await bob.tor.dial(service.address, PORT, isolation="alice")
        try:
            assert await exchange(reader, writer, b"hello") == b"hello"
        finally:
            await close(writer)
        inner = await asyncio.to_thread(inner_descriptor, bob.tor.control_address, service.address)
        # rend-spec: "pow-params v1 <seed> <suggested-effort> <expiration>", effort 0 while
        # the introduction queue keeps up.
        assert ("\npow-params v1 " in "\n" + inner) is takes_pow, inner


async def test_too_many_streams_on_one_circuit_close_it(make_peer: PeerFactory) -> None:
    alice = await make_peer("alice")
    bob = await make_peer("bob")
    async with echo_server() as port:
        service = await alice.tor.publish(PORT, ("127.0.0.1", port))
        assert bob.tor.socks_address is not None
        host, socks_port = bob.tor.socks_address
        # The same SOCKS credentials: tor puts every stream on the same circuit (our dialer
        # never does this: a fresh password for every connection).
        proxy = Proxy.from_url(f"socks5://same:same@{host}:{socks_port}", rdns=True)
        streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        try:
            for n in range(MAX_STREAMS_PER_CIRCUIT):
                sock = await proxy.connect(service.address, PORT, timeout=90)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                streams.append(await asyncio.open_connection(sock=sock))
                payload = f"stream {n}".encode()
                assert await exchange(*streams[-1], payload) == payload
            # All working. (That they share one rendezvous circuit shows below: the one
            # extra stream ends them all. Counting circuits here would also count one
            # that tor left from a retried rendezvous on a slow machine.)

            # One more: tor at Alice's end closes the circuit, with every stream on it.
            try:
                sock = await proxy.connect(service.address, PORT, timeout=90)
            except Exception:
                pass
            else:
                streams.append(await asyncio.open_connection(sock=sock))
            async with asyncio.timeout(60):
                for reader, _ in streams[:MAX_STREAMS_PER_CIRCUIT]:
                    assert await reader.read() == b""
        finally:
            for _, writer in streams:
                await close(writer)
