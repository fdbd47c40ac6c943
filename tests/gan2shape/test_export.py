"""Relief export: cut to the mask, decimated, Blender's frame, CCW from the front, camera that fits,
UVs that overlay the photo through that camera."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from backend.categories import UNIT_BOX, ScaleRule
from backend.methods.gan2shape.depth_render import diffuse_shading
from backend.methods.gan2shape.depthmap import (
    depth_to_points,
    extend_depth,
    focal_length,
    intrinsics,
    normals_from_depth,
    transform_points,
)
from backend.methods.gan2shape.export import (
    CAM_TO_BLENDER,
    blender_camera,
    relief_mesh,
    relief_shading,
    towards_light,
)
from backend.render.rasterize import rasterize

SIZE = 64
IDENTITY = torch.zeros(6)


def bump() -> tuple[torch.Tensor, torch.Tensor]:
    """A dome (nearer at the centre) inside a disc mask centred at (row 28, col 36)."""
    rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    r2 = ((rows - 28) ** 2 + (cols - 36) ** 2) / 20**2
    depth = 1.05 - 0.08 * (1 - r2).clamp(min=0).sqrt()
    return depth, (r2 < 1).float()


def test_relief_is_cut_to_the_mask_and_decimated():
    depth, mask = bump()
    relief = relief_mesh(depth, IDENTITY, mask, 32, view_uvs=False)
    assert len(relief.vertices) <= 32 * 32 and len(relief.faces) > 100
    # Every vertex is a grid point inside the disc; the coarse grid's disc holds about pi/4 * 20^2/2^2 quads.
    grid = np.linspace(0, 63, 32)
    rows, cols = np.meshgrid(grid, grid, indexing="ij")
    inside = ((rows - 28) ** 2 + (cols - 36) ** 2) < 400
    assert len(relief.vertices) <= inside.sum()
    assert relief.faces.min() == 0 and relief.faces.max() == len(relief.vertices) - 1
    assert relief.uvs.min() >= 0 and relief.uvs.max() <= 1
    finer = relief_mesh(depth, IDENTITY, mask, 48, view_uvs=False)
    assert len(relief.vertices) < len(finer.vertices) < 2 * 64 * 64


@pytest.mark.parametrize("view", [[0.0] * 6, [0.1, math.radians(25), -0.05, 0.02, -0.01, 0.0]])
def test_relief_outline_is_the_masks_not_a_cell_inside_it(view):
    """Seen through the input view, the relief covers the photo's mask: keeping only faces with
    every corner on the object would leave the outline up to a grid cell (here 4 photo pixels)
    inside it (5-7 % of this disc's area; seen turned, the grid's cells are wider on one side)."""
    depth, mask = bump()
    sharp = torch.nn.functional.interpolate(mask[None, None], size=(256, 256), mode="nearest")[0, 0]
    relief = relief_mesh(depth, torch.tensor(view), sharp, 64, view_uvs=True)
    corners = torch.from_numpy(relief.uvs).reshape(-1, 2)
    screen = torch.cat([corners * 2 - 1, torch.ones(len(corners), 1)], dim=1)[None]
    covered = rasterize(screen, torch.arange(len(corners)).reshape(-1, 3), 256).mask[0]
    truth = sharp > 0.5  # the old rule alone: IoU 0.948 and 0.927
    assert float((covered & truth).sum() / (covered | truth).sum()) > 0.955
    assert 0.965 * int(truth.sum()) < int(covered.sum()) < 1.01 * int(truth.sum())


def test_extended_depth_continues_the_object_past_its_mask_and_only_there():
    """The rim's vertices are resampled from the map: past the mask they must find the object's
    depth (here 1), not the background's (5), for ``rings`` pixels, and the map is unchanged elsewhere."""
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    distance = ((rows - 16) ** 2 + (cols - 16) ** 2).sqrt()
    mask = distance < 8
    depth = torch.where(mask, 1.0 + 0.01 * cols, torch.full_like(cols, 5.0))
    extended = extend_depth(depth, mask, 3)
    assert torch.equal(extended[mask], depth[mask])
    ring = ~mask & (distance < 10)
    assert ((extended[ring] - 1.16).abs() < 0.1).all()
    assert torch.equal(extended[distance > 13], depth[distance > 13])


def test_relief_is_in_blender_frame_centred_unit_and_faces_the_front():
    depth, mask = bump()
    relief = relief_mesh(depth, IDENTITY, mask, 40, view_uvs=False)
    v = relief.vertices
    extent = v.max(axis=0) - v.min(axis=0)
    assert extent.max() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose((v.max(axis=0) + v.min(axis=0)) / 2, 0, atol=1e-5)
    # The dome's tip is nearest the camera, i.e. furthest towards the front (-Y).
    tip = v[np.argmin(v[:, 1])]
    assert abs(tip[0]) < 0.1 and abs(tip[2]) < 0.1
    # Faces wind counter-clockwise seen from the front: their normals point to -Y.
    a, b, c = (v[relief.faces[:, i]] for i in range(3))
    normals = np.cross(b - a, c - a)
    assert (normals[:, 1] < 0).mean() > 0.99
    # Image right is +X, image up is +Z: compare uv order with position order.
    corners = relief.uvs.reshape(-1, 2)
    positions = v[relief.faces.reshape(-1)]
    assert np.corrcoef(corners[:, 0], positions[:, 0])[0, 1] > 0.99
    assert np.corrcoef(corners[:, 1], positions[:, 2])[0, 1] > 0.99


VIEWS = [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.1, math.radians(25), -0.05, 0.02, -0.01, 0.0]]


def blender_camera_pixels(relief, camera: dict, size: int) -> np.ndarray:
    """(V, 2) (column, row) pixel positions of the relief's vertices through the Blender camera."""
    world = relief.vertices.astype(np.float64)
    matrix = np.array(camera["matrix_world"])
    local = (np.linalg.inv(matrix) @ np.c_[world, np.ones(len(world))].T).T[:, :3]
    half = math.tan(camera["angle"] / 2)
    x_ndc = local[:, 0] / -local[:, 2] / half
    y_ndc = local[:, 1] / -local[:, 2] / half
    return np.stack([(x_ndc + 1) / 2 * size - 0.5, (1 - y_ndc) / 2 * size - 0.5], axis=1)


METRES = ScaleRule("metres", 0.45)
"""A cat-sized relief: largest extent 0.45 m, origin at its bottom centre."""


def test_relief_in_metres_has_its_size_and_rests_on_the_ground():
    depth, mask = bump()
    unit = relief_mesh(depth, IDENTITY, mask, 40, view_uvs=False)
    v = relief_mesh(depth, IDENTITY, mask, 40, view_uvs=False, rule=METRES).vertices
    assert np.ptp(v, axis=0).max() == pytest.approx(0.45, abs=1e-6)
    assert v[:, 2].min() == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose((v.max(axis=0) + v.min(axis=0))[:2] / 2, 0, atol=1e-6)
    # The same shape: a similarity of the unit-box relief.
    expected = 0.45 * (unit.vertices - unit.vertices.mean(axis=0))
    np.testing.assert_allclose(v - v.mean(axis=0), expected, atol=1e-6)


@pytest.mark.parametrize("rule", [UNIT_BOX, METRES])
@pytest.mark.parametrize("view", VIEWS)
def test_blender_camera_sees_the_relief_where_the_input_view_did(view, rule):
    depth, _ = bump()
    view_t = torch.tensor([view])
    relief = relief_mesh(depth, view_t[0], torch.ones(SIZE, SIZE), SIZE, view_uvs=False, rule=rule)
    camera = blender_camera(view_t[0], relief, SIZE)
    # Where the input camera saw each canonical grid point (pixel units) that stays in the picture.
    points = depth_to_points(depth[None])
    seen = transform_points(points, view_t)[0]
    uv = (seen / seen[..., 2:]) @ intrinsics(SIZE, seen).T
    in_picture = ((uv[..., :2] > -0.5) & (uv[..., :2] < SIZE - 0.5)).all(dim=-1)
    got = blender_camera_pixels(relief, camera, SIZE)
    assert 0.5 * in_picture.sum() <= len(got) <= in_picture.sum()
    # Inside the rim every vertex is one of those grid points; the rim's slid onto the picture's edge.
    nearest = torch.cdist(torch.from_numpy(got), uv[..., :2][in_picture].double()).min(dim=1).values
    assert float(nearest.median()) < 1e-3
    # Each vertex, rim included, lands where the input view sees it.
    blender = torch.from_numpy(relief.vertices).double() / relief.scale + relief.centre
    camera_frame = blender @ CAM_TO_BLENDER.double()
    seen = transform_points(camera_frame[None], view_t.double())[0]
    expected = (seen / seen[..., 2:]) @ intrinsics(SIZE, seen).T
    np.testing.assert_allclose(got, expected[:, :2].numpy(), atol=1e-3)
    matrix = np.array(camera["matrix_world"])
    rotation = matrix[:3, :3]
    np.testing.assert_allclose(rotation.T @ rotation, np.eye(3), atol=1e-9)
    assert np.linalg.det(rotation) == pytest.approx(1.0)


@pytest.mark.parametrize("view", VIEWS)
def test_view_uvs_overlay_the_photo_through_the_blender_camera(view):
    """Photo textures: each vertex's UV is where the aligned camera sees it, at any photo resolution,
    and a mask at the photo's resolution cuts the relief like the same mask at the nets' size."""
    depth, mask = bump()
    view_t = torch.tensor(view)
    sharp = torch.nn.functional.interpolate(mask[None, None], size=(256, 256), mode="nearest")[0, 0]
    relief = relief_mesh(depth, view_t, sharp, 48, view_uvs=True)
    coarse = relief_mesh(depth, view_t, mask, 48, view_uvs=True)
    assert abs(len(relief.faces) - len(coarse.faces)) <= 0.05 * len(coarse.faces)
    camera = blender_camera(view_t, relief, SIZE)
    pixels = blender_camera_pixels(relief, camera, SIZE)
    uv_per_vertex = np.zeros((len(relief.vertices), 2))
    uv_per_vertex[relief.faces.reshape(-1)] = relief.uvs.reshape(-1, 2)
    expected = np.stack([uv_per_vertex[:, 0] * SIZE - 0.5, (1 - uv_per_vertex[:, 1]) * SIZE - 0.5], axis=1)
    np.testing.assert_allclose(pixels, expected, atol=1e-3)


@pytest.mark.parametrize("direction", [[0.5, -0.3, 1.0], [-0.6, 0.4, 1.0]])
def test_towards_light_lights_the_mesh_as_the_nets_shade_it(direction):
    """Lambert with the exported mesh's own normals and ``towards_light`` is the nets' diffuse term
    (``normals_from_depth`` . l) at the same pixels: the add-on's Sun lights the sides the nets lit."""
    depth, mask = bump()
    light = torch.tensor(direction) / torch.tensor(direction).norm()
    nets = diffuse_shading(normals_from_depth(depth[None]), light[None])[0, 0].numpy()
    relief = relief_mesh(depth, IDENTITY, mask, 64, view_uvs=False)
    v = relief.vertices.astype(np.float64)
    a, b, c = (v[relief.faces[:, i]] for i in range(3))
    normals = np.cross(b - a, c - a)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    mesh = np.clip(normals @ np.array(towards_light(light.tolist())), 0, None)
    centre = relief.uvs.mean(axis=1)  # canonical UVs: u = (col + 0.5) / W, v = 1 - (row + 0.5) / H
    cols = np.round(centre[:, 0] * SIZE - 0.5).astype(int)
    rows = np.round((1 - centre[:, 1]) * SIZE - 0.5).astype(int)
    sampled = nets[rows, cols]
    assert np.corrcoef(mesh, sampled)[0, 1] > 0.95
    assert np.abs(mesh - sampled).mean() < 0.03


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("normal", [[0.3, -0.2, -1.0], [-0.5, 0.4, -1.0]])
def test_relief_shading_is_the_lambert_term_of_the_mesh_blender_sees(view, normal):
    """A tilted plane inside a disc, seen turned: every texel, rim and off-mesh fill included, gets
    ambient + diffuse x cos of the plane's own normal (turned to the camera) and the Sun's
    direction, in Blender's frame, at a texture resolution other than the nets'."""
    f, c = focal_length(SIZE), (SIZE - 1) / 2
    rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    plane = torch.tensor(normal, dtype=torch.float64) / torch.tensor(normal).norm()
    rays = torch.stack([(cols - c) / f, (rows - c) / f, torch.ones_like(cols)], -1).double()
    depth = (-1.0 / (rays @ plane)).float()  # points p = depth * ray on the plane n . p = -1
    mask = (((rows - 30) ** 2 + (cols - 34) ** 2) < 22**2).float()
    relief = relief_mesh(depth, torch.tensor(view), mask, 48, view_uvs=True)
    camera = blender_camera(torch.tensor(view), relief, SIZE)
    towards = [0.6, -0.7, 0.4]
    towards = (np.array(towards) / np.linalg.norm(towards)).tolist()
    shading = relief_shading(relief, camera, 0.3, 0.6, towards, 200)
    mesh_normal = (CAM_TO_BLENDER.double() @ plane).numpy()
    eye = np.array(camera["matrix_world"])[:3, 3]
    if mesh_normal @ (eye - relief.vertices.mean(axis=0)) < 0:
        mesh_normal = -mesh_normal
    expected = 0.3 + 0.6 * max(0.0, float(mesh_normal @ np.array(towards)))
    assert shading.shape == (200, 200)
    np.testing.assert_allclose(shading.numpy(), expected, atol=1e-4)
    # Wound the other way, the faces look away from the camera: Blender turns them round, and so must this.
    turned = dataclasses.replace(relief, faces=relief.faces[:, ::-1].copy(), uvs=relief.uvs[:, ::-1].copy())
    shading = relief_shading(turned, camera, 0.3, 0.6, towards, 200)
    np.testing.assert_allclose(shading.numpy(), expected, atol=1e-4)
