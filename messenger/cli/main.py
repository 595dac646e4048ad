"""chinwag-cli: the headless front end, and the local API for scripts and bots.

While `chinwag-cli run` holds a profile, every other command is carried out by that
process over its control socket; otherwise the command opens the profile itself.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import gc
import getpass
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import PeerService, ServiceConfig
from ..core.logs import configure_logging
from ..errors import (
    CliError,
    ContactKeyChanged,
    DatabaseDamaged,
    DiskFull,
    ProfileError,
    ProfileLocked,
    ServiceError,
)
from ..nearby import PAIRING_TIMEOUT
from ..net.tor import TOR_CONTROL_ENV, TorNotFound, find_tor
from ..profile import KdfParams, ProfileDir, restrict_umask
from ..protocol.invite import InviteError, parse_listen
from . import control
from .api import LocalApi
from .group_api import GROUP_ACTIONS
from .printer import RunPrinter, digits
from .quick import LOCK_WAIT
from .quick import say_waiting as _say_waiting
from .quick import show_contacts as _show_contacts  # noqa: F401  (_print finds it by name)
from .quick import show_whoami as _show_whoami  # noqa: F401  (as _show_contacts)

log = logging.getLogger("chinwag.cli")

READ_COMMANDS = {"whoami", "contacts", "history", "verify"}
# Commands only a running peer can carry out (they need its LAN discovery).
RUNNING_COMMANDS = {"nearby", "pair", "pairing", "lan", "tor"}
# Seconds a test may shorten the LAN token epoch to (docs/protocol.md §14).
EPOCH_ENV = "CHINWAG_DISCOVERY_EPOCH"
# Set (to anything) to keep `run` off Tor, as --no-tor does: test and bench helpers set it
# so no test starts a tor that tries to reach the public network.
NO_TOR_ENV = "CHINWAG_NO_TOR"


def _passphrase(profile: ProfileDir) -> str | None:
    env = os.environ.get("CHINWAG_PASSPHRASE")
    if env is not None:
        return env
    if not profile.exists() or not profile.needs_passphrase():
        return None
    if not sys.stdin.isatty():
        raise CliError(
            "this profile needs its passphrase: set CHINWAG_PASSPHRASE or use a terminal"
        )
    return getpass.getpass("Passphrase: ")


def _new_passphrase(args: argparse.Namespace) -> str | None:
    if args.no_passphrase:
        return None
    env = os.environ.get("CHINWAG_PASSPHRASE")
    if env is not None:
        return env or None
    if not sys.stdin.isatty():
        raise CliError(
            "choose a passphrase: set CHINWAG_PASSPHRASE, or pass --no-passphrase to keep "
            "the database key in the OS keyring instead"
        )
    print(
        "Choose a passphrase. It encrypts everything on disk; nobody can recover it for you.\n"
        "Leave it empty to keep a random key in your OS keyring instead (anyone who can use\n"
        "your unlocked account can then open Chinwag)."
    )
    first = getpass.getpass("Passphrase: ")
    if first and getpass.getpass("Again: ") != first:
        raise CliError("the two passphrases differ; nothing was created")
    return first or None


def _print(result: Any, args: argparse.Namespace) -> None:
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return
    formatter = globals().get(f"_show_{args.command}")
    if formatter is not None:
        formatter(result)
    else:
        print(json.dumps(result, indent=2, ensure_ascii=False))


def _show_tor(r: dict[str, Any]) -> None:
    state = r["state"]
    if state == "off":
        print("Tor is off (start `chinwag-cli run` without --no-tor, with tor installed)")
        return
    line = f"tor          {state}, bootstrap {r['percent']} %"
    if r["summary"] and state == "starting":
        line += f" ({r['summary']})"
    print(line)
    print(f"onion        {r['onion'] or '- (not yet created)'}")
    if r.get("pow_defence") is not None:
        pow_text = "proof-of-work on" if r["pow_defence"] else "no proof-of-work (tor < 0.4.9)"
        print(f"defences     {pow_text}, {r['streams_per_circuit']} streams a circuit")
    if r["error"]:
        print(f"last error   {r['error']}")
    if r.get("socks"):
        owner = f"tor pid {r['pid']}" if r["pid"] else "a tor not ours"
        print(f"socks        {r['socks']} ({owner}, {r['restarts']} restarts)")
    circuits = r.get("circuits") or {}
    if circuits:
        uses = ", ".join(f"{n} {use}" for use, n in circuits.items() if n)
        print(f"circuits     {sum(circuits.values())} built" + (f" ({uses})" if uses else ""))


def _show_invite(r: dict[str, Any]) -> None:
    print("Give this code to the person you want to chat with (single use):\n")
    print(f"  {r['code']}\n")
    print(f"expires {r['expires_at']}; reachable at {', '.join(r['addresses'])}")
    if r.get("qr"):
        print(f"QR code written to {r['qr']}")


def _show_accept(r: dict[str, Any]) -> None:
    print(f"You and {r['name']} are now contacts (id {r['id'][:8]}).")
    print(f"Compare safety numbers in person with `chinwag-cli verify {r['id'][:8]}`.")


def _show_accept_key(r: dict[str, Any]) -> None:
    print(f"{r['name']}'s new safety number is accepted: messages to {r['id'][:8]} are sent.")
    if r["moved"]:
        print(f"{r['moved']} message(s) waiting for the earlier {r['name']} now go to this one.")
    elif r.get("replaces"):
        print(f"Messages waiting for the earlier {r['name']} stay with it (--send-queued moves).")


def _show_send(r: dict[str, Any]) -> None:
    where = "sent" if r["online"] else "queued (delivered when you are both online)"
    print(f"{where} to {r['contact']}: {short_msg_id(r['id'])}")


def short_msg_id(msg_id: str) -> str:
    """The part of a message id that tells messages apart: its first 12 hex digits are the
    send time in milliseconds (shared by messages sent close together), the rest random.
    --json prints the whole id."""
    return msg_id[-8:]


def _show_group_list(groups: list[dict[str, Any]]) -> None:
    if not groups:
        print("no groups yet: `chinwag-cli group create NAME CONTACT...`")
    for g in groups:
        online = sum(1 for m in g["members"] if m["online"])
        unread = f"  ({g['unread']} unread)" if g["unread"] else ""
        state = "" if g["state"] == "active" else f"  [{g['state']}]"
        print(f"# {g['name']}  {g['id'][:8]}  {online}/{len(g['members'])} online{unread}{state}")


def _show_group(r: Any) -> None:
    if isinstance(r, dict) and "mime" in r:  # group file: the transfer it started
        _show_file(r)
        return
    if isinstance(r, list):  # group list
        _show_group_list(r)
        return
    if "query" in r:  # search
        if not r["messages"]:
            print(f"no group message matches {r['query']!r}")
        for m in r["messages"]:
            print(
                f"[{m['sent_at'][:19].replace('T', ' ')}] #{m['group']} {m['author']}: {m['body']}"
            )
        return
    if "messages" in r:  # history
        for m in r["messages"]:
            got = f"  ✓ {m['delivered_to']}/{m['members']}" if m["outgoing"] else ""
            print(f"[{m['sent_at'][:19].replace('T', ' ')}] {m['author']}: {m['body']}{got}")
        return
    if "members" in r and "epoch" in r:  # a group
        print(f"# {r['name']}  {r['id'][:8]}  (roster epoch {r['epoch']}, {r['state']})")
        for m in r["members"]:
            dot = "●" if m["online"] else "○"
            print(f"  {dot} {m['name']}{' (admin)' if m['admin'] else ''}  {m['id'][:8]}")
        return
    if "body" in r:
        print(f"sent to {r['group']}: {short_msg_id(r['id'])}")
        return
    print(json.dumps(r, indent=2, ensure_ascii=False))


def _show_history(r: dict[str, Any]) -> None:
    for m in r["messages"]:
        ticks = {"queued": "…", "sent": "✓", "delivered": "✓✓", "read": "✓✓ read"}
        state = f"  {ticks.get(m['state'], '')}" if m["outgoing"] else ""
        print(f"[{m['sent_at'][:19].replace('T', ' ')}] {m['author']}: {m['body']}{state}")


def _show_verify(r: dict[str, Any]) -> None:
    print(f"Safety number with {r['contact']}:\n")
    for line in r["formatted"].splitlines():
        print(f"  {line}")
    print()
    print("verified ✓" if r["verified"] else "not verified")


def _show_nearby(r: dict[str, Any]) -> None:
    if not r["discovery"]:
        print("LAN discovery is not running (is `chinwag-cli run` listening on 127.0.0.1?)")
    elif not r["visible"]:
        print("You are not visible on this network, so you see nobody nearby.")
        print("Switch it on with `chinwag-cli set visible true` (others then see your name).")
    elif not r["people"]:
        print("nobody visible nearby (they need `set visible true` too)")
    for p in r["people"]:
        group = f"  group “{p['open_group']}” is open to join" if p.get("open_group") else ""
        print(f"{p['id']}  {p['name']}  ({', '.join(p['addresses'])}){group}")


def _show_pair(r: dict[str, Any]) -> None:
    if r.get("paired"):
        print(f"You and {r['name']} are now contacts (id {r['id'][:8]}), verified ✓.")
    elif r.get("paired") is False:
        print("Declined: nothing was stored.")
    else:
        shown = digits(r["sas"])
        print(f"Pairing {r['pairing']} with {r['name']} is waiting; the digits are {shown}.")
        print(f"Confirm with `chinwag-cli pairing accept {r['pairing']}` once they match.")


def _show_pairing(r: Any) -> None:
    if isinstance(r, list):
        if not r:
            print("no pairing is waiting")
        for p in r:
            who = "asks you" if p["incoming"] else "asked by you"
            print(f"{p['id']}  {p['name']} ({who})  digits {digits(p['sas'])}")
        return
    _show_pair(r)


def _show_file(r: Any) -> None:
    rows = r if isinstance(r, list) else [r]
    if isinstance(r, dict) and "id" not in r:
        print(json.dumps(r, indent=2))
        return
    if not rows:
        print("no files yet; send one with `chinwag-cli file send CONTACT PATH`")
    for t in rows:
        arrow = "->" if t["outgoing"] else "<-"
        who = ", ".join([*t["contacts"], *(f"#{g}" for g in t.get("groups", []))]) or "-"
        line = f"{t['id'][:12]}  {arrow} {who}  {t['name']}  {t['state']}"
        line += f"  {t['progress'] * 100:.0f}% of {t['size']} bytes"
        if t["speed"]:
            line += f"  {t['speed'] / 1048576:.1f} MiB/s"
        if t["error"]:
            line += f"  ({t['error']})"
        print(line)
        if t.get("saved_to"):
            print(f"  saved to {t['saved_to']}")


def _show_remove(r: dict[str, Any]) -> None:
    print(f"{r['name']} ({r['removed'][:8]}) and your conversation are deleted.")


def _add_file_commands(p: argparse.ArgumentParser) -> None:
    files = p.add_subparsers(dest="file_action", required=True)
    # --json after the action too (`file list --json`).
    json_too = argparse.ArgumentParser(add_help=False)
    json_too.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    f = files.add_parser("send", help="offer a file to a contact", parents=[json_too])
    f.add_argument("contact")
    f.add_argument("path")
    files.add_parser(
        "list", help="every file sent or offered, with its progress", parents=[json_too]
    )
    for action, text in (
        ("show", "one transfer"),
        ("accept", "download a file offered to you"),
        ("pause", "pause a download, or stop serving a file you sent"),
        ("resume", "resume a download, or serve a paused file again"),
        ("cancel", "cancel a download (the partial copy is deleted) or withdraw a file"),
    ):
        files.add_parser(action, help=text, parents=[json_too]).add_argument(
            "id", help="transfer id (prefix)"
        )
    f = files.add_parser(
        "save", help="decrypt a complete file to PATH (a file or folder)", parents=[json_too]
    )
    f.add_argument("id")
    f.add_argument("path")
    f = files.add_parser(
        "forward", help="offer a file you hold to another contact or a group", parents=[json_too]
    )
    f.add_argument("id")
    f.add_argument("contact", help="a contact, or #GROUP to share it in a group")
    f = files.add_parser(
        "config", help="limits: max size, image auto-accept, rate", parents=[json_too]
    )
    f.add_argument("--max-size", type=int, help="bytes; bigger offers are refused")
    f.add_argument("--auto-accept-images", type=int, help="bytes; smaller images download unasked")
    f.add_argument("--rate-limit", type=int, help="bytes per second per download (0: no limit)")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", help="HOST:PORT to listen on (default all interfaces)")
    p.add_argument("--address", action="append", default=[], help="extra HOST:PORT to announce")
    p.add_argument("--no-discovery", action="store_true", help="do not announce or browse the LAN")
    p.add_argument(
        "--no-tor",
        action="store_true",
        help=f"do not start Tor (default: on when a tor binary is found; or set {NO_TOR_ENV})",
    )
    p.add_argument(
        "--tor-only",
        action="store_true",
        help="tell contacts only the onion address, never an IP address",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chinwag-cli", description=__doc__)
    parser.add_argument("--profile", type=Path, help="profile folder (or CHINWAG_PROFILE)")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str, *, json_flag: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        if json_flag:
            p.add_argument("--json", action="store_true", help="machine-readable output")
        return p

    p = command("init", "create a new profile", json_flag=True)
    p.add_argument("--name", required=True)
    p.add_argument("--no-passphrase", action="store_true", help="key in the OS keyring instead")
    command("whoami", "show your name, id and fingerprint", json_flag=True)
    p = command("invite", "create a single-use invite code (and QR)", json_flag=True)
    p.add_argument("--address", action="append", default=[], help="HOST:PORT to include")
    p.add_argument("--ttl", type=int, default=24 * 3600, help="seconds until it expires")
    p.add_argument("--qr", help="also write the code as a QR image (.png or .svg)")
    p = command("accept", "accept an invite code", json_flag=True)
    p.add_argument("code")
    command("contacts", "list contacts", json_flag=True)
    p = command("send", "send a message", json_flag=True)
    p.add_argument("contact", help="name or id prefix")
    p.add_argument("text", help="the message ('-' reads it from standard input)")
    p = command("history", "show a conversation", json_flag=True)
    p.add_argument("contact")
    p.add_argument("--limit", type=int, default=50)
    p = command("verify", "show the safety number and mark the contact verified", json_flag=True)
    p.add_argument("contact")
    p.add_argument("--yes", action="store_true", help="mark verified without asking")
    p = command(
        "accept-key",
        "accept a contact's changed safety number without verifying it",
        json_flag=True,
    )
    p.add_argument("contact", help="name or id prefix")
    p.add_argument(
        "--send-queued",
        action="store_true",
        help="also send it the messages waiting for the earlier contact of that name",
    )
    p = command("set", "change a setting (read_receipts, typing_notifications, display_name)")
    p.add_argument("key")
    p.add_argument("value", help="true/false, or a name")
    p = command("remove", "delete a contact and your conversation", json_flag=True)
    p.add_argument("contact")
    p.add_argument("--yes", action="store_true", help="do not ask")
    command("nearby", "people visible on this network (needs `set visible true`)", json_flag=True)
    p = command("pair", "pair with someone nearby: compare 6 digits, both confirm", json_flag=True)
    p.add_argument("nearby_id", help="the id shown by `nearby`")
    p.add_argument("--yes", action="store_true", help="confirm the digits without asking")
    p = command("pairing", "pending nearby pairings: list, accept ID, reject ID", json_flag=True)
    p.add_argument("action", choices=["list", "accept", "reject"], nargs="?", default="list")
    p.add_argument("pairing", nargs="?", help="the pairing id")
    command("lan", "LAN discovery status of the running peer", json_flag=True)
    command(
        "tor", "Tor status of the running peer (bootstrap, onion address, circuits)", json_flag=True
    )
    p = command(
        "group",
        "group chat: list, create, add, remove, rename, admins, leave, delete, send, file, "
        "history, search",
        json_flag=True,
    )
    p.add_argument("action", choices=GROUP_ACTIONS)
    p.add_argument("group", nargs="?", help="group name or id prefix (create: the new name)")
    p.add_argument(
        "args", nargs="*", help="contacts or members; send/rename: the text; file: the path"
    )  # search: every word after the action is the text (every group is searched)
    p.add_argument("--limit", type=int, default=50, help="history, search: how many messages")
    _add_file_commands(
        command("file", "send, list, accept, pause, resume, cancel and save files", json_flag=True)
    )
    command(
        "doctor",
        "check the whole profile: file permissions, the key, every page and index of the "
        "database (read-only; works while `run` is running)",
        json_flag=True,
    )
    p = command(
        "backup",
        "write the whole profile to FILE, encrypted under your passphrase (or a backup "
        "passphrase if the profile has none); safe while `run` is running",
        json_flag=True,
    )
    p.add_argument("file", type=Path)
    p = command(
        "restore",
        "restore a backup FILE into the --profile folder, which must not hold a profile",
        json_flag=True,
    )
    p.add_argument("file", type=Path)
    _add_run_options(command("run", "run the peer service until SIGINT/SIGTERM"))
    return parser


def _command_args(args: argparse.Namespace) -> dict[str, Any]:
    """The local API's arguments for a command (none for most)."""
    make = _COMMAND_ARGS.get(args.command)
    return make(args) if make is not None else {}


def _text(text: str) -> str:
    """A message text; '-' reads it from standard input."""
    return sys.stdin.read() if text == "-" else text


def _invite_args(args: argparse.Namespace) -> dict[str, Any]:
    qr = args.qr and str(Path(args.qr).resolve())
    return {"ttl": args.ttl, "addresses": args.address, "qr": qr}


def _set_args(args: argparse.Namespace) -> dict[str, Any]:
    value: Any = {"true": True, "false": False}.get(args.value.lower(), args.value)
    return {"key": args.key, "value": value}


def _group_args(args: argparse.Namespace) -> dict[str, Any]:
    if args.action in ("send", "rename"):
        return {"action": args.action, "group": args.group, "text": _text(" ".join(args.args))}
    if args.action == "file":
        paths = [str(Path(a).expanduser().resolve()) for a in args.args]
        return {"action": "file", "group": args.group, "names": paths}
    return {"action": args.action, "group": args.group, "names": args.args, "limit": args.limit}


def _file_args(args: argparse.Namespace) -> dict[str, Any]:
    action = args.file_action
    out: dict[str, Any] = {"action": action}
    if action in ("show", "accept", "pause", "resume", "cancel", "save", "forward"):
        out["id"] = args.id
    if action in ("send", "forward"):
        out["contact"] = args.contact
    if action in ("send", "save"):
        out["path"] = str(Path(args.path).expanduser().resolve())
    if action == "config":
        names = ("max_size", "auto_accept_images", "rate_limit")
        out["settings"] = {n: getattr(args, n) for n in names if getattr(args, n) is not None}
    return out


_COMMAND_ARGS: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "invite": _invite_args,
    "accept": lambda a: {"code": a.code},
    "send": lambda a: {"contact": a.contact, "text": _text(a.text)},
    "history": lambda a: {"contact": a.contact, "limit": a.limit},
    "verify": lambda a: {"contact": a.contact, "confirm": False},
    "set": _set_args,
    "remove": lambda a: {"contact": a.contact},
    "accept_key": lambda a: {"contact": a.contact, "send_queued": a.send_queued},
    "pair": lambda a: {"nearby": a.nearby_id},
    "pairing": lambda a: {"action": a.action, "pairing": a.pairing},
    "group": _group_args,
    "file": _file_args,
}


async def _run_command(profile: ProfileDir, args: argparse.Namespace) -> Any:
    cmd_args = _command_args(args)
    if args.command == "remove" and not args.yes:
        await _confirm_remove(args)
    # Twice: a `run` may take the profile while we wait for it; then we ask that peer.
    for _ in range(2):
        # A running peer owns the profile: ask it.
        if profile.control_socket.exists():
            try:
                return await _ask_running_peer(profile, args, cmd_args)
            except (ConnectionRefusedError, FileNotFoundError):
                pass  # a stale socket of a killed run
            except control.ControlError:
                raise  # main() prints it, with the peer's exit status (a damaged database)
        if args.command in RUNNING_COMMANDS:
            raise CliError(
                f"`{args.command}` needs the running peer: start `chinwag-cli run` first"
            )
        try:
            service = await PeerService.open(
                profile.path,
                _passphrase(profile),
                config=ServiceConfig(network=args.command == "accept"),
                purpose=f"chinwag-cli {args.command}",
                lock_wait=LOCK_WAIT,
                on_lock_wait=_say_waiting,
                give_up_waiting=lambda: control.answers(profile.control_socket),
            )
        except ProfileLocked:
            if control.answers(profile.control_socket):
                continue
            raise
        async with service:
            result = await LocalApi(service).call(args.command, cmd_args)
            if args.command == "verify":
                result = await _confirm_verify(result, args, profile, remote=False, service=service)
        return result
    raise CliError("the profile changed hands twice while this command waited; try again")


async def _ask_running_peer(
    profile: ProfileDir, args: argparse.Namespace, cmd_args: dict[str, Any]
) -> Any:
    if args.command == "pair":
        return await _pair(profile, args, cmd_args)
    wait = PAIRING_TIMEOUT + 10 if args.command == "pairing" else 60.0
    result = await control.call(profile.control_socket, args.command, cmd_args, wait)
    if args.command == "verify":
        result = await _confirm_verify(result, args, profile, remote=True)
    return result


async def _confirm_remove(args: argparse.Namespace) -> None:
    if not sys.stdin.isatty():
        raise CliError("removing a contact deletes your conversation: add --yes to confirm")
    question = f"Delete {args.contact} and your whole conversation? [y/N] "
    answer = await asyncio.to_thread(input, question)
    if answer.strip().lower() not in ("y", "yes"):
        raise CliError("nothing was deleted")


async def _pair(profile: ProfileDir, args: argparse.Namespace, cmd_args: dict[str, Any]) -> Any:
    """Ask someone nearby to pair, show the digits, confirm (or not), wait for both sides."""
    sock = profile.control_socket
    started = await control.call(sock, "pair", cmd_args, 30.0)
    pairing = started["pairing"]
    confirm: bool | None = True if args.yes else None
    if not args.json and (args.yes or sys.stdin.isatty()):
        print(f"Pairing with {started['name']}. Both screens now show:\n")
        print(f"    {digits(started['sas'])}\n", flush=True)
    if confirm is None and sys.stdin.isatty() and not args.json:
        answer = await asyncio.to_thread(input, "Do the digits on their screen match? [y/N] ")
        confirm = answer.strip().lower() in ("y", "yes")
    if confirm and not args.json:
        print(f"Waiting for {started['name']} to confirm too ...", flush=True)
    if confirm is None:
        return started  # a script: it answers later with `pairing accept|reject ID`
    action = {"action": "accept" if confirm else "reject", "pairing": pairing}
    result = await control.call(sock, "pairing", action, PAIRING_TIMEOUT + 10)
    return {**result, "sas": started["sas"]}


async def _confirm_verify(
    result: dict[str, Any],
    args: argparse.Namespace,
    profile: ProfileDir,
    *,
    remote: bool,
    service: PeerService | None = None,
) -> dict[str, Any]:
    if result["verified"] and not args.yes:
        return result
    confirm = args.yes
    if not confirm and sys.stdin.isatty() and not args.json:
        _show_verify(result)
        question = "\nDo these digits match the ones on their screen? [y/N] "
        answer = await asyncio.to_thread(input, question)
        confirm = answer.strip().lower() in ("y", "yes")
    if not confirm:
        return result
    cmd_args = {"contact": result["id"], "confirm": True}
    if remote:
        return dict(await control.call(profile.control_socket, "verify", cmd_args))
    assert service is not None
    return dict(await LocalApi(service).call("verify", cmd_args))


async def _init(profile: ProfileDir, args: argparse.Namespace) -> dict[str, Any]:
    passphrase = _new_passphrase(args)
    kdf = KdfParams.moderate()
    service, warnings = await PeerService.create_profile(
        profile.path, args.name, passphrase, kdf=kdf, config=ServiceConfig(network=False)
    )
    async with service:
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return {
            "name": service.display_name,
            "id": service.contact_id,
            "fingerprint": service.fingerprint,
            "profile": str(profile.path),
            "key": "passphrase (" + kdf.describe() + ")"
            if passphrase
            else profile.key_source.value,
        }


def _tor_wanted(args: argparse.Namespace) -> bool:
    """On unless --no-tor or CHINWAG_NO_TOR; off (said once) when no tor can be found,
    unless the user named a running tor's control port."""
    if args.no_tor or os.environ.get(NO_TOR_ENV):
        if args.tor_only:
            raise CliError("--tor-only needs Tor: drop --no-tor (and CHINWAG_NO_TOR)")
        return False
    if os.environ.get(TOR_CONTROL_ENV):
        return True
    try:
        find_tor()
    except TorNotFound as exc:
        if args.tor_only:
            raise CliError(f"--tor-only needs Tor: {exc}") from exc
        print(f"chinwag-cli: Tor is off: {exc}", file=sys.stderr, flush=True)
        return False
    return True


def _run_config(args: argparse.Namespace) -> ServiceConfig:
    host, port = parse_listen(args.listen) if args.listen else ("", None)
    lan: dict[str, Any] = {}
    if args.no_discovery:
        lan["discovery"] = False
    if os.environ.get(EPOCH_ENV):
        try:
            lan["discovery_epoch"] = float(os.environ[EPOCH_ENV])
        except ValueError:
            raise CliError(f"{EPOCH_ENV} must be a number of seconds") from None
        if not lan["discovery_epoch"] > 0:
            raise CliError(f"{EPOCH_ENV} must be positive")
    return ServiceConfig(
        listen_host=host,
        listen_port=port,
        extra_addresses=tuple(args.address),
        tor=_tor_wanted(args),
        tor_only=args.tor_only,
        **lan,
    )


async def _run(profile: ProfileDir, args: argparse.Namespace) -> int:
    service = await PeerService.open(
        profile.path,
        _passphrase(profile),
        config=_run_config(args),
        purpose="chinwag-cli run",
        lock_wait=LOCK_WAIT,
        on_lock_wait=_say_waiting,
    )
    server = control.ControlServer(LocalApi(service), profile.control_socket)
    show = RunPrinter(
        {c.id: c.display_name for c in await service.contacts.all()},
        {g.id: g.name for g in await service.groups.groups()},
        service.files.transfers(),
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await server.start()
        service.subscribe(show)  # Tor's progress too: one subscriber per event, not two
        settle_heap()
        print(
            f"{service.display_name} is online on port {service.listen_port} "
            f"({', '.join(str(a) for a in service.addresses()) or 'no address'}); "
            "Ctrl+C to stop",
            flush=True,
        )
        await stop.wait()
        print("shutting down", flush=True)
    finally:
        await server.aclose()
        await service.aclose()
    return 0


def settle_heap() -> None:
    """Start-up is over: collect once, then move what is alive now (the imports, the
    service) out of the cyclic collector's full passes, as the window does
    (ui/app.py MainThreadCollector.settle). Each full pass walked all of it: ~15 us per
    message of a 10,000-message group catch-up (bench.bench_group)."""
    gc.collect()
    gc.freeze()


def _doctor(profile: ProfileDir, args: argparse.Namespace) -> int:
    """The full check on demand (the start-up one is cheap, see storage/database.py)."""
    from ..storage.database import check_database

    profile.read_meta()  # ProfileMissing with what to do
    report: dict[str, Any] = {"profile": str(profile.path), "permissions_fixed": profile.secure()}
    key, trusted = profile.unlock_key(_passphrase(profile))
    size = profile.db_path.stat().st_size
    report |= {"size": size, "pages": size // 4096}
    if not args.json:
        print(f"checking {size / 1048576:.0f} MiB: every page's HMAC, then every b-tree ...")
    started = time.monotonic()
    code = 0
    try:
        check_database(profile.db_path, key, key_trusted=trusted, full=True)
        report["database"] = "ok"
    except DatabaseDamaged as exc:
        report["database"] = str(exc)
        code = exc.exit_code
    report["seconds"] = round(time.monotonic() - started, 2)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for fixed in report["permissions_fixed"]:
            print(f"fixed: {fixed}")
        verdict = "no problem found" if code == 0 else report["database"]
        print(f"{profile.db_path}: {verdict} ({report['seconds']} s)")
    return code


BACKUP_PASSPHRASE_ENV = "CHINWAG_BACKUP_PASSPHRASE"  # noqa: S105  (a name, not a secret)


def _backup_passphrase(profile: ProfileDir, *, new: bool) -> str:
    """A passphrase profile's backup uses its passphrase; otherwise a backup passphrase
    (CHINWAG_BACKUP_PASSPHRASE, or asked twice on a terminal)."""
    env = os.environ.get(BACKUP_PASSPHRASE_ENV)
    if env:
        return env
    if not new or profile.needs_passphrase():
        given = os.environ.get("CHINWAG_PASSPHRASE")
        if given:
            return given
    if not sys.stdin.isatty():
        raise CliError(f"set {BACKUP_PASSPHRASE_ENV} (or use a terminal) to give the passphrase")
    if not new:
        return getpass.getpass("Backup passphrase: ")
    if profile.needs_passphrase():
        return getpass.getpass("Passphrase (the backup is encrypted under it): ")
    print("This profile has no passphrase. Choose one for the backup; it is needed to restore.")
    first = getpass.getpass("Backup passphrase: ")
    if not first or getpass.getpass("Again: ") != first:
        raise CliError("the two passphrases differ (or are empty); no backup was written")
    return first


def _backup(profile: ProfileDir, args: argparse.Namespace) -> dict[str, Any]:
    from ..backup import backup_profile

    out = args.file.expanduser().resolve()
    info = backup_profile(profile.path, out, _backup_passphrase(profile, new=True))
    return {"file": str(info.path), "size": info.size, "attachments": info.attachments}


def _restore(profile: ProfileDir, args: argparse.Namespace) -> dict[str, Any]:
    from ..backup import restore_backup

    source = args.file.expanduser().resolve()
    info, warnings = restore_backup(source, profile.path, _backup_passphrase(profile, new=False))
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    protected = "the backup's passphrase" if info.key_source == "passphrase" else "no passphrase"
    return {
        "profile": str(profile.path),
        "attachments": info.attachments,
        "protected_by": protected,
    }


def _show_backup(r: dict[str, Any]) -> None:
    print(f"backup written to {r['file']} ({r['size']} bytes, {r['attachments']} attachments)")


def _show_restore(r: dict[str, Any]) -> None:
    print(f"restored into {r['profile']} ({r['attachments']} attachments); protected by ", end="")
    print(r["protected_by"])


def main(argv: Sequence[str] | None = None) -> int:
    """The console script's entry point (so everything a user runs passes through here)."""
    restrict_umask()  # every file Chinwag writes is the user's only
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, not at exit, so a closed pipe is caught below
        return code
    except BrokenPipeError:
        # The reader went away (`chinwag-cli history X | head`): stop quietly, as a C tool
        # killed by SIGPIPE would. Point stdout at devnull so the exit-time flush is silent.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE (13)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    args.command = args.command.replace("-", "_")  # accept-key: cmd_accept_key, _show_accept_key
    configure_logging(args.verbose)
    profile = ProfileDir(args.profile or _default_dir())
    try:
        if args.command == "init":
            _print(asyncio.run(_init(profile, args)), args)
            return 0
        if args.command == "run":
            return asyncio.run(_run(profile, args))
        if args.command == "doctor":
            return _doctor(profile, args)
        if args.command in ("backup", "restore"):
            _print((_backup if args.command == "backup" else _restore)(profile, args), args)
            return 0
        _print(asyncio.run(_run_command(profile, args)), args)
        return 0
    except (CliError, ProfileError, ServiceError, InviteError, control.ControlError) as exc:
        print(f"chinwag-cli: {exc}", file=sys.stderr)
        code = getattr(exc, "exit_code", 1)  # a damaged database has its own (docs)
        if code == ContactKeyChanged.exit_code and getattr(args, "contact", None):
            print(
                f"compare the new safety number: chinwag-cli verify {args.contact}\n"
                f"or accept it unverified:        chinwag-cli accept-key {args.contact}",
                file=sys.stderr,
            )
        return int(code)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # A file of the profile (not the database: that is DiskFull above) could not be
        # written: the same plain message and exit status.
        full = DiskFull(profile.path)
        print(f"chinwag-cli: {full}", file=sys.stderr)
        return full.exit_code
    except KeyboardInterrupt:
        return 130


def _default_dir() -> Path:
    from ..profile import default_profile_dir

    return default_profile_dir()


if __name__ == "__main__":
    sys.exit(main())
