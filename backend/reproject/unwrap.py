"""A UV layout for a mesh that has none: one chart per face, two faces to a square atlas cell.

Robust for any topology (non-manifold, open, with holes) and O(F): each face is mapped affinely
onto half of a grid cell, inset by a gutter of texels so bilinear lookups never read a neighbour's
chart. Texel density follows the face count, not the face area, and the charts are not connected,
so diffused fills (``pull_push``) mix unrelated faces; the photo's own texels are exact.
"""

from __future__ import annotations

import math

import numpy as np

GUTTER_TEXELS = 1.0
"""Distance between a chart and its cell's edges and its twin across the diagonal, in texels."""
MIN_CELL_TEXELS = 4
"""A cell narrower than this holds too few texels for two charts and their gutters."""


def cells_per_side(face_count: int) -> int:
    """Grid cells along each side of the atlas for ``face_count`` faces (two per cell)."""
    return max(1, math.ceil(math.sqrt(math.ceil(face_count / 2))))


def smallest_size(face_count: int) -> int:
    """The smallest power-of-two texture side whose cells still hold ``MIN_CELL_TEXELS`` texels."""
    return 2 ** math.ceil(math.log2(MIN_CELL_TEXELS * cells_per_side(face_count)))


def face_charts(face_count: int, size: int) -> np.ndarray:
    """(F, 3, 2) per-corner UVs (v up) for a ``size`` x ``size`` texture: face 2k and 2k + 1 share cell
    k, below and above its anti-diagonal; corner 0 sits in the right angle."""
    cells = cells_per_side(face_count)
    cell = 1.0 / cells
    gutter = GUTTER_TEXELS / (size * cell)  # in cell units
    if gutter * (2 + math.sqrt(2)) >= 1 or size * cell < MIN_CELL_TEXELS:
        raise ValueError(f"{face_count} faces need a texture of at least {smallest_size(face_count)} px")
    near, far = gutter, 1 - gutter * (1 + math.sqrt(2))
    lower = np.array([[near, near], [far, near], [near, far]])
    upper = 1 - lower
    index = np.arange(face_count)
    cell_index = index // 2
    origin = np.stack((cell_index % cells, cell_index // cells), axis=1).astype(np.float64)
    corners = np.where((index % 2 == 0)[:, None, None], lower, upper)
    return ((origin[:, None, :] + corners) * cell).astype(np.float32)
