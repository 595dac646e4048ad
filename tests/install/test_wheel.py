"""A built wheel, installed (not editable) into a new venv, is a working Chinwag.

How the venv gets its dependencies: installing PySide6 and the rest into a fresh venv
copies ~600 MB and takes minutes on these machines, so the wheel goes in with
``--no-deps`` and a ``.pth`` file appends this test venv's site-packages *after* the new
venv's own. Nothing of the project itself comes from there: the editable install's path
hook is a ``.pth`` inside that folder, and Python reads ``.pth`` files only in site
directories proper, never in a folder another ``.pth`` names; the test checks that
``messenger`` and ``ui`` are imported from the new venv. What this leaves out (a dependency
missing from the wheel's metadata) is checked separately: every third-party module the
installed code imports must come from a distribution the wheel requires.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _run(args: list[str], *, env: dict[str, str], cwd: Path, timeout: float = 300):
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return done


def _clean_env(tmp_path: Path) -> dict[str, str]:
    """No PYTHONPATH, no profile, a home of its own: only the installed wheel is Chinwag."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "CHINWAG_"))}
    env.update(
        HOME=str(tmp_path / "home"),
        XDG_DATA_HOME=str(tmp_path / "home" / "share"),
        XDG_CONFIG_HOME=str(tmp_path / "home" / "config"),
        PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        QT_QPA_PLATFORM="offscreen",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    (tmp_path / "home").mkdir()
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # Built from a copy of the tracked files, so the build's own scratch folders (build/,
    # *.egg-info) never land in the worktree and a stale one cannot leak into the wheel.
    src = out / "src"
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        path = ROOT / os.fsdecode(name)
        if path.is_file():
            target = src / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    done = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(out), str(src)],
        env=env,
        cwd=out,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (found,) = out.glob("chinwag-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv holding the wheel; its bin/ folder."""
    home = tmp_path_factory.mktemp("venv")
    target = home / "venv"
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(target)
    bin_dir = target / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    # The dependencies: this venv's site-packages, after the new one's own (module doc).
    Path(purelib, "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    done = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        env=env,
        cwd=home,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return bin_dir


def test_the_wheel_carries_the_icons_migrations_and_entry_points(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for icon in (ROOT / "ui" / "resources" / "icons").glob("*.svg"):
        assert f"ui/resources/icons/{icon.name}" in names
    assert {"ui/resources/chinwag.svg", "ui/resources/chinwag.desktop"} <= names
    assert "messenger/py.typed" in names
    migrations = [n for n in names if n.startswith("messenger/storage/migrations/versions/")]
    assert migrations and "messenger/storage/migrations/env.py" in names
    assert not any(n.startswith(("tests/", "bench/")) for n in names)
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "chinwag = ui.app:main" in text and "chinwag-cli = messenger.cli.quick:main" in text


def test_the_installed_code_comes_from_the_new_venv(installed: Path, tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    code = "import messenger, ui.theme; print(messenger.__file__); print(ui.theme.APP_ICON)"
    done = _run([str(installed / "python"), "-c", code], env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    venv_root = installed.parent.resolve()
    for line in done.stdout.splitlines():
        assert Path(line).resolve().is_relative_to(venv_root), line
    assert Path(done.stdout.splitlines()[1]).is_file()  # the icon is in the wheel


def test_cli_whoami_on_a_fresh_profile_then_on_a_new_one(installed: Path, tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    profile = tmp_path / "profile"
    cli = str(installed / "chinwag-cli")
    missing = _run([cli, "--profile", str(profile), "whoami"], env=env, cwd=tmp_path)
    assert missing.returncode != 0
    assert f"no profile at {profile}" in missing.stderr + missing.stdout
    assert "chinwag-cli init" in missing.stderr + missing.stdout
    assert not profile.exists()  # asking created nothing

    made = _run(
        [cli, "--profile", str(profile), "init", "--name", "Wheel Test", "--no-passphrase"],
        env=env,
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    me = _run([cli, "--profile", str(profile), "whoami"], env=env, cwd=tmp_path)
    assert me.returncode == 0, me.stderr
    assert "Wheel Test" in me.stdout


def test_the_window_opens_offscreen_and_quits(installed: Path, tmp_path: Path) -> None:
    """The real `chinwag` script shows its main window (first paint), lists the
    conversations, and shuts down cleanly (CHINWAG_EXIT_AFTER_SHOWN, the start-up
    benchmark's switch)."""
    env = _clean_env(tmp_path)
    profile = tmp_path / "profile"
    init = ["init", "--name", "W", "--no-passphrase"]
    made = _run(
        [str(installed / "chinwag-cli"), "--profile", str(profile), *init],
        env=env,
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    env["CHINWAG_EXIT_AFTER_SHOWN"] = "1"
    shown = _run(
        [str(installed / "chinwag"), "--profile", str(profile), "--listen", "127.0.0.1:0"],
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert re.search(r"window shown after [0-9.]+ s", shown.stdout), shown.stdout
    assert "conversations listed after" in shown.stdout
    assert "Traceback" not in shown.stderr, shown.stderr


def test_desktop_entry_installs_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    done = _run([str(installed / "chinwag"), "--install-desktop-entry"], env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    desktop = Path(env["XDG_DATA_HOME"], "applications", "chinwag.desktop")
    text = desktop.read_text()
    assert f"Exec={installed.absolute() / 'chinwag'}" in text.splitlines()
    assert Path(env["XDG_DATA_HOME"], "icons/hicolor/scalable/apps/chinwag.svg").is_file()


def _third_party_imports(package_dir: Path) -> set[str]:
    names: set[str] = set()
    for path in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"messenger", "ui", "__future__"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _with_their_requirements(names: set[str]) -> set[str]:
    """The required distributions and what they require in turn (as installed here)."""
    seen: set[str] = set()
    todo = [_norm(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            if "extra ==" not in line:
                todo.append(_norm(re.split(r"[ ;<>=!~\[(]", line.strip())[0]))
    return seen


def test_every_imported_library_is_a_declared_dependency(wheel: Path, tmp_path: Path) -> None:
    """What the --no-deps install cannot show: the wheel's metadata names every library its
    code imports (a missing one would break `pip install chinwag` in a fresh venv)."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path)
    (metadata,) = tmp_path.glob("chinwag-*.dist-info/METADATA")
    required = {
        _norm(re.split(r"[ ;<>=!~\[(]", line.split(":", 1)[1].strip())[0])
        for line in metadata.read_text().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line
    }
    required = _with_their_requirements(required)
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for module in sorted(
        _third_party_imports(tmp_path / "messenger") | _third_party_imports(tmp_path / "ui")
    ):
        dists = {_norm(d) for d in providers.get(module, [])}
        if not dists & required:
            missing[module] = sorted(dists)
    assert missing == {}, f"imported but not required by the wheel: {missing}"
