"""The first run on a fresh machine: a .venv left half-made by a failed first try is made again
(scripts/make-venv.sh, run by scripts/setup.sh), a sound one is kept, and the whole setup.sh
repairs a broken checkout (against the real package index)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# The interpreter this test's venv was made from, as a fresh checkout's setup would use.
BASE_PYTHON = sys._base_executable


def checkout_with(tmp_path: Path, *scripts: str) -> Path:
    checkout = tmp_path / "checkout"
    (checkout / "scripts").mkdir(parents=True)
    for script in scripts:
        shutil.copy2(ROOT / "scripts" / script, checkout / "scripts" / script)
    return checkout


def make_venv(checkout: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "scripts/make-venv.sh"],
        cwd=checkout,
        env={**os.environ, "PYTHON": BASE_PYTHON},
        capture_output=True,
        text=True,
        timeout=120,
    )


def fake_python(venv: Path, script: str) -> None:
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(script)
    (venv / "bin" / "python").chmod(0o755)


def break_by_cutting_off(venv: Path) -> None:
    fake_python(venv, "#!/bin/sh\nexit 1\n")  # a venv cut off midway: its python does not run


def break_by_leaving_out_pip(venv: Path) -> None:
    subprocess.run([BASE_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)


def break_by_another_python(venv: Path) -> None:
    # Answers every question as a sound venv made by another installation of the same version
    # would (pyenv's and Debian's 3.11, say): its modules are built for another libpython.
    major, minor = sys.version_info[:2]
    fake_python(venv, f"#!/bin/sh\necho /opt/other-python {major} {minor}\n")


@pytest.mark.parametrize(
    ("break_venv", "said"),
    [
        (break_by_cutting_off, "half-made"),
        (break_by_leaving_out_pip, "half-made"),
        (break_by_another_python, "made by another Python"),
    ],
)
def test_a_half_made_venv_is_made_again(tmp_path: Path, break_venv, said: str) -> None:
    checkout = checkout_with(tmp_path, "make-venv.sh")
    break_venv(checkout / ".venv")
    result = make_venv(checkout)
    assert result.returncode == 0, result.stderr
    assert said in result.stderr and "making it again" in result.stderr
    python = checkout / ".venv" / "bin" / "python"
    pip = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr
    made_from = subprocess.run(
        [python, "-c", "import sys; print(sys.base_prefix)"], capture_output=True, text=True
    )
    assert made_from.stdout.strip() == sys.base_prefix


def test_a_sound_venv_is_kept(tmp_path: Path) -> None:
    checkout = checkout_with(tmp_path, "make-venv.sh")
    assert make_venv(checkout).returncode == 0
    keepsake = checkout / ".venv" / "installed-before"
    keepsake.write_text("kept")
    again = make_venv(checkout)
    assert again.returncode == 0, again.stderr
    assert again.stderr == "" and keepsake.read_text() == "kept"


def as_someone_else() -> list[str]:
    """Run as nobody when the tests run as root: the path of a user who cannot apt-get."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without setpriv: cannot run the set-up as another user")
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


def python_for(user: list[str]) -> str:
    """A Python >= 3.11 that user can run (this one may live in root's home, as pyenv's does)."""
    for candidate in (BASE_PYTHON, "/usr/bin/python3"):
        # Through a shell, as the set-up runs it (setpriv itself may reach what a shell cannot).
        probe = f"exec {candidate} -c 'import sys; sys.exit(sys.version_info < (3, 11))'"
        check = [*user, "/bin/sh", "-c", probe]
        if subprocess.run(check, capture_output=True).returncode == 0:
            return candidate
    pytest.skip(f"no Python >= 3.11 that {user or 'this user'} can run")


def test_without_ensurepip_the_one_apt_get_line_is_printed() -> None:
    """Debian's python3 before python3-venv: `import ensurepip` fails, and the user is told."""
    if shutil.which("apt-get") is None:
        pytest.skip("no apt-get here: the line printed is Debian's")
    # Outside pytest's 0700 temporary directory, so that nobody can work in it.
    workdir = Path(tempfile.mkdtemp(prefix="make-venv-"))
    try:
        workdir.chmod(0o777)
        checkout = checkout_with(workdir, "make-venv.sh")
        checkout.chmod(0o777)
        no_ensurepip = workdir / "no-ensurepip" / "ensurepip"
        no_ensurepip.mkdir(parents=True)
        (no_ensurepip / "__init__.py").write_text(
            "raise ImportError('ensurepip is disabled in Debian for the system python')\n"
        )
        python = workdir / "python3"
        real = python_for(as_someone_else())
        python.write_text(f'#!/bin/sh\nPYTHONPATH={no_ensurepip.parent} exec {real} "$@"\n')
        python.chmod(0o755)
        result = subprocess.run(
            [*as_someone_else(), "bash", "scripts/make-venv.sh"],
            cwd=checkout,
            env={**os.environ, "PYTHON": str(python)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 1
        line = result.stderr.strip().splitlines()[-1]
        assert line.startswith("setup: missing python3-venv")
        assert "Run: sudo apt-get install -y python3-venv" in line
        assert not (checkout / ".venv").exists()
    finally:
        shutil.rmtree(workdir)


def package_index_reachable() -> bool:
    try:
        with urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=10):
            return True
    except OSError:
        return False


@pytest.mark.e2e  # a pip install of the project and its dependencies from the package index
@pytest.mark.timeout(900)
def test_setup_repairs_a_checkout_whose_first_try_failed(tmp_path: Path) -> None:
    if not package_index_reachable():
        pytest.skip("pypi.org is not reachable from here: setup.sh installs from it")
    checkout = tmp_path / "checkout"
    shutil.copytree(
        ROOT,
        checkout,
        ignore=shutil.ignore_patterns(".venv", ".git", "test-artifacts", "data", "__pycache__"),
        symlinks=True,
    )
    break_by_cutting_off(checkout / ".venv")
    result = subprocess.run(
        ["bash", "scripts/setup.sh"],
        cwd=checkout,
        env={**os.environ, "PYTHON": BASE_PYTHON, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "making it again" in result.stderr
    check = subprocess.run(
        [str(checkout / ".venv" / "bin" / "periscope-ingest"), "--version"],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0 and check.stdout.strip()
