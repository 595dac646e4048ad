"""The console script's raw read path (cli/quick.py): which command lines it takes, and
that what it prints is what the full command line prints."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from messenger import PeerService, ServiceConfig
from messenger.cli import main as full
from messenger.cli import quick
from messenger.storage import reader


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["whoami"], (None, 0, "whoami", False)),
        (["--profile", "p", "contacts", "--json"], (Path("p"), 0, "contacts", True)),
        (["--profile=p", "-vv", "--verbose", "whoami"], (Path("p"), 3, "whoami", False)),
        (["-v", "--profile", "q", "contacts"], (Path("q"), 1, "contacts", False)),
    ],
)
def test_plain_reads_are_recognised(argv: list[str], expected: tuple[Any, ...]) -> None:
    assert quick.parse_plain_read(argv) == expected


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["history", "bob"],
        ["whoami", "--yes"],
        ["whoami", "extra"],
        ["--profile"],
        ["--profile=", "whoami"],
        ["--prof", "p", "whoami"],  # argparse's abbreviations: main.py's business
        ["-h"],
        ["whoami", "-h"],
        ["-x", "whoami"],
        ["--", "whoami"],
    ],
)
def test_anything_else_is_left_to_main(argv: list[str]) -> None:
    assert quick.parse_plain_read(argv) is None


@pytest.fixture(scope="module")
def profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("quick") / "ann"

    async def make() -> None:
        service, _ = await PeerService.create_profile(
            path, "Ann", None, config=ServiceConfig(network=False)
        )
        await service.aclose()

    asyncio.run(make())
    return path


@pytest.mark.parametrize("command", ["whoami", "contacts"])
@pytest.mark.parametrize("as_json", [False, True])
def test_the_raw_path_prints_what_main_prints(
    profile: Path,
    command: str,
    as_json: bool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv = ["--profile", str(profile), command, *(["--json"] if as_json else [])]
    assert full.main(argv) == 0
    expected = capsys.readouterr()
    raw_reads: list[str] = []
    real = reader.read_command

    def counted(*args: Any, **kwargs: Any) -> Any:
        raw_reads.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(reader, "read_command", counted)
    monkeypatch.setattr(full, "main", lambda argv: pytest.fail("main.py was asked"))
    assert quick.main(argv) == 0
    got = capsys.readouterr()
    assert raw_reads == [command]
    assert (got.out, got.err) == (expected.out, expected.err)
    if as_json:
        json.loads(got.out)


def test_a_missing_profile_gets_mains_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--profile", str(tmp_path / "nobody"), "whoami"]
    code = quick.main(argv)
    err = capsys.readouterr().err
    assert code == full.main(argv) != 0
    assert err == capsys.readouterr().err
    assert "no profile at" in err
