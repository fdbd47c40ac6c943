"""The add-on inside bpy: a new file or disabling the add-on while a job runs stops the backend."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.core.backend_process import ROOT
from tests.reliability.conftest import TinyWeights

pytestmark = pytest.mark.slow  # a bpy process plus a backend with a real job

SCRIPT = Path(__file__).with_name("bpy_mid_job.py")
BPY_PYTHON = os.environ.get("RFI_TEST_BPY_PYTHON", sys.executable)


def test_new_file_or_disabling_the_addon_mid_job_stops_the_backend(
    tiny: TinyWeights, photo: Path, tmp_path: Path
) -> None:
    built = subprocess.run(
        [sys.executable, str(ROOT / "build.py"), "package"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    args = {
        "zip": str(next((ROOT / "dist").glob("reconstruct_from_image-*.zip"))),
        "python": sys.executable,
        "weights_dir": str(tiny.root),
        "image": str(photo),
        "weights": tiny.gan2shape,
        "overrides": {**tiny.overrides["gan2shape"], "invert_steps": 5000},
        "output_dir": str(tmp_path / "results"),
    }
    (tmp_path / "results").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(BLENDER_USER_RESOURCES=str(tmp_path / "user"), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [BPY_PYTHON, str(SCRIPT), json.dumps(args)],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = json.loads(lines[-1][len("RESULT ") :])
    assert out["new_file_stops_backend"] and out["disable_stops_backend"]
    assert out["outputs"] == []  # neither interrupted job left a result or half of one
