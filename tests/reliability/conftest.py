"""Shared fixtures of the reliability suite: tiny real weights, photos, a live backend, another user.

Everything reuses the backend-core helpers (``tests/core/backend_process.py`` and
``tests/core/tiny_models.py``) instead of copying them; every wait has a timeout so a failing
test ends instead of hanging CI.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.core.backend_process import ROOT, BackendProcess, backend_env
from tests.core.tiny_models import object_photo, tiny_gan2shape, tiny_meshinversion

NOBODY_UID = 65534
"""Permission tests drop to this user when the suite runs as root (root ignores file modes)."""
MESSAGE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class TinyWeights:
    """A user weights folder with one tiny MeshInversion and one tiny GAN2Shape model."""

    root: Path
    meshinversion: str
    gan2shape: str
    overrides: dict[str, dict[str, Any]]

    def job(self, method: str, image: Path, output_dir: Path, **fields: Any) -> dict[str, Any]:
        """A protocol ``job`` message that runs in seconds with the tiny weights."""
        return {
            "type": "job",
            "method": method,
            "weights": getattr(self, method),
            "image": str(image),
            "output_dir": str(output_dir),
            "overrides": dict(self.overrides[method]),
            **fields,
        }


def make_tiny_weights(root: Path) -> TinyWeights:
    mi, mi_overrides = tiny_meshinversion(root)
    g2s, g2s_overrides = tiny_gan2shape(root)
    return TinyWeights(root, mi, g2s, {"meshinversion": mi_overrides, "gan2shape": g2s_overrides})


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyWeights:
    return make_tiny_weights(tmp_path_factory.mktemp("weights"))


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return object_photo(tmp_path_factory.mktemp("photo") / "photo.png")


def start_backend(weights_dir: Path, stderr_path: Path) -> BackendProcess:
    backend = BackendProcess(weights_dir, stderr_path)
    backend.expect("hello", timeout=MESSAGE_TIMEOUT_S)
    return backend


def alive(backend: BackendProcess) -> bool:
    """The backend still answers: a ``ping`` gets its ``pong`` (no crash, no hang)."""
    token = f"alive-{len(backend.seen)}"
    backend.send({"type": "ping", "id": token})
    return backend.expect("pong", timeout=30, id=token)["id"] == token


def job_outcome(backend: BackendProcess, job_id: str, timeout: float = MESSAGE_TIMEOUT_S) -> dict[str, Any]:
    """The final message of ``job_id`` (result, error or cancelled), skipping everything else."""
    while True:
        message = backend.next(timeout)
        if message.get("job") == job_id and message["type"] in ("result", "error", "cancelled"):
            return message


def is_one_line_error(message: dict[str, Any]) -> bool:
    """What the add-on shows: a code, one line of message, and a hint saying what to do."""
    text = message.get("message", "")
    return message["type"] == "error" and bool(message.get("code")) and bool(text) and "\n" not in text


def leftovers(folder: Path) -> list[str]:
    """Staging or retired result folders (``.NAME.tmp-*``/``.NAME.old-*``/probes) left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder another user can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="rfi-reliability-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


DROP_PRIVILEGES_AND_RUN_CLI = f"""
import os, sys
import backend.methods.gan2shape, backend.methods.meshinversion  # lazily imported modules, loaded now
from PIL import Image
from backend.cli import main
Image.init()  # Pillow loads its format plugins on first use
if os.geteuid() == 0:  # the interpreter lives in root's home, so it is started as root, then dropped
    os.setgroups([])
    os.setgid({NOBODY_UID})
    os.setuid({NOBODY_UID})
sys.exit(main(sys.argv[1:]))
"""


def run_as_other_user(args: list[str], home: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the backend CLI unprivileged, so file modes are enforced (as root they would not be)."""
    return subprocess.run(
        [sys.executable, "-c", DROP_PRIVILEGES_AND_RUN_CLI, *args],
        cwd=ROOT,
        env={**backend_env(), "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
