"""scripts/install, behind scripts/run and scripts/test: it installs only when the lock,
pyproject.toml or the Python changed, so a restart needs no network."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STAMP = ".coffeebot-installed"


def offline(tmp_path: Path, **extra: str) -> dict[str, str]:
    """pip with no index and no local wheels: any install attempt fails at once."""
    (tmp_path / "no-wheels").mkdir(exist_ok=True)
    return {
        **os.environ,
        "PIP_INDEX_URL": "http://127.0.0.1:9/",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(tmp_path / "no-wheels"),
        "PIP_CONFIG_FILE": os.devnull,
        # This interpreter's own Python: the one that made the venv the tests run in.
        "PYTHON": sys._base_executable,
        "VENV": ".venv",  # not the caller's, which scripts/test may have set
        **extra,
    }


def script(
    folder: Path, name: str, env: dict[str, str], *arguments: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(folder / "scripts" / name), *arguments],
        env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def project_copy(tmp_path: Path) -> Path:
    """What the install step reads: the scripts, pyproject.toml and the lock files."""
    copy = tmp_path / "project"
    for part in ("scripts", "requirements"):
        shutil.copytree(REPO / part, copy / part)
    shutil.copy(REPO / "pyproject.toml", copy)
    return copy


def test_scripts_run_restarts_offline_without_installing(tmp_path: Path) -> None:
    venv = Path(sys.prefix)
    assert (venv / STAMP).is_file(), "make this venv with bash scripts/test"
    stamp = (venv / STAMP).read_text()
    result = script(REPO, "run", offline(tmp_path, VENV=str(venv)), "--help")
    assert result.returncode == 0, result.stderr
    assert "usage: coffeebot" in result.stdout and result.stderr == ""
    assert (venv / STAMP).read_text() == stamp


def test_an_unchanged_venv_is_left_alone_and_a_changed_pyproject_installs(
    tmp_path: Path,
) -> None:
    project = project_copy(tmp_path)
    venv = project / ".venv"
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", venv], check=True)
    # The same lock, pyproject and Python as this venv's: its stamp holds for the copy too.
    shutil.copy(Path(sys.prefix) / STAMP, venv / STAMP)
    for kind in ("test", "run"):  # a venv made for the tests runs the bot as it is
        unchanged = script(project, "install", offline(tmp_path), kind)
        assert (unchanged.returncode, unchanged.stderr) == (0, "")
    with (project / "pyproject.toml").open("a") as pyproject:
        pyproject.write("\n# a change\n")
    changed = script(project, "install", offline(tmp_path), "test")
    assert changed.returncode != 0  # offline, and this venv has no pip: the attempt is seen
    assert changed.stderr.startswith(
        "scripts: installing requirements/test.txt into .venv (once; later starts need no network)"
    )
    assert not (venv / STAMP).exists()


def test_a_venv_made_by_another_python_is_rebuilt(tmp_path: Path) -> None:
    project = project_copy(tmp_path)
    stale = project / ".venv" / "bin" / "python"
    stale.parent.mkdir(parents=True)
    stale.write_text("#!/bin/sh\necho 3.9.18 /usr/local\n")
    stale.chmod(0o755)
    result = script(project, "install", offline(tmp_path), "run")
    version = ".".join(map(str, sys.version_info[:3]))
    assert result.stderr.startswith(
        f"scripts: .venv was made by another Python (3.9.18); rebuilding it with {version}\n"
    )
    rebuilt = subprocess.run(
        [stale, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True
    )
    assert rebuilt.stdout.strip() == version


def test_a_python_older_than_3_11_is_refused_in_one_line(tmp_path: Path) -> None:
    old = tmp_path / "python-old"
    old.write_text('#!/bin/sh\ncase "$2" in *version_info*) exit 1;; esac\necho 3.10.13 /x\n')
    old.chmod(0o755)
    result = script(project_copy(tmp_path), "install", offline(tmp_path, PYTHON=str(old)), "run")
    assert result.returncode == 2
    assert result.stderr == (
        f"scripts: coffeebot needs Python 3.11 or newer; '{old}' is 3.10.13 (set PYTHON)\n"
    )
