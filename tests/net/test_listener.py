"""One listening port for every address family (issue 20): asyncio's default binds IPv4 and
IPv6 each to its own ephemeral port, and invites carried a port nothing listened on."""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest

from messenger.net.transport import serve

from .conftest import PeerFactory


def _ipv6_loopback_works() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


async def _echo_once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.readexactly(4))
    await writer.drain()
    writer.close()


async def _round_trip(host: str, port: int) -> bytes:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"ping")
    answer = await reader.readexactly(4)
    writer.close()
    return answer


async def test_every_family_listens_on_the_same_port_at_every_fresh_start() -> None:
    # 40 fresh ephemeral binds: with asyncio's default the ports differed every time.
    families_expected = {socket.AF_INET, socket.AF_INET6} if _ipv6_loopback_works() else None
    for _ in range(40):
        listener = await serve("", 0, _echo_once)
        try:
            ports = {sock.getsockname()[1] for sock in listener.sockets}
            assert ports == {listener.port}
            if families_expected is not None:
                assert {sock.family for sock in listener.sockets} == families_expected
        finally:
            listener.close()
            await listener.wait_closed()


async def test_both_families_answer_on_the_advertised_port() -> None:
    if not _ipv6_loopback_works():
        pytest.skip("this machine has no IPv6 loopback")
    listener = await serve("", 0, _echo_once)
    try:
        assert await _round_trip("127.0.0.1", listener.port) == b"ping"
        assert await _round_trip("::1", listener.port) == b"ping"
    finally:
        listener.close()
        await listener.wait_closed()


def _squat_ipv6_only_on_a_port_free_on_ipv4() -> tuple[socket.socket, int]:
    """An IPv6-only listening socket on a port that was just free on IPv4 too: the port
    is chosen on IPv4, so the check that serve() left nothing bound there is not fooled by
    another process that holds the same number on IPv4 (seen on a busy machine)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as reserve:
            reserve.bind(("0.0.0.0", 0))
            port = reserve.getsockname()[1]
            squatter = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            squatter.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                squatter.bind(("::", port))
            except OSError:
                squatter.close()
                continue  # taken on IPv6: another number
        squatter.listen(1)
        return squatter, port
    raise AssertionError("no port free on both IPv4 and IPv6 in 50 tries")


async def test_a_given_port_taken_on_ipv6_only_is_an_error_not_a_second_port() -> None:
    if not _ipv6_loopback_works():
        pytest.skip("this machine has no IPv6 loopback")
    squatter, port = _squat_ipv6_only_on_a_port_free_on_ipv4()
    try:
        with pytest.raises(OSError) as caught:
            await serve("", port, _echo_once)
        assert caught.value.errno == errno.EADDRINUSE
        # Nothing of ours stays bound on IPv4 either: the port is free there again.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as again:
            again.bind(("0.0.0.0", port))
    finally:
        squatter.close()


async def test_a_new_profile_advertises_only_the_port_it_listens_on(
    make_peer: PeerFactory,
) -> None:
    # As a new user starts it: all interfaces, no remembered port.
    peer = await make_peer("alice", listen_host="", listen_port=None)
    ports = {port for _, port in peer.reach.listening_on()}
    assert ports == {peer.listen_port}
    _, invite = await peer.invites.create_invite()
    assert invite.addresses, "an invite with no address"
    assert {address.port for address in invite.addresses} == ports


async def test_a_closed_listener_lets_go_of_its_port() -> None:
    listener = await serve("", 0, _echo_once)
    port = listener.port
    listener.close()
    await listener.wait_closed()
    assert all(sock.fileno() == -1 for sock in listener.sockets)  # closed, after its loop
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as again:
        again.bind(("0.0.0.0", port))
