"""Fixtures for the add-on tests: the real extension zip, built once, and bpy scenario runs.

bpy runs only in subprocesses (``bpy_scenarios.py``): it can be imported once per process and
may hang at interpreter exit, and it must not share a process with the rest of the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).with_name("bpy_scenarios.py")
PYTHON = sys.executable


def isolated_env(user_dir: Path) -> dict[str, str]:
    """A Blender user folder of its own, one torch thread, no inherited PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(BLENDER_USER_RESOURCES=str(user_dir), OMP_NUM_THREADS="1")
    return env


def run_scenario(name: str, args: dict[str, Any], user_dir: Path, timeout: float = 600) -> dict[str, Any]:
    """Run one scenario in a fresh bpy process; its assertion errors fail the test with the log."""
    proc = subprocess.run(
        [PYTHON, str(SCENARIOS), name, json.dumps(args)],
        env=isolated_env(user_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=user_dir.parent,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (
        f"scenario {name} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    )
    return json.loads(lines[-1][len("RESULT ") :])


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``build.py package``: the zip users install, validated by Blender's own tool."""
    proc = subprocess.run(
        [PYTHON, str(ROOT / "build.py"), "package"], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return next((ROOT / "dist").glob("reconstruct_from_image-*.zip"))


def object_photo(path: Path, size: int = 160) -> Path:
    """A real RGBA photo-like image: a shaded, textured blob on transparent background."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    inside = ((xx - 0.5) / 0.38) ** 2 + ((yy - 0.55) / 0.25) ** 2 < 1.0
    rgb = np.stack([0.8 - 0.4 * yy, 0.2 + 0.5 * xx, 0.3 + 0.2 * np.sin(20 * xx)], -1)
    rgba = np.concatenate([rgb, inside[..., None].astype(np.float32)], -1)
    Image.fromarray((rgba * 255).astype(np.uint8), "RGBA").save(path)
    return path
