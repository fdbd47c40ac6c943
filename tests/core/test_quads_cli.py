"""``--quads`` end to end (issue 24): ``python -m backend reconstruct`` on the shipped demo weights of
both methods writes the polygon arrays beside unchanged triangles, and result.json records it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from backend.cli import build_parser, placement_overrides
from backend.polygons import Polygons, fan_triangles, same_triangles
from backend.result_format import MESH_ARRAYS, MESH_FILE, POLYGON_ARRAYS, RESULT_JSON
from tests.blender.conftest import GAN2SHAPE_SHORT, MESHINVERSION_SHORT
from tests.core.backend_process import ROOT, backend_env

SHORT = {"meshinversion": MESHINVERSION_SHORT, "gan2shape": GAN2SHAPE_SHORT}
PHOTO = ROOT / "examples" / "car_01.png"


def reconstruct(out: Path, method: str, *extra: str) -> dict:
    """Run the CLI on the demo weights; returns result.json."""
    sets = [f"--set={item}" for item in SHORT[method].split()]
    command = [sys.executable, "-m", "backend", "reconstruct", str(PHOTO), "--method", method,
               "--preset", "fast", "--seed", "3", "-o", str(out), *sets, *extra]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=backend_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / RESULT_JSON).read_text())


def load(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / MESH_FILE) as mesh:
        return {name: mesh[name] for name in mesh.files}


def test_quads_flag_is_the_quads_option() -> None:
    parse = build_parser().parse_args
    assert "quads" not in placement_overrides(parse(["reconstruct", "x.png", "-o", "o"]))
    assert placement_overrides(parse(["reconstruct", "x.png", "-o", "o", "--quads"])) == {"quads": "true"}


@pytest.mark.slow
def test_meshinversion_quads_are_the_same_sphere(tmp_path: Path) -> None:
    plain = reconstruct(tmp_path / "tris", "meshinversion", "--faces", "5000")
    quads = reconstruct(tmp_path / "quads", "meshinversion", "--faces", "5000", "--quads")
    assert plain["options"]["quads"] is False and quads["options"]["quads"] is True
    tris, mesh = load(tmp_path / "tris"), load(tmp_path / "quads")
    assert tuple(tris) == MESH_ARRAYS and tuple(mesh) == MESH_ARRAYS + POLYGON_ARRAYS
    for name in MESH_ARRAYS:  # the triangles are today's, bit for bit; --faces still counts them
        np.testing.assert_array_equal(mesh[name], tris[name])
    rings, segments = quads["info"]["export"]["rings"], quads["info"]["export"]["segments"]
    sizes = mesh["polygon_sizes"]
    assert np.bincount(sizes).tolist() == [0, 0, 0, 2 * segments, (rings - 2) * segments]
    assert plain["mesh"]["polygons"] == plain["mesh"]["faces"]
    assert quads["mesh"] == {**plain["mesh"], "polygons": len(sizes)}
    polygons = Polygons(sizes, mesh["polygon_vertices"], mesh["polygon_uvs"])
    assert same_triangles(*fan_triangles(polygons), mesh["faces"], mesh["uvs"])


@pytest.mark.slow
def test_gan2shape_relief_is_all_quads(tmp_path: Path) -> None:
    plain = reconstruct(tmp_path / "tris", "gan2shape")
    quads = reconstruct(tmp_path / "quads", "gan2shape", "--quads")
    assert quads["options"]["quads"] is True and quads["mesh"]["polygons"] == quads["mesh"]["faces"] // 2
    mesh = load(tmp_path / "quads")
    assert set(mesh["polygon_sizes"].tolist()) == {4}
    polygons = Polygons(mesh["polygon_sizes"], mesh["polygon_vertices"], mesh["polygon_uvs"])
    assert same_triangles(*fan_triangles(polygons), mesh["faces"], mesh["uvs"])
    # Whole grid cells only: the rim's half-covered cells (a triangle each) are what goes.
    rim = plain["mesh"]["faces"] - quads["mesh"]["faces"]
    assert 0 < rim < 0.05 * plain["mesh"]["faces"], rim
