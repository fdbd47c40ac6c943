"""The ``quads`` option's polygons (issue 24): MeshInversion's UV spheres and GAN2Shape's relief grid
as quads made of exactly their triangle pairs, with the triangles' UVs; the contract results.py
checks and writes into ``mesh.npz``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.methods.gan2shape.export import relief_mesh, relief_with_faces
from backend.methods.meshinversion.dense import dense_sphere, sphere_size
from backend.methods.meshinversion.template import SEGMENTS, quad_pairs, sphere_template
from backend.polygons import Polygons, fan_triangles, pair_quads, same_triangles
from backend.protocol import UserError
from backend.result_format import MESH_ARRAYS, MESH_FILE, POLYGON_ARRAYS, RESULT_JSON
from backend.results import validate, write_result
from tests.core.test_results import META, octahedron


def spheres() -> list[tuple[str, np.ndarray, np.ndarray, int, int]]:
    """(name, faces, corner uvs, rings, segments) of the coarse templates and two dense spheres."""
    out = []
    for rings in (16, 31):
        template = sphere_template(rings)
        out.append((f"template{rings}", template.faces.numpy(), template.corner_uvs.numpy(), rings, SEGMENTS))
    for count in (20_000, 1_000):
        sphere = dense_sphere(*sphere_size(count))
        out.append((f"dense{count}", sphere.faces.numpy(), sphere.corner_uvs.numpy(), sphere.rings,
                    sphere.segments))  # fmt: skip
    return out


def corners_of(polygons: Polygons, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, size) vertices and (N, size, 2) UVs of the polygons with ``size`` corners."""
    starts = np.cumsum(polygons.sizes) - polygons.sizes
    picked = starts[polygons.sizes == size][:, None] + np.arange(size)
    return polygons.vertices[picked], polygons.uvs[picked]


@pytest.mark.parametrize(("name", "faces", "uvs", "rings", "segments"), spheres())
def test_sphere_quads_are_the_triangle_pairs(
    name: str, faces: np.ndarray, uvs: np.ndarray, rings: int, segments: int
) -> None:
    pairs = quad_pairs(rings, segments).numpy()
    polygons = pair_quads(faces, uvs, pairs)
    # Quads over the bands, triangles only at the two pole fans.
    assert np.bincount(polygons.sizes).tolist() == [0, 0, 0, 2 * segments, (rings - 2) * segments]
    assert len(polygons.vertices) == len(polygons.uvs) == polygons.sizes.sum()
    quads, quad_uvs = corners_of(polygons, 4)
    # Each quad has exactly the 4 vertices of its two triangles, each corner the triangles' UV there.
    union = np.sort(np.concatenate((faces[pairs[:, 0]], faces[pairs[:, 1]]), axis=1), axis=1)
    distinct = np.where(np.diff(union, axis=1) != 0, union[:, 1:], -1)
    expected = np.sort(np.concatenate((union[:, :1], distinct), axis=1), axis=1)[:, -4:]
    np.testing.assert_array_equal(np.sort(quads, axis=1), expected)
    for pair in (0, 1):
        triangle, triangle_uvs = faces[pairs[:, pair]], uvs[pairs[:, pair]]
        hit = quads[:, :, None] == triangle[:, None, :]  # (Q, 4, 3)
        assert (hit.sum(axis=(1, 2)) == 3).all()
        corner, where = np.nonzero(hit.any(axis=2))[1], hit.argmax(axis=2)
        rows = np.repeat(np.arange(len(quads)), 3)
        np.testing.assert_array_equal(quad_uvs[rows, corner], triangle_uvs[rows, where[rows, corner]])
    # The fans of the polygons are the faces, winding and UVs included: one surface.
    assert same_triangles(*fan_triangles(polygons), faces, uvs)
    # Quads stay on one side of the symmetry plane (segments S/4 and 3S/4 hold vertex columns).
    assert len({tuple(q) for q in np.sort(quads, axis=1).tolist()}) == len(quads)


def test_uv_seam_runs_between_quads() -> None:
    template = sphere_template(16)
    pairs = quad_pairs(16, SEGMENTS).numpy()
    polygons = pair_quads(template.faces.numpy(), template.corner_uvs.numpy(), pairs)
    _, quad_uvs = corners_of(polygons, 4)
    spans = np.ptp(quad_uvs[..., 0], axis=1)
    assert spans.max() == pytest.approx(1 / SEGMENTS)  # no quad wraps from u = 1 back to u = 0
    assert (quad_uvs[..., 0] == 1).any() and (quad_uvs[..., 0] == 0).any()  # the seam's two sides


def test_pairs_that_are_no_quad_are_refused() -> None:
    template = sphere_template(16)
    faces, uvs = template.faces.numpy(), template.corner_uvs.numpy()
    pairs = quad_pairs(16, SEGMENTS).numpy()
    with pytest.raises(ValueError, match="share exactly one edge"):
        pair_quads(faces, uvs, np.array([[0, len(faces) - 1]]))
    with pytest.raises(ValueError, match="more than one pair"):
        pair_quads(faces, uvs, np.concatenate((pairs[:2], pairs[:1])))
    seam = uvs.copy()
    seam[pairs[0, 1]] += 0.01
    with pytest.raises(ValueError, match="different UVs"):
        pair_quads(faces, seam, pairs)


def disc() -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    mask = (((rows - 48) / 38) ** 2 + ((cols - 44) / 30) ** 2 <= 1).float()
    return 1.0 - 0.05 * mask, mask


def test_relief_with_quads_is_all_quads_of_its_own_triangles() -> None:
    depth, mask = disc()
    view = torch.zeros(6)
    triangles = relief_mesh(depth, view, mask, 48, view_uvs=True)
    quads = relief_mesh(depth, view, mask, 48, view_uvs=True, quads=True)
    assert triangles.polygons is None and quads.polygons is not None
    assert set(quads.polygons.sizes.tolist()) == {4} and len(quads.faces) == 2 * len(quads.polygons.sizes)
    assert same_triangles(*fan_triangles(quads.polygons), quads.faces, quads.uvs)
    # Only the rim's half-covered cells go: every quad cell's triangles are in the triangle relief
    # (told by their UVs, the grid points in the photo; the unit box rescales the smaller relief).
    kept = {tuple(p) for p in np.round(quads.uvs.reshape(-1, 6), 5).tolist()}
    everything = {tuple(p) for p in np.round(triangles.uvs.reshape(-1, 6), 5).tolist()}
    rim = len(triangles.faces) - len(quads.faces)
    assert kept <= everything and 0 < rim < 0.1 * len(triangles.faces)
    relief, _ = relief_with_faces(depth, view, mask, 20_000, view_uvs=True, quads=True)
    assert abs(len(relief.faces) - 20_000) <= 0.1 * 20_000
    assert relief.polygons is not None and len(relief.polygons.sizes) == len(relief.faces) // 2


def test_results_check_and_write_the_polygons(tmp_path: Path) -> None:
    template = sphere_template(16)
    result = octahedron()
    faces, uvs = template.faces.numpy().astype(np.int32), template.corner_uvs.numpy()
    vertices = template.vertices.numpy()
    polygons = pair_quads(faces, uvs, quad_pairs(16, SEGMENTS).numpy())
    sphere = type(result)(vertices, faces, uvs, result.texture, result.camera, {}, {}, polygons)
    files = write_result(sphere, tmp_path / "out", META)
    with np.load(files[MESH_FILE]) as mesh:
        assert tuple(mesh.files) == MESH_ARRAYS + POLYGON_ARRAYS
        np.testing.assert_array_equal(mesh["faces"], faces)
        np.testing.assert_array_equal(mesh["polygon_sizes"], polygons.sizes)
        np.testing.assert_array_equal(mesh["polygon_vertices"], polygons.vertices)
        np.testing.assert_array_equal(mesh["polygon_uvs"], polygons.uvs)
        assert mesh["polygon_sizes"].dtype == mesh["polygon_vertices"].dtype == np.int32
    document = json.loads(Path(files[RESULT_JSON]).read_text())
    assert document["mesh"]["polygons"] == len(polygons.sizes) and document["mesh"]["faces"] == len(faces)
    # Polygons that are not the faces' surface are a broken result, never written.
    flipped = Polygons(polygons.sizes, polygons.vertices[::-1].copy(), polygons.uvs)
    fewer = Polygons(polygons.sizes[1:], polygons.vertices[4:], polygons.uvs[4:])
    moved = Polygons(polygons.sizes, polygons.vertices, polygons.uvs + 0.001)
    for broken in (flipped, fewer, moved):
        with pytest.raises(UserError, match="not the surface of the faces"):
            validate(type(result)(vertices, faces, uvs, result.texture, result.camera, {}, {}, broken))
    uneven = Polygons(polygons.sizes, polygons.vertices[:-1], polygons.uvs)
    with pytest.raises(UserError, match="polygons of"):
        validate(type(result)(vertices, faces, uvs, result.texture, result.camera, {}, {}, uneven))
