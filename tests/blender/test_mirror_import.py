"""Symmetric editing: a real MeshInversion result imported as its X >= 0 half under a Mirror modifier
evaluates to the same surface as the whole import: the same vertex positions, the same triangles (the
template's triangulation is mirror-symmetric) and at every vertex the same UVs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
SHORT = ["z_candidates=32", "rendered_candidates=4", "camera_refine_steps=5", "refine_steps=5",
         "stages=[[10,0.1,0.01]]", "texture_size=64"]  # fmt: skip


def uvs_at_vertices(mesh: dict[str, Any]) -> dict[tuple, set[tuple]]:
    """Each vertex position (rounded) to the set of UVs its corners carry, u taken modulo 1 (the
    mirrored half may address the repeating texture one tile over)."""
    positions = np.round(np.array(mesh["vertices"]), 4)
    uvs = np.round(np.array(mesh["uvs"]) % [1.0, 2.0], 3) % [1.0, 2.0]
    table: dict[tuple, set[tuple]] = {}
    for vertex, uv in zip(mesh["corners"], uvs, strict=True):
        table.setdefault(tuple(positions[vertex]), set()).add(tuple(uv))
    return table


def triangles(mesh: dict[str, Any]) -> set[frozenset]:
    """Each triangle as the set of its corners' (rounded) positions."""
    positions = np.round(np.array(mesh["vertices"]), 4)
    corners = np.array(mesh["corners"]).reshape(-1, 3)
    return {frozenset(map(tuple, positions[face])) for face in corners}


def test_mirror_modifier_import_equals_the_whole_mesh(
    tmp_path: Path, extension_zip: Path, tools: Any
) -> None:
    result = tmp_path / "result"
    command = [sys.executable, "-m", "backend", "reconstruct", str(ROOT / "examples" / "car_01.png"),
               "--method", "meshinversion", "--preset", "fast", "-o", str(result),
               *(f"--set={item}" for item in SHORT)]  # fmt: skip
    user = tmp_path / "user"
    done = subprocess.run(command, cwd=ROOT, env=tools.env(user), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = tools.scenario("mirror_import", {"zip": str(extension_zip), "result": str(result)}, user)
    whole, half = out["whole"], out["half"]
    assert half["modifiers"] == ["MIRROR"] and whole["modifiers"] == []
    assert out["half_vertices"] < len(whole["vertices"])  # only one half is stored
    assert len(half["vertices"]) == len(whole["vertices"]) and len(half["corners"]) == len(whole["corners"])
    np.testing.assert_allclose(
        np.sort(np.round(np.array(half["vertices"]), 4), axis=0),
        np.sort(np.round(np.array(whole["vertices"]), 4), axis=0),
        atol=1e-4,
    )
    assert set(half["sizes"]) == {3}
    assert triangles(half) == triangles(whole)
    assert uvs_at_vertices(half) == uvs_at_vertices(whole)
