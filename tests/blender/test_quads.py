"""The ``quads`` option from the add-on (issue 24): the panel's Quads checkbox and the Python API's
``quads`` reach the real backend and import MeshInversion's sphere as quads with triangle fans at the
two poles, which Blender splits back into exactly the result's triangles; its half under the Mirror
modifier evaluates to the whole quad mesh; a GAN2Shape ``--quads``
relief imports as quads only, one with half its polygon arrays is refused in one line; the batch
script takes ``--quads``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.blender.test_mirror_import import uvs_at_vertices

ROOT = Path(__file__).resolve().parents[2]
FACES = 5_000


def polygons(mesh: dict[str, Any]) -> set[frozenset]:
    """Each polygon as the set of its corners' (rounded) positions."""
    positions = np.round(np.array(mesh["vertices"]), 4)
    corners, sizes = np.array(mesh["corners"]), np.array(mesh["sizes"])
    starts = np.cumsum(sizes) - sizes
    return {frozenset(map(tuple, positions[corners[s : s + n]])) for s, n in zip(starts, sizes, strict=True)}


@pytest.mark.slow
def test_quads_import_whole_mirrored_and_as_a_relief(
    tmp_path: Path, extension_zip: Path, tools: Any, backend_cases: dict[str, Any]
) -> None:
    user = tmp_path / "user"
    relief = tmp_path / "relief"
    gan2shape = backend_cases["gan2shape"]
    store = ["--weights-dir", gan2shape.weights_dir] if gan2shape.weights_dir else []
    command = [sys.executable, "-m", "backend", *store, "reconstruct", str(ROOT / "examples" / "car_01.png"),
               "--preset", "fast", "--quads", "-o", str(relief), *gan2shape.batch_args()]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=tools.env(user), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    broken = shutil.copytree(relief, tmp_path / "broken")
    with np.load(relief / "mesh.npz") as mesh:  # polygon sizes without their vertices and UVs
        kept = ("vertices", "faces", "uvs", "polygon_sizes")
        np.savez(broken / "mesh.npz", **{name: mesh[name] for name in kept})
    render = os.environ.get("RFI_TEST_QUADS_RENDER", "")
    case = backend_cases["meshinversion"]
    photo = tools.photo(tmp_path / "toy car.png")
    args = case.scenario_args(
        extension_zip, photo, faces=FACES, relief=str(relief), broken=str(broken), render=render
    )
    out = tools.scenario("quads", args, user)
    whole, half = out["whole"], out["half"]
    sizes = np.bincount(whole["sizes"])
    poles = sizes[3]  # the two pole fans: one triangle per segment each
    assert sizes.tolist() == [0, 0, 0, poles, sizes[4]] and poles % 8 == 0 and sizes[4] > 10 * poles
    assert abs(poles + 2 * sizes[4] - FACES) <= 0.05 * FACES  # Faces counts triangles
    assert np.bincount(out["half_stored_sizes"]).tolist() == [0, 0, 0, poles // 2, sizes[4] // 2]
    assert half["modifiers"] == ["MIRROR"] and sorted(half["sizes"]) == sorted(whole["sizes"])
    np.testing.assert_allclose(
        np.sort(np.array(half["vertices"]), axis=0), np.sort(np.array(whole["vertices"]), axis=0), atol=1e-5
    )
    assert polygons(half) == polygons(whole)
    assert uvs_at_vertices(half) == uvs_at_vertices(whole)
    assert set(out["relief"]["sizes"]) == {4}
    assert out["blender_splits_as_faces"] == {"sphere": True, "relief": True}
    assert out["batch_quads"] == [False, True]
    assert "has polygon_sizes but not all polygon arrays" in out["broken"]
