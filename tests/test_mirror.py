"""The symmetry check and the half a Mirror modifier completes (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from blender_addon import mirror
from blender_addon.polygons import Polygons, from_triangles

OCTAHEDRON = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float32)
FACES = np.array(
    [[0, 2, 4], [0, 4, 3], [0, 3, 5], [0, 5, 2], [1, 4, 2], [1, 3, 4], [1, 5, 3], [1, 2, 5]], np.int32
)


def test_half_of_a_symmetric_mesh() -> None:
    vertices = OCTAHEDRON.copy()
    vertices[2:, 0] = 1e-7  # on the plane within the tolerance
    uvs = np.zeros((8, 3, 2), np.float32)
    half = mirror.symmetric_half(vertices, from_triangles(FACES, uvs))
    faces = half.polygons.corners.reshape(-1, 3)
    assert faces.shape == (4, 3) and len(half.vertices) == 5 and set(half.polygons.sizes) == {3}
    assert (half.vertices[:, 0] >= 0).all() and (half.vertices[:, 0] == 0).sum() == 4
    np.testing.assert_array_equal(np.sort(half.vertices[faces][..., 0] > 0, axis=1)[:, 2], True)


@pytest.mark.parametrize(
    ("vertices", "faces", "reason"),
    [
        (OCTAHEDRON + np.float32([0.1, 0, 0]), FACES, "no mirror image"),
        (OCTAHEDRON, np.array([[0, 1, 2], [0, 2, 4]], np.int32), "crosses the mirror plane"),
        (OCTAHEDRON, np.array([[2, 3, 4], [0, 2, 4]], np.int32), "lies in the mirror plane"),
        (OCTAHEDRON, FACES[:5], "do not mirror each other"),
    ],
)
def test_not_symmetric_says_why(vertices: np.ndarray, faces: np.ndarray, reason: str) -> None:
    with pytest.raises(mirror.NotSymmetric, match=reason):
        mirror.symmetric_half(vertices, from_triangles(faces, np.zeros((len(faces), 3, 2), np.float32)))


def test_half_of_a_quad_sphere_keeps_its_quads() -> None:
    """MeshInversion's sphere as quads and pole fans (the ``quads`` option): the half holds half of
    each, none across the plane; a quad across the plane is refused."""
    from backend.methods.meshinversion.dense import dense_sphere
    from backend.methods.meshinversion.template import quad_pairs
    from backend.polygons import pair_quads

    sphere = dense_sphere(16, 40)
    quads = pair_quads(sphere.faces.numpy(), sphere.corner_uvs.numpy(), quad_pairs(16, 40).numpy())
    polygons = Polygons(quads.sizes, quads.vertices, quads.uvs)
    vertices = sphere.vertices.numpy()
    half = mirror.symmetric_half(vertices.astype(np.float32), polygons)
    assert np.bincount(half.polygons.sizes).tolist() == [0, 0, 0, 40, 14 * 20]
    assert (half.vertices[half.polygons.corners, 0] >= 0).all()
    c, s = np.cos(np.pi / 40), np.sin(np.pi / 40)  # half a segment about the poles' axis: the plane
    turned = vertices @ np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])  # now runs through quads
    with pytest.raises(mirror.NotSymmetric, match="crosses the mirror plane"):
        mirror.symmetric_half(turned.astype(np.float32), polygons)
