"""The faces the importer builds: polygons with a UV per corner (numpy only, no bpy).

A result's ``mesh.npz`` always holds triangles; with the ``quads`` option it also holds the same
surface as polygons (``backend/result_format.py``), which the importer prefers. Both become this one
shape, so building the mesh and cutting the Mirror modifier's half need no second code path.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Polygons(NamedTuple):
    sizes: np.ndarray
    """(P,) int32 corners per polygon."""
    corners: np.ndarray
    """(C,) int32 vertex index per corner, polygon after polygon."""
    uvs: np.ndarray
    """(C, 2) float32 UV per corner."""

    @property
    def starts(self) -> np.ndarray:
        """(P,) each polygon's first corner."""
        return (np.cumsum(self.sizes) - self.sizes).astype(np.int32)


def from_triangles(faces: np.ndarray, uvs: np.ndarray) -> Polygons:
    """(F, 3) triangles with (F, 3, 2) corner UVs as polygons of three corners."""
    return Polygons(
        np.full(len(faces), 3, np.int32),
        np.ascontiguousarray(faces.reshape(-1), np.int32),
        np.ascontiguousarray(uvs.reshape(-1, 2), np.float32),
    )
