"""Depth-map geometry and rendering round trips against an analytic sphere."""

from __future__ import annotations

import math

import pytest
import torch

from backend.methods.gan2shape import depth_render
from backend.methods.gan2shape.depthmap import (
    focal_length,
    intrinsics,
    inverse_transform_points,
    normals_from_depth,
    pixel_grid,
    scale_view,
    transform_points,
)
from backend.render.cameras import pivot_perspective_camera
from backend.render.primitives import grid_faces

SIZE = 64
CENTRE_DEPTH, RADIUS, PLANE = 1.0, 0.05, 1.1


def sphere_depth(
    view_size: int = SIZE, plane: float = PLANE
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Depth (1, S, S) of a sphere centred on the rotation pivot in front of a plane, its mask and
    the analytic points (S, S, 3) of the sphere along every pixel ray (NaN where the ray misses)."""
    k_inv = torch.linalg.inv(intrinsics(view_size, torch.zeros(())))
    pix = pixel_grid(view_size, view_size, torch.zeros(()))
    rays = torch.cat([pix, torch.ones(view_size, view_size, 1)], -1) @ k_inv.T
    centre = torch.tensor([0.0, 0.0, CENTRE_DEPTH])
    a = rays.square().sum(-1)
    b = (rays * centre).sum(-1)
    disc = b.square() - a * (centre.square().sum() - RADIUS**2)
    t = (b - disc.clamp(min=0).sqrt()) / a
    hit = disc > 0
    points = torch.where(hit[..., None], rays * t[..., None], torch.full_like(rays, float("nan")))
    depth = torch.where(hit, t, torch.full_like(t, plane)).clamp(max=plane)
    return depth[None], hit, points


def yaw_view(degrees: float) -> torch.Tensor:
    return torch.tensor([[0.0, math.radians(degrees), 0.0, 0.0, 0.0, 0.0]])


def test_identity_view_renders_the_depth_map_itself():
    depth, _, _ = sphere_depth()
    rendered = depth_render.warp_canon_depth(depth, torch.zeros(1, 6))
    torch.testing.assert_close(rendered, depth, atol=1e-5, rtol=0)
    grid = depth_render.canon_to_view_grid(rendered, torch.zeros(1, 6))
    torch.testing.assert_close(grid[0], pixel_grid(SIZE, SIZE, depth) / (SIZE - 1) * 2 - 1, atol=1e-5, rtol=0)


def test_rotating_about_the_sphere_centre_keeps_its_depth():
    """A sphere centred on the pivot maps onto itself: its front keeps the analytic depth."""
    depth, hit, points = sphere_depth()
    rendered = depth_render.warp_canon_depth(depth, yaw_view(25.0))
    centre_dist = (pixel_grid(SIZE, SIZE, depth) - (SIZE - 1) / 2).norm(dim=-1)
    rim_pixels = RADIUS / CENTRE_DEPTH * focal_length(SIZE)
    core = centre_dist < 0.5 * rim_pixels
    assert core.sum() > 50
    assert (rendered[0][core] - points[..., 2][core]).abs().max() < 2e-4
    assert (rendered[0][~hit] <= PLANE + 0.1).all()


def test_warped_mask_is_the_visible_part_of_the_rotated_hemisphere():
    """A hemisphere on a plane through its centre, turned by 20 deg about that centre: the object
    mask warped to the view must cover exactly the pixels whose ray meets the turned front half."""
    depth, hit, _ = sphere_depth(plane=CENTRE_DEPTH)
    view = yaw_view(20.0)
    rendered = depth_render.warp_canon_depth(depth, view)
    grid = depth_render.canon_to_view_grid(rendered, view)
    warped = depth_render.sample(hit[None, None].float(), grid, mode="nearest")[0, 0] > 0.5
    warped &= depth_render.background(rendered)[0] > 0  # uncovered pixels have no canonical source
    _, _, points = sphere_depth()
    centre = torch.tensor([0.0, 0.0, CENTRE_DEPTH])
    canonical = inverse_transform_points(points.reshape(1, -1, 3), view).reshape(SIZE, SIZE, 3)
    expected = (canonical[..., 2] <= CENTRE_DEPTH) & ~points[..., 2].isnan()
    assert expected.sum() > 300
    iou = (warped & expected).sum() / (warped | expected).sum()
    assert iou > 0.9
    # Every disagreement lies on the silhouette (within 2 px of both inside and outside).
    def near(m: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.max_pool2d(m[None].float(), 5, stride=1, padding=2)[0] > 0
    assert not ((warped ^ expected) & ~(near(expected) & near(~expected))).any()
    assert (points[expected] - centre).norm(dim=-1).sub(RADIUS).abs().max() < 1e-5


def test_lambertian_shading_matches_the_sphere_normals():
    depth, hit, points = sphere_depth()
    normal = normals_from_depth(depth)
    front = torch.tensor([[0.0, 0.0, 1.0]])
    shading = depth_render.diffuse_shading(normal, front)[0, 0]
    # Unsup3d's normals point away from the camera, so n . (0, 0, 1) is the cosine to the viewer.
    expected = (CENTRE_DEPTH - points[..., 2]) / RADIUS
    inner = torch.nn.functional.avg_pool2d(hit[None].float(), 3, stride=1, padding=1)[0] > 0.999
    assert (shading[inner] - expected[inner]).abs().max() < 0.03
    # Frontal light, ambient = diffuse = 0.5: the plane facing the camera shows the albedo itself.
    ambient, diffuse, direction = depth_render.light_terms(torch.tensor([[0.0, 0.0, 0.0, 0.0]]))
    albedo = torch.full((1, 3, SIZE, SIZE), 0.3)
    lit = depth_render.shade(albedo, depth_render.diffuse_shading(normal, direction), ambient, diffuse)[0, 0]
    plane = torch.nn.functional.avg_pool2d((~hit)[None].float(), 5, stride=1, padding=2)[0] > 0.999
    torch.testing.assert_close(lit[plane], torch.full_like(lit[plane], 0.3), atol=3e-3, rtol=0)
    assert (lit[inner] < 0.3 + 1e-5).all() and lit[inner].min() < 0.25


def test_translation_shifts_the_image_by_focal_times_offset():
    depth = torch.ones(1, SIZE, SIZE)
    shift = 0.004
    view = torch.tensor([[0.0, 0.0, 0.0, shift, 0.0, 0.0]])
    rendered = depth_render.warp_canon_depth(depth, view)
    grid = depth_render.canon_to_view_grid(rendered, view)
    pixels = (grid[0] + 1) / 2 * (SIZE - 1)
    expected_x = pixel_grid(SIZE, SIZE, depth)[..., 0] - focal_length(SIZE) * shift
    valid = depth_render.background(rendered)[0] > 0
    assert valid.float().mean() > 0.9
    torch.testing.assert_close(pixels[..., 0][valid], expected_x[valid], atol=1e-3, rtol=0)


def test_point_transforms_agree_with_the_team_camera_and_invert():
    torch.manual_seed(0)
    views = scale_view(torch.rand(4, 6) * 2 - 1)
    points = torch.rand(4, 10, 3) * 0.2 + torch.tensor([0.0, 0.0, 0.9])
    moved = transform_points(points, views)
    camera = pivot_perspective_camera(views, SIZE)
    torch.testing.assert_close(moved, camera.to_view(points), atol=1e-6, rtol=0)
    torch.testing.assert_close(inverse_transform_points(moved, views), points, atol=1e-6, rtol=0)


def test_depth_head_range_and_border_columns():
    raw = torch.randn(2, 1, SIZE, SIZE) * 5
    depth = depth_render.depth_head(raw, clamp_border=False)
    assert depth.min() >= 0.9 and depth.max() <= 1.1
    flat = depth_render.depth_head(torch.zeros(1, 1, SIZE, SIZE))
    border = 1.0 * (1 - depth_render.BORDER_WEIGHT) + depth_render.BORDER_WEIGHT * depth_render.BORDER_DEPTH
    torch.testing.assert_close(flat[0, :, :2], torch.full((SIZE, 2), border))
    torch.testing.assert_close(flat[0, :, 2:-2], torch.ones(SIZE, SIZE - 4))


@pytest.mark.parametrize("h, w", [(3, 4), (8, 8)])
def test_grid_faces_cover_every_quad_twice(h, w):
    faces = grid_faces(h, w, torch.device("cpu"))
    assert faces.shape == (2 * (h - 1) * (w - 1), 3)
    assert torch.unique(faces).numel() == h * w
