"""'Set up backend' without Blender: a real venv and real pip runs (offline, so no downloads)."""

from __future__ import annotations

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
