"""`chinwag --install-desktop-entry`: put Chinwag in the user's application menu.

The freedesktop.org way (Linux and the BSDs: GNOME, KDE, Xfce...): a .desktop file in
``$XDG_DATA_HOME/applications`` and the icon in the hicolor theme under
``$XDG_DATA_HOME/icons``. Nothing is written outside the user's own data folder, so no root
is needed and ``--remove-desktop-entry`` takes it all back. Windows and macOS have no such
menu files; there the command says so and writes nothing.

No Qt here: it runs before any window exists.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

import platformdirs

RESOURCES = Path(__file__).resolve().parent / "resources"
DESKTOP_FILE = "chinwag.desktop"
ICON_FILE = "chinwag.svg"


class DesktopEntryError(Exception):
    """The entry cannot be installed here (another platform, an unwritable folder)."""


def supported(platform: str | None = None) -> bool:
    return (platform or sys.platform).startswith(("linux", "freebsd", "openbsd", "netbsd"))


def data_home() -> Path:
    """$XDG_DATA_HOME, or ~/.local/share (platformdirs reads the variable)."""
    return platformdirs.user_data_path()


def entry_paths(root: Path | None = None) -> tuple[Path, Path]:
    """Where the .desktop file and the icon go."""
    base = root if root is not None else data_home()
    return (
        base / "applications" / DESKTOP_FILE,
        base / "icons" / "hicolor" / "scalable" / "apps" / ICON_FILE,
    )


def launcher() -> list[str]:
    """The command a menu click runs: the `chinwag` script this process was started from if
    that is one, else the one on PATH, else this interpreter with ``-m ui.app``. An absolute
    path, because a menu does not see the PATH a shell has (pipx puts scripts in ~/.local/bin,
    which many desktop sessions leave out)."""
    # Absolute, not resolved: pipx's ~/.local/bin/chinwag link outlives the venv behind it.
    started = Path(sys.argv[0]).absolute() if sys.argv and sys.argv[0] else None
    if started is not None and started.name == "chinwag" and started.is_file():
        return [str(started)]
    found = shutil.which("chinwag")
    if found:
        return [str(Path(found).absolute())]
    return [sys.executable, "-m", "ui.app"]


def desktop_text(command: list[str]) -> str:
    """The packaged chinwag.desktop with its Exec line pointing at `command`."""
    exec_line = "Exec=" + " ".join(_desktop_quote(part) for part in command)
    lines = (RESOURCES / DESKTOP_FILE).read_text(encoding="utf-8").splitlines()
    out = [exec_line if line.startswith("Exec=") else line for line in lines]
    return "\n".join(out) + "\n"


def _desktop_quote(arg: str) -> str:
    """Quoting for an Exec argument (Desktop Entry Specification, "The Exec key"): double
    quotes when needed, with `"`, `` ` ``, `$` and `\\` escaped; `%` doubled everywhere."""
    arg = arg.replace("%", "%%")
    if arg and not any(c in arg for c in " \t\n\"'\\><~|&;$*?#()`"):
        return arg
    escaped = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return f'"{escaped}"'


def install(
    root: Path | None = None, command: list[str] | None = None, platform: str | None = None
) -> tuple[Path, Path]:
    """Write the .desktop file and the icon; returns their paths."""
    if not supported(platform):
        raise DesktopEntryError(
            "desktop entries are a freedesktop.org (Linux, BSD) feature; on "
            f"{platform or sys.platform} start Chinwag with the `chinwag` command"
        )
    desktop, icon = entry_paths(root)
    try:
        desktop.parent.mkdir(parents=True, exist_ok=True)
        icon.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(RESOURCES / ICON_FILE, icon)
        tmp = desktop.with_suffix(".tmp")
        tmp.write_text(desktop_text(command or launcher()), encoding="utf-8")
        tmp.replace(desktop)  # a menu watching the folder never reads half a file
    except OSError as exc:
        raise DesktopEntryError(f"cannot write the desktop entry: {exc}") from exc
    return desktop, icon


def remove(root: Path | None = None) -> list[Path]:
    """Delete what `install` wrote; returns the files that were there."""
    removed = []
    for path in entry_paths(root):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DesktopEntryError(f"cannot remove {path}: {exc}") from exc
        removed.append(path)
    return removed


def main(action: str) -> int:
    """The command-line side: `install` or `remove`, reporting what it did."""
    try:
        if action == "install":
            desktop, icon = install()
            print(f"chinwag: installed {desktop}\nchinwag: installed {icon}")
            print("chinwag: Chinwag is in your application menu (it may take a moment to show)")
            print(f"chinwag: the menu runs: {shlex.join(launcher())}")
        else:
            removed = remove()
            for path in removed:
                print(f"chinwag: removed {path}")
            if not removed:
                print("chinwag: no desktop entry was installed")
    except DesktopEntryError as exc:
        print(f"chinwag: {exc}", file=sys.stderr)
        return 1
    return 0
