"""Mirror-symmetric results as one half plus Blender's Mirror modifier (numpy only, no bpy).

A result is symmetric when ``X -> -X`` maps its vertices onto vertices (within ``TOLERANCE`` of the
mesh size) and the polygons (triangles, or quads and triangles) of one side onto the other's
vertices (a quad's diagonal may flip: an
imported mesh need not be triangulated mirror-symmetrically, though MeshInversion's is). The half
kept is the ``X >= 0`` side, the vertices on the plane snapped to ``X = 0``. UVs are taken as
mirrored by ``u -> 0.5 - u`` (MeshInversion's layout): the modifier's ``u' = 1 - u + offset`` with
offset ``-0.5`` gives that, up to a whole turn of ``u`` (the image repeats in ``u``, so the same
texels).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .polygons import Polygons

TOLERANCE = 1e-5
"""Largest mismatch between a vertex and its mirror image, relative to the mesh size."""
MIRROR_U_OFFSET = -0.5
"""The Mirror modifier's ``mirror_offset_u`` that turns its ``u' = 1 - u + offset`` into ``0.5 - u``."""
KEY_WEIGHTS = np.array([0.5698402910, 1.0, 0.7548776662])
"""Generic weights of ``(|X|, Y, Z)`` for the 1-D sort that finds mirror candidates."""


class NotSymmetric(ValueError):
    """The result is not mirror-symmetric in X; the message says why, in a few words."""


class Half(NamedTuple):
    vertices: np.ndarray
    polygons: Polygons


def mesh_size(vertices: np.ndarray) -> float:
    """The largest side of the bounding box (1 for an empty or flat-to-a-point mesh)."""
    size = float(np.ptp(vertices, axis=0).max()) if len(vertices) else 0.0
    return size if size > 0 else 1.0


def mirror_partners(vertices: np.ndarray, tol: float) -> np.ndarray:
    """(V,) index of the vertex nearest each vertex's mirror image; raises when one is farther than tol."""
    points = vertices.astype(np.float64)
    key = np.abs(points[:, 0]) * KEY_WEIGHTS[0] + points[:, 1:] @ KEY_WEIGHTS[1:]
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    reach = tol * KEY_WEIGHTS.sum()
    lo = np.searchsorted(sorted_key, key - reach, side="left")
    counts = np.searchsorted(sorted_key, key + reach, side="right") - lo
    if counts.sum() > 64 * len(points) + 1024:
        raise NotSymmetric("too many coincident vertices to match")
    owner = np.repeat(np.arange(len(points)), counts)
    starts = np.cumsum(counts) - counts
    candidate = order[lo[owner] + np.arange(len(owner)) - starts[owner]]
    mirrored = points * (-1.0, 1.0, 1.0)
    dist = np.linalg.norm(points[candidate] - mirrored[owner], axis=1)
    best = np.lexsort((dist, owner))
    first = np.searchsorted(owner[best], np.arange(len(points)))
    if (counts == 0).any() or (dist[best[first]] > tol).any():
        raise NotSymmetric("a vertex has no mirror image in X")
    return candidate[best[first]]


def check_faces(vertices: np.ndarray, polygons: Polygons, partners: np.ndarray, tol: float) -> np.ndarray:
    """(P,) whether each polygon is on the X >= 0 side; raises unless the sides mirror each other (the
    same count, the same vertices; a quad's diagonal may differ)."""
    x, starts = vertices[:, 0][polygons.corners], polygons.starts
    low, high = np.minimum.reduceat(x, starts), np.maximum.reduceat(x, starts)
    if ((high > tol) & (low < -tol)).any():
        raise NotSymmetric("a face crosses the mirror plane")
    if ((high <= tol) & (low >= -tol)).any():
        raise NotSymmetric("a face lies in the mirror plane")
    keep = low >= -tol
    kept = np.repeat(keep, polygons.sizes)
    left, right = np.unique(polygons.corners[~kept]), np.unique(partners[polygons.corners[kept]])
    if 2 * keep.sum() != len(keep) or left.shape != right.shape or (left != right).any():
        raise NotSymmetric("the faces do not mirror each other")
    return keep


def symmetric_half(vertices: np.ndarray, polygons: Polygons) -> Half:
    """The X >= 0 half of a mirror-symmetric mesh, plane vertices at X = 0; raises ``NotSymmetric``."""
    tol = TOLERANCE * mesh_size(vertices)
    partners = mirror_partners(vertices, tol)
    keep = check_faces(vertices, polygons, partners, tol)
    kept = np.repeat(keep, polygons.sizes)
    used = np.unique(polygons.corners[kept])
    index = np.full(len(vertices), -1, np.int32)
    index[used] = np.arange(len(used), dtype=np.int32)
    half = vertices[used].copy()
    half[np.abs(half[:, 0]) <= tol, 0] = 0.0
    contiguous = np.ascontiguousarray
    sides = Polygons(contiguous(polygons.sizes[keep]), contiguous(index[polygons.corners[kept]]),
                     contiguous(polygons.uvs[kept]))  # fmt: skip
    return Half(contiguous(half), sides)
