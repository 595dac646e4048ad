"""`chinwag --install-desktop-entry`: the menu entry and icon land under $XDG_DATA_HOME."""

from __future__ import annotations

import configparser
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from ui import desktop_entry

ROOT = Path(__file__).resolve().parents[2]


def _entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(path.read_text(encoding="utf-8"))
    return parser["Desktop Entry"]


@pytest.mark.slow  # two processes that import Qt
@pytest.mark.skipif(not desktop_entry.supported(), reason="freedesktop.org platforms only")
def test_install_and_remove_under_a_temporary_xdg_data_home(tmp_path):
    env_home = tmp_path / "share"
    env = {"XDG_DATA_HOME": str(env_home), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    command = [sys.executable, "-m", "ui.app", "--install-desktop-entry"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    desktop = env_home / "applications" / "chinwag.desktop"
    icon = env_home / "icons" / "hicolor" / "scalable" / "apps" / "chinwag.svg"
    assert f"installed {desktop}" in done.stdout and f"installed {icon}" in done.stdout
    assert icon.read_bytes() == (desktop_entry.RESOURCES / "chinwag.svg").read_bytes()
    entry = _entry(desktop)
    assert entry["Name"] == "Chinwag" and entry["Icon"] == "chinwag"
    assert entry["Type"] == "Application"
    # No `chinwag` script on this PATH: the menu runs this interpreter with -m ui.app.
    assert shlex.split(entry["Exec"]) == [sys.executable, "-m", "ui.app"]
    assert not list((env_home / "applications").glob("*.tmp"))
    assert not (tmp_path / ".local").exists()  # only under XDG_DATA_HOME

    removed = subprocess.run(
        [sys.executable, "-m", "ui.app", "--remove-desktop-entry"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert removed.returncode == 0, removed.stderr
    assert not desktop.exists() and not icon.exists()
    assert f"removed {desktop}" in removed.stdout


def test_exec_points_at_the_script_with_spaces_quoted(tmp_path):
    text = desktop_entry.desktop_text(["/opt/my apps/bin/chinwag", "50%"])
    entry = configparser.ConfigParser(interpolation=None)
    entry.read_string(text)
    assert entry["Desktop Entry"]["Exec"] == '"/opt/my apps/bin/chinwag" 50%%'
    # Every other line of the packaged file is kept.
    assert text.count("\n") == len(
        (desktop_entry.RESOURCES / "chinwag.desktop").read_text().splitlines()
    )


def test_another_platform_gets_a_clear_answer_and_nothing_written(tmp_path):
    with pytest.raises(desktop_entry.DesktopEntryError, match=r"freedesktop\.org.*win32"):
        desktop_entry.install(tmp_path, platform="win32")
    assert not any(tmp_path.iterdir())


def test_an_unwritable_data_home_is_a_clear_error(tmp_path):
    blocker = tmp_path / "share"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(desktop_entry.DesktopEntryError, match="cannot write the desktop entry"):
        desktop_entry.install(blocker, platform="linux")
