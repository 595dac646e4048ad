"""The `chinwag-cli` console script's entry point: `whoami` and `contacts` on a profile no
peer is running are answered by the raw read path (storage/reader.py) before the rest of
the command line is even imported; everything else goes to main.py unchanged.

Importing main.py loads the service, SQLAlchemy, Tor control and the rest (~0.4 s, most of
what these two commands took; issue 15). This module imports only what the raw read needs,
and understands only the plain forms of the two commands (`[--profile DIR] [-v]
whoami|contacts [--json]`); anything else, or anything the raw path leaves to the service
(a running peer, a passphrase to ask for, a migration due), is main.py's.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import CliError, DiskFull, ProfileError, ProfileLocked, ServiceError
from ..profile import ProfileDir, default_profile_dir, restrict_umask

# How long `run` and one-shot commands wait for another process to let go of the profile:
# one-shot commands hold it for about a second, so a script that starts `run` and sends at
# once does not lose the race (main.py uses it too).
LOCK_WAIT = 10.0


def main(argv: Sequence[str] | None = None) -> int:
    """`chinwag-cli`: the raw read path when it applies, else main.main."""
    args = list(sys.argv[1:] if argv is None else argv)
    plain = parse_plain_read(args)
    if plain is not None:
        code = _read(*plain)
        if code is not None:
            return code
    from .main import main as full_main

    return full_main(args)


def parse_plain_read(args: Sequence[str]) -> tuple[Path | None, int, str, bool] | None:
    """(profile, verbosity, command, json) for `[--profile DIR] [-v] whoami|contacts
    [--json]` as main.build_parser reads them; None for anything else."""
    profile: Path | None = None
    verbose = 0
    i = 0
    while i < len(args) and args[i].startswith("-"):
        arg = args[i]
        if arg == "--profile" and i + 1 < len(args):
            profile, i = Path(args[i + 1]), i + 2
        elif arg.startswith("--profile=") and len(arg) > len("--profile="):
            profile, i = Path(arg.split("=", 1)[1]), i + 1
        elif arg == "--verbose":
            verbose, i = verbose + 1, i + 1
        elif set(arg[1:]) == {"v"}:  # -v, -vv, ...
            verbose, i = verbose + len(arg) - 1, i + 1
        else:
            return None
    if i >= len(args) or args[i] not in ("whoami", "contacts"):
        return None
    rest = args[i + 1 :]
    if any(a != "--json" for a in rest):
        return None
    return profile, verbose, args[i], bool(rest)


def _read(profile_arg: Path | None, verbose: int, command: str, as_json: bool) -> int | None:
    """The command's exit status, or None when main.py has to answer."""
    restrict_umask()  # as main() does: every file Chinwag writes is the user's only
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    profile = ProfileDir(profile_arg or default_profile_dir())
    from ..storage.reader import read_command

    try:
        if profile.control_socket.exists():
            return None  # a running peer may own the profile: main.py asks it
        passphrase = os.environ.get("CHINWAG_PASSPHRASE")
        if passphrase is None and profile.exists() and profile.needs_passphrase():
            return None  # main.py asks for it (and the KDF dwarfs any import anyway)
        try:
            result = read_command(
                profile,
                command,
                passphrase,
                purpose=f"chinwag-cli {command}",
                lock_wait=LOCK_WAIT,
                on_lock_wait=say_waiting,
                give_up_waiting=lambda: _peer_answers(profile),
            )
        except ProfileLocked:
            if _peer_answers(profile):
                return None  # a `run` took the profile while we waited: main.py asks it
            raise
        if result is None:
            return None
        return _print(result, command, as_json)
    except (CliError, ProfileError, ServiceError) as exc:
        print(f"chinwag-cli: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 1)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        full = DiskFull(profile.path)
        print(f"chinwag-cli: {full}", file=sys.stderr)
        return full.exit_code
    except KeyboardInterrupt:
        return 130


def _peer_answers(profile: ProfileDir) -> bool:
    from .control import answers  # only while waiting for the lock

    return answers(profile.control_socket)


def say_waiting(holder: str) -> None:
    """Told once when another process holds the profile (main.py says it too)."""
    print(
        f"chinwag-cli: the profile is in use ({holder}); waiting up to {LOCK_WAIT:.0f} s "
        "for it to finish",
        file=sys.stderr,
        flush=True,
    )


def _print(result: Any, command: str, as_json: bool) -> int:
    """Print as main.py does, ending as its main() does on a closed pipe."""
    try:
        if as_json:
            print(json.dumps(result, indent=2, ensure_ascii=False))
        elif command == "whoami":
            show_whoami(result)
        else:
            show_contacts(result)
        sys.stdout.flush()
        return 0
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE (13)


def show_whoami(r: dict[str, Any]) -> None:
    print(f"{r['name']}  (id {r['id']})")
    print(f"fingerprint  {r['fingerprint']}")
    print(f"profile      {r['profile']}")
    if r["running"]:
        print(f"listening    port {r['listen_port']}: {', '.join(r['addresses']) or '-'}")
    else:
        print("not running (start `chinwag-cli run` to be reachable)")


def show_contacts(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("no contacts yet: `chinwag-cli invite` or `chinwag-cli accept CODE`")
    for c in rows:
        dot = "●" if c["online"] else "○"
        mark = " ✓" if c["verified"] else ""
        unread = f"  ({c['unread']} unread)" if c["unread"] else ""
        held = ""
        if c.get("key_changed"):
            held = (
                "  [safety number changed: nothing is sent until you `verify "
                f"{c['id'][:8]}` or `accept-key {c['id'][:8]}`]"
            )
        print(f"{dot} {c['name']}{mark}  {c['id'][:8]}{unread}{held}")
