"""tor's control port through stem: connecting, authenticating, the events we follow, the
onion service command and what the answers mean. Every function here blocks (stem is
synchronous): the manager runs them in a worker thread.

Control library: stem (the Tor Project's own). txtorcon is the asyncio-unfriendly choice
here: it needs a Twisted reactor beside asyncio. stem's event listeners run on stem's own
thread; the manager hands their (already converted, plain-data) events to the loop with
`call_soon_threadsafe`. Nothing here parses tor's log output: the control port's listeners
(GETINFO net/listeners/socks), bootstrap status (STATUS_CLIENT BOOTSTRAP events, GETINFO
status/bootstrap-phase) and descriptor uploads (HS_DESC events) say all that is needed. The
one file read is the control port tor writes for its controller (ControlPortWriteToFile).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import stem
import stem.connection
import stem.response
from stem.control import Controller, EventType, Listener, State

from .errors import TorError, TorStartFailed
from .events import TorBootstrap
from .settings import TOR_CONTROL_ENV

log = logging.getLogger(__name__)

# What a built circuit is for, by tor's purpose (control-spec CIRC_PURPOSE).
_CIRCUIT_USE = {
    "HS_CLIENT_REND": "to contacts",
    "HS_SERVICE_REND": "from contacts",
    "HS_SERVICE_INTRO": "introduction",
}


def open_attached(target: str, password: str | None) -> Controller:
    """A running tor's control port ("host:port", "port" or a unix socket path)."""
    try:
        if "/" in target:
            controller = Controller.from_socket_file(path=target)
        else:
            host, _, port = target.rpartition(":")
            controller = Controller.from_port(address=host or "127.0.0.1", port=int(port))
    except ValueError as exc:
        raise TorStartFailed(f"{TOR_CONTROL_ENV}={target!r}: not host:port or a path") from exc
    except stem.SocketError as exc:
        raise TorStartFailed(f"cannot reach tor's control port {target}: {exc}") from exc
    authenticate(controller, password)
    return controller


def open_launched(address: tuple[str, int], password: str | None) -> Controller:
    """The control port of the tor we launched."""
    try:
        controller = Controller.from_port(address=address[0], port=address[1])
    except stem.SocketError as exc:
        raise TorStartFailed(f"cannot connect to tor's control port: {exc}") from exc
    # stem sends TAKEOWNERSHIP here (our PID is tor's __OwningControllerProcess).
    authenticate(controller, password)
    return controller


def authenticate(controller: Controller, password: str | None) -> None:
    try:
        controller.authenticate(password=password)
    except stem.connection.AuthenticationFailure as exc:
        controller.close()
        raise TorStartFailed(f"tor refused our control authentication: {exc}") from exc


def subscribe(
    controller: Controller,
    *,
    on_bootstrap: Callable[[TorBootstrap], None],
    on_uploaded: Callable[[str], None],
    on_closed: Callable[[], None],
) -> None:
    """Follow bootstrap progress, descriptor uploads and the connection's end. The
    callbacks run on stem's thread."""

    def on_status(event: Any) -> None:
        if event.action == "BOOTSTRAP":
            state = bootstrap_from({k: str(v) for k, v in event.arguments.items()})
            if state is not None:
                on_bootstrap(state)

    def on_hs_desc(event: Any) -> None:
        if event.action == stem.HSDescAction.UPLOADED:
            on_uploaded(str(event.address))

    def on_state(_controller: Any, state: Any, _timestamp: float) -> None:
        if state == State.CLOSED:
            on_closed()

    controller.add_status_listener(on_state)
    controller.add_event_listener(on_status, EventType.STATUS_CLIENT)
    controller.add_event_listener(on_hs_desc, EventType.HS_DESC)


def socks_listener(controller: Controller) -> tuple[str, int]:
    listeners = controller.get_listeners(Listener.SOCKS)
    if not listeners:
        raise TorStartFailed("tor has no SOCKS port")
    host, port = listeners[0]
    return str(host), int(port)


# Per rendezvous circuit. Our dialer opens every connection on circuits of its own (fresh
# SOCKS credentials each time, dialer.py), so a contact needs one stream per circuit; more
# than a few is someone multiplying half-open connections over one introduction, and tor
# then closes the whole circuit (MaxStreamsCloseCircuit).
MAX_STREAMS_PER_CIRCUIT = 4
# Tor's proof-of-work defence for the introduction queue (proposal 327): free while the
# queue keeps up, then clients solve puzzles to be let in first. tor 0.4.9 takes it in
# ADD_ONION; an older attached tor refuses the keyword and the onion goes up without it.
POW_KEYWORDS = "PoWDefensesEnabled=1"


def add_onion(
    controller: Controller, virtual_port: int, target: tuple[str, int], key: bytes | None
) -> tuple[str, bytes, bool]:
    """ADD_ONION, ephemeral (gone with our control connection), with tor's onion DoS
    defences: the service id, the key (tor's new one when `key` is None) and whether the
    proof-of-work defence is on. stem's create_ephemeral_hidden_service knows no PoW
    keywords, so the command is sent as tor documents it (control-spec ADD_ONION)."""
    if key is None:
        key_arg = "NEW:ED25519-V3"
    else:
        key_arg = "ED25519-V3:" + base64.b64encode(key).decode()
    command = (
        f"ADD_ONION {key_arg} Flags=MaxStreamsCloseCircuit MaxStreams={MAX_STREAMS_PER_CIRCUIT}"
        f" Port={virtual_port},{target[0]}:{target[1]}"
    )
    try:
        with_pow = True
        response = controller.msg(f"{command} {POW_KEYWORDS}")
        if not response.is_ok() and "PoWDefensesEnabled" in str(response):
            log.warning(
                "tor refused the onion proof-of-work defence (%s); adding without", response
            )
            with_pow = False
            response = controller.msg(command)
        if not response.is_ok():
            raise TorError(f"ADD_ONION failed: {response}")
        stem.response.convert("ADD_ONION", response)
    except (stem.ControllerError, stem.SocketError) as exc:
        raise TorError(f"ADD_ONION failed: {exc}") from exc
    if key is None:
        if response.private_key_type != "ED25519-V3" or response.private_key is None:
            raise TorError(f"tor made a {response.private_key_type} key, not ED25519-V3")
        key = base64.b64decode(response.private_key)
    return str(response.service_id), key, with_pow


def circuit_counts(circuits: Iterable[Any]) -> dict[str, int]:
    """Built circuits by what they are for (see TorManager.circuits)."""
    counts = dict.fromkeys(("to contacts", "from contacts", "introduction", "other"), 0)
    for circuit in circuits:
        if circuit.status != "BUILT":
            continue
        counts[_CIRCUIT_USE.get(circuit.purpose, "other")] += 1
    return counts


def parse_bootstrap_phase(text: str) -> TorBootstrap | None:
    """GETINFO status/bootstrap-phase: 'NOTICE BOOTSTRAP PROGRESS=.. TAG=.. SUMMARY=".."'
    read with stem's control-line parser."""
    line = stem.response.ControlLine(text)
    values: dict[str, str] = {}
    while not line.is_empty():
        if line.is_next_mapping(quoted=True):
            key, value = line.pop_mapping(quoted=True)
        elif line.is_next_mapping():
            key, value = line.pop_mapping()
        else:
            line.pop()
            continue
        values[str(key)] = str(value)
    return bootstrap_from(values)


def bootstrap_from(values: Mapping[str, str]) -> TorBootstrap | None:
    try:
        percent = int(values["PROGRESS"])
    except (KeyError, ValueError):
        return None
    return TorBootstrap(percent, values.get("TAG", ""), values.get("SUMMARY", ""))
