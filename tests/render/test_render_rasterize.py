"""The rasteriser against a brute-force reference, analytic areas and hand-made scenes."""

from __future__ import annotations

import math

import pytest
import torch

from backend.render import (
    OrthographicCamera,
    PerspectiveCamera,
    interpolate_corner_attributes,
    interpolate_vertex_attributes,
    rasterize,
    sample_texture,
)
from backend.render.primitives import grid_faces, uv_sphere

from .helpers import brute_force_rasterize, random_rotation, random_triangles


@pytest.mark.parametrize("perspective", [False, True])
@pytest.mark.parametrize("cull", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_on_random_triangles(perspective: bool, cull: bool, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    screen, faces = random_triangles(generator, batch=2, num_faces=40, perspective=perspective)
    height, width = 27, 33  # non-square, odd sizes
    fragments = rasterize(screen, faces, (height, width), perspective=perspective, cull_backfaces=cull)
    expected_faces, expected_depth = brute_force_rasterize(screen, faces, height, width, perspective, cull)
    assert fragments.pix_to_face.shape == (2, height, width)
    assert torch.equal(fragments.pix_to_face, expected_faces)
    assert fragments.mask.sum() > 0.2 * 2 * height * width
    torch.testing.assert_close(fragments.depth.double(), expected_depth, atol=1e-5, rtol=1e-5)


def test_matches_brute_force_on_a_rotated_sphere() -> None:
    generator = torch.Generator().manual_seed(3)
    vertices, faces, _ = uv_sphere(16, 9)
    rotation = random_rotation(generator, batch=3)
    camera = OrthographicCamera(rotation, torch.tensor([0.7, 0.9, 1.3]), torch.tensor([[0.2, -0.1, 0.0]] * 3))
    screen = camera.project(vertices.expand(3, -1, -1))
    fragments = rasterize(screen, faces, 40)
    expected, _ = brute_force_rasterize(screen, faces, 40, 40, perspective=False, cull=False)
    assert torch.equal(fragments.pix_to_face, expected)
    culled = rasterize(screen, faces, 40, cull_backfaces=True)
    assert torch.equal(culled.pix_to_face, fragments.pix_to_face)  # closed, outward-wound mesh


def test_barycentrics_reproduce_the_pixel_centre() -> None:
    generator = torch.Generator().manual_seed(4)
    screen, faces = random_triangles(generator, batch=1, num_faces=20, perspective=False)
    fragments = rasterize(screen, faces, 32)
    corners = screen[0, faces[fragments.faces], :2]
    position = (fragments.bary[:, :, None] * corners).sum(dim=1)
    rows, cols = fragments.pixels // 32, fragments.pixels % 32
    centre = torch.stack(((2 * cols + 1 - 32) / 32, (32 - 2 * rows - 1) / 32), dim=1).float()
    torch.testing.assert_close(position, centre, atol=2e-5, rtol=0)
    torch.testing.assert_close(fragments.bary.sum(dim=1), torch.ones(len(fragments.pixels)))


def _polygon_mesh(corners: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A fan over a convex polygon (N, 2) in NDC, counter-clockwise, at depth 1."""
    count = corners.shape[0]
    points = torch.cat((torch.zeros(1, 2), corners), dim=0)
    vertices = torch.cat((points, torch.ones(count + 1, 1)), dim=1)[None]
    index = torch.arange(count)
    faces = torch.stack((torch.zeros(count, dtype=torch.long), 1 + index, 1 + (index + 1) % count), dim=1)
    return vertices, faces


@pytest.mark.parametrize("size", [128, 256])
def test_disc_area_matches_analytic(size: int) -> None:
    radius = 0.7
    angle = torch.linspace(0, 2 * math.pi, 721)[:-1] + 0.1
    vertices, faces = _polygon_mesh(radius * torch.stack((angle.cos(), angle.sin()), dim=1))
    vertices[..., 0] += 0.013  # off the pixel grid's symmetry
    covered = rasterize(vertices, faces, size).mask.sum().item()
    analytic = math.pi * (radius * size / 2) ** 2
    assert abs(covered - analytic) / analytic < 0.005


@pytest.mark.parametrize("size", [128, 256])
def test_rotated_square_area_matches_analytic(size: int) -> None:
    half = 0.55
    angle = torch.tensor([0.0, 0.5, 1.0, 1.5]) * math.pi + 0.4
    vertices, faces = _polygon_mesh(half * math.sqrt(2) * torch.stack((angle.cos(), angle.sin()), dim=1))
    covered = rasterize(vertices, faces, size).mask.sum().item()
    analytic = (2 * half * size / 2) ** 2
    assert abs(covered - analytic) / analytic < 0.005


def test_backface_culling_drops_clockwise_faces() -> None:
    screen = torch.tensor([[[-0.5, -0.5, 1.0], [0.5, -0.5, 1.0], [0.0, 0.5, 1.0]]])
    counter_clockwise = torch.tensor([[0, 1, 2]])
    clockwise = torch.tensor([[0, 2, 1]])
    assert rasterize(screen, counter_clockwise, 16, cull_backfaces=True).mask.any()
    assert not rasterize(screen, clockwise, 16, cull_backfaces=True).mask.any()
    assert rasterize(screen, clockwise, 16).mask.any()


def test_nearest_face_wins_and_nothing_visible_is_fine() -> None:
    quad = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]) * 0.9
    big_far = torch.cat((quad, torch.full((4, 1), 0.2)), dim=1)
    small_near = torch.cat((quad * 0.5, torch.full((4, 1), 0.1)), dim=1)
    screen = torch.cat((big_far, small_near))[None]
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    fragments = rasterize(screen, faces, 20)
    assert set(fragments.pix_to_face[0, 10, 8:12].tolist()) <= {2, 3}
    assert set(fragments.pix_to_face[0, 2, 2:18].tolist()) <= {0, 1}
    off_screen = rasterize(screen + torch.tensor([5.0, 0.0, 0.0]), faces, 20)
    assert not off_screen.mask.any() and off_screen.bary.shape == (0, 3)


def test_perspective_correct_interpolation_hits_the_true_surface_point() -> None:
    """A slanted quad: interpolating view positions must give the point on the pixel's ray."""
    view = torch.tensor([[-1.0, -1.0, 2.0], [1.0, -1.0, 6.0], [1.0, 1.0, 6.0], [-1.0, 1.0, 2.0]])[None]
    faces = torch.tensor([[0, 2, 1], [0, 3, 2]])  # counter-clockwise on screen (y flips)
    camera = PerspectiveCamera(torch.eye(3)[None], torch.zeros(1, 3), focal=1.5)
    screen = camera.project(view)
    fragments = rasterize(screen, faces, 24, perspective=True)
    points = interpolate_vertex_attributes(fragments, faces, view)[fragments.mask]
    assert fragments.mask.sum() > 100
    rows, cols = fragments.pixels // 24, fragments.pixels % 24
    ndc = torch.stack(((2 * cols + 1 - 24) / 24, (24 - 2 * rows - 1) / 24), dim=1).float()
    reprojected = torch.stack((1.5 * points[:, 0] / points[:, 2], -1.5 * points[:, 1] / points[:, 2]), 1)
    torch.testing.assert_close(reprojected, ndc, atol=1e-5, rtol=0)
    torch.testing.assert_close(fragments.depth[fragments.mask], points[:, 2])


def test_texture_convention_reproduces_the_image_on_a_full_screen_quad() -> None:
    """uv (0,0) bottom-left, (1,1) top-right on an NDC-filling quad, texture at image size:
    every pixel centre is a texel centre, so the render equals the texture exactly."""
    size = 16
    screen = torch.tensor([[[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, 1.0], [-1.0, 1.0, 1.0]]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    corner_uv = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    uvs = corner_uv[faces]  # (F, 3, 2) per corner
    texture = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(5))
    fragments = rasterize(screen, faces, size)
    assert fragments.mask.all()
    rgb = sample_texture(texture, interpolate_corner_attributes(fragments, uvs))
    torch.testing.assert_close(rgb[0], texture[0].permute(1, 2, 0), atol=1e-5, rtol=0)


def test_batch_equals_separate_items() -> None:
    generator = torch.Generator().manual_seed(6)
    vertices, faces, _ = uv_sphere(24, 12)
    camera = OrthographicCamera(
        random_rotation(generator, 4),
        torch.rand(4, generator=generator) + 0.3,
        torch.rand(4, 3, generator=generator) * 0.4 - 0.2,
    )
    screen = camera.project(vertices.expand(4, -1, -1))
    together = rasterize(screen, faces, 48)
    for item in range(4):
        alone = rasterize(screen[item : item + 1], faces, 48)
        assert torch.equal(together.pix_to_face[item], alone.pix_to_face[0])
        torch.testing.assert_close(together.bary_coords[item], alone.bary_coords[0])


def test_depth_grid_mesh_faces_the_camera() -> None:
    """GAN2Shape's triangulation of a depth map, unprojected with rows going down, is front-facing."""
    faces = grid_faces(8, 8)
    rows, cols = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    view = torch.stack((cols / 4 - 0.875, rows / 4 - 0.875, torch.full_like(rows, 2.0)), -1).reshape(1, -1, 3)
    camera = PerspectiveCamera(torch.eye(3)[None], torch.zeros(1, 3), focal=1.5)
    screen = camera.project(view)
    culled = rasterize(screen, faces, 32, perspective=True, cull_backfaces=True)
    unculled = rasterize(screen, faces, 32, perspective=True)
    assert unculled.mask.sum() > 400
    assert torch.equal(culled.pix_to_face, unculled.pix_to_face)
    assert faces.shape == (2 * 7 * 7, 3)


@pytest.mark.parametrize("channels", [2, 7])
def test_wide_and_narrow_attributes_interpolate_alike(channels: int) -> None:
    """Per-vertex and per-corner paths (1-D gathers for few channels, row gathers for many) agree
    with a direct barycentric sum."""
    generator = torch.Generator().manual_seed(9)
    vertices, faces, _ = uv_sphere(12, 6)
    camera = OrthographicCamera(random_rotation(generator, 2), torch.tensor([0.6, 0.8]), torch.zeros(2, 3))
    fragments = rasterize(camera.project(vertices.expand(2, -1, -1)), faces, 20)
    per_vertex = torch.rand(2, vertices.shape[0], channels, generator=generator)
    per_corner = torch.rand(faces.shape[0], 3, channels, generator=generator)
    corner_vertices = faces[fragments.faces]  # (P, 3)
    expected_vertex = (
        fragments.bary[..., None] * per_vertex[fragments.batch_index[:, None], corner_vertices]
    ).sum(1)
    expected_corner = (fragments.bary[..., None] * per_corner[fragments.faces]).sum(1)
    vertex_image = interpolate_vertex_attributes(fragments, faces, per_vertex)
    corner_image = interpolate_corner_attributes(fragments, per_corner)
    torch.testing.assert_close(vertex_image[fragments.mask], expected_vertex)
    torch.testing.assert_close(corner_image[fragments.mask], expected_corner)
    assert (vertex_image[~fragments.mask] == 0).all()
