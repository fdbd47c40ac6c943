"""Polygons over a result's triangles: quads made of triangle pairs (the ``quads`` option).

A result's ``faces`` stay triangles (glTF, the renderer and every reader want them); a method that
meshes a quad grid (MeshInversion's UV sphere, GAN2Shape's relief) also names which two triangles
make each quad, and ``pair_quads`` turns that into the polygon arrays of ``mesh.npz``
(``backend/result_format.py``). Each polygon starts at a corner of its diagonal, so its fan from
corner 0 gives back exactly its triangles, winding and UVs included: the quad mesh and the triangle
mesh are one surface. numpy only, vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Polygons:
    """Polygons with per-corner UVs, as ``mesh.npz`` stores them."""

    sizes: np.ndarray
    """(P,) int32 corners per polygon (3 or 4)."""
    vertices: np.ndarray
    """(sum sizes,) int32 vertex index per corner, polygon after polygon, counter-clockwise from outside."""
    uvs: np.ndarray
    """(sum sizes, 2) float32 UV per corner."""


def pair_quads(faces: np.ndarray, uvs: np.ndarray, pairs: np.ndarray) -> Polygons:
    """Quads from the triangle pairs ``pairs`` (Q, 2) (indices into ``faces``, sharing an edge),
    followed by every other triangle as it is, in ``faces`` order.

    Raises ``ValueError`` when a pair shares no edge (or two), when a triangle is in two pairs, or
    when the pair's UVs differ on the shared edge (a UV seam cannot run through a polygon).
    """
    first, second = faces[pairs[:, 0]], faces[pairs[:, 1]]
    first_uvs, second_uvs = uvs[pairs[:, 0]], uvs[pairs[:, 1]]
    # shared[n, i, j]: edge i of the first triangle (p_i, p_i+1), reversed, is edge j of the second.
    ahead, behind = np.roll(first, -1, axis=1), np.roll(second, -1, axis=1)
    shared = (second[:, None, :] == ahead[:, :, None]) & (behind[:, None, :] == first[:, :, None])
    if (shared.sum(axis=(1, 2)) != 1).any():
        raise ValueError("a triangle pair does not share exactly one edge")
    if len(np.unique(pairs)) != pairs.size:
        raise ValueError("a triangle is in more than one pair")
    i, j = np.divmod(shared.reshape(len(pairs), 9).argmax(axis=1), 3)
    n = np.arange(len(pairs))[:, None]
    # The quad p_i+1, p_i+2, p_i, q (q: the second's corner across the edge) starts on the diagonal.
    order, across = (i[:, None] + np.array([1, 2, 0])) % 3, ((j + 2) % 3)[:, None]
    quads = np.concatenate((first[n, order], second[n, across]), axis=1)
    quad_uvs = np.concatenate((first_uvs[n, order], second_uvs[n, across]), axis=1)
    edge_uvs = first_uvs[n, np.stack(((i + 1) % 3, i), axis=1)]
    if not np.array_equal(edge_uvs, second_uvs[n, np.stack((j, (j + 1) % 3), axis=1)]):
        raise ValueError("a triangle pair has different UVs on its shared edge")
    alone = np.ones(len(faces), bool)
    alone[pairs.reshape(-1)] = False
    sizes = np.concatenate((np.full(len(pairs), 4), np.full(int(alone.sum()), 3))).astype(np.int32)
    corners = np.concatenate((quads.reshape(-1), faces[alone].reshape(-1))).astype(np.int32)
    corner_uvs = np.concatenate((quad_uvs.reshape(-1, 2), uvs[alone].reshape(-1, 2))).astype(np.float32)
    return Polygons(sizes, corners, corner_uvs)


def fan_triangles(polygons: Polygons) -> tuple[np.ndarray, np.ndarray]:
    """(T, 3) triangles and (T, 3, 2) UVs of each polygon's fan from its corner 0, polygon by polygon."""
    sizes = polygons.sizes.astype(np.int64)
    fans = sizes - 2
    owner = np.repeat(np.arange(len(sizes)), fans)
    step = np.arange(len(owner)) - np.repeat(np.cumsum(fans) - fans, fans)
    start = (np.cumsum(sizes) - sizes)[owner]
    corners = np.stack((start, start + step + 1, start + step + 2), axis=1)
    return polygons.vertices[corners], polygons.uvs[corners]


def same_triangles(faces: np.ndarray, uvs: np.ndarray, other: np.ndarray, other_uvs: np.ndarray) -> bool:
    """Whether two triangle lists hold the same triangles, winding and corner UVs, in any order."""
    if faces.shape != other.shape:
        return False
    first, first_uvs = _canonical(faces, uvs)
    second, second_uvs = _canonical(other, other_uvs)
    return bool(np.array_equal(first, second) and np.array_equal(first_uvs, second_uvs))


def _canonical(faces: np.ndarray, uvs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each triangle rotated to start at its smallest vertex (winding kept), then sorted."""
    rows = np.arange(len(faces))[:, None]
    turn = (faces.argmin(axis=1)[:, None] + np.arange(3)) % 3
    rotated, rotated_uvs = faces[rows, turn], uvs[rows, turn]
    order = np.lexsort((*rotated_uvs.reshape(len(faces), 6).T[::-1], *rotated.T[::-1]))
    return rotated[order], rotated_uvs[order]
