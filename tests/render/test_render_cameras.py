"""Camera conventions against hand-computed projections and the published formulas."""

from __future__ import annotations

import math

import torch

from backend.render import (
    OrthographicCamera,
    PerspectiveCamera,
    euler_rotation_xyz,
    focal_from_fov,
    pivot_perspective_camera,
    quaternion_matrix,
    rasterize,
    weak_perspective_camera,
)


def test_orthographic_projection_by_hand() -> None:
    camera = OrthographicCamera(torch.eye(3)[None], torch.tensor([0.5]), torch.tensor([[0.1, 0.2, 0.3]]))
    screen = camera.project(torch.tensor([[[1.0, 2.0, 3.0]]]))
    # view = 0.5 * (1, 2, 3) + (0.1, 0.2, 0.3) = (0.6, 1.2, 1.8); y flips (view y is down).
    torch.testing.assert_close(screen, torch.tensor([[[0.6, -1.2, 1.8]]]))


def test_perspective_projection_by_hand() -> None:
    fov = math.radians(60)
    camera = PerspectiveCamera(torch.eye(3)[None], torch.tensor([[0.0, 0.0, 1.0]]), focal_from_fov(fov))
    screen = camera.project(torch.tensor([[[0.5, 0.25, 1.0]]]))
    focal = 1 / math.tan(math.radians(30))  # 1.7320508
    expected = torch.tensor([[[focal * 0.5 / 2.0, -focal * 0.25 / 2.0, 2.0]]])
    torch.testing.assert_close(screen, expected)


def test_perspective_with_separate_vertical_focal_for_a_wide_image() -> None:
    """A 60 x 30 image with square pixels: focal_y = focal * W / H keeps a 45-degree ray at the
    same pixel distance from the centre horizontally and vertically."""
    camera = PerspectiveCamera(torch.eye(3)[None], torch.zeros(1, 3), focal=0.5, focal_y=1.0)
    screen = camera.project(torch.tensor([[[1.0, -1.0, 2.0]]]))
    torch.testing.assert_close(screen, torch.tensor([[[0.25, 0.5, 2.0]]]))  # 7.5 px right, 7.5 px up


def test_a_point_lands_on_its_pixel() -> None:
    """NDC centre of pixel (row 1, column 2) of a 4x6 (H x W) image is ((2*2+1-6)/6, (4-2-1)/4)."""
    centre = torch.tensor([-1 / 6, 1 / 4])
    tiny = torch.tensor([[-0.01, -0.01], [0.01, -0.01], [0.0, 0.01]])
    screen = torch.cat((centre + tiny, torch.ones(3, 1)), dim=1)[None]
    mask = rasterize(screen, torch.tensor([[0, 1, 2]]), (4, 6)).mask[0]
    assert mask.sum() == 1 and mask[1, 2]


def _qrot(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """MeshInversion's qrot, written from its formula: v + 2 (w (q x v) + q x (q x v))."""
    w, vec = q[..., :1], q[..., 1:].expand_as(v)
    uv = torch.linalg.cross(vec, v, dim=-1)
    return v + 2 * (w * uv + torch.linalg.cross(vec, uv, dim=-1))


def test_quaternion_matrix_is_meshinversion_qrot_even_unnormalised() -> None:
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(5, 4, generator=generator) * 1.7
    v = torch.randn(5, 11, 3, generator=generator)
    torch.testing.assert_close(
        v @ quaternion_matrix(q).transpose(1, 2), _qrot(q[:, None], v), atol=1e-5, rtol=1e-5
    )


def test_unit_quaternion_is_the_expected_rotation() -> None:
    half = math.radians(90) / 2
    about_y = torch.tensor([[math.cos(half), 0.0, math.sin(half), 0.0]])
    rotated = quaternion_matrix(about_y)[0] @ torch.tensor([1.0, 0.0, 0.0])
    torch.testing.assert_close(rotated, torch.tensor([0.0, 0.0, -1.0]), atol=1e-6, rtol=0)


def test_meshinversion_camera_matches_its_published_pipeline() -> None:
    """MI: vtx = qrot(q, s v) + t; vtx *= (1, -1, -1); x, y are NDC, larger z is nearer."""
    generator = torch.Generator().manual_seed(1)
    q = torch.randn(2, 4, generator=generator)
    s = torch.rand(2, generator=generator) + 0.5
    t = torch.randn(2, 3, generator=generator) * 0.1
    v = torch.randn(2, 7, 3, generator=generator)
    vtx = (_qrot(q[:, None], s[:, None, None] * v) + t[:, None]) * torch.tensor([1.0, -1.0, -1.0])
    screen = weak_perspective_camera(q, s, t).project(v)
    torch.testing.assert_close(screen[..., :2], vtx[..., :2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(screen[..., 2], -vtx[..., 2], atol=1e-5, rtol=1e-5)  # smaller depth = nearer
    with_2d_translation = weak_perspective_camera(q, s, t[:, :2]).project(v)
    torch.testing.assert_close(with_2d_translation[..., :2], screen[..., :2])


def test_euler_rotation_is_rz_ry_rx() -> None:
    quarter = math.pi / 2
    rx = euler_rotation_xyz(torch.tensor([[quarter, 0.0, 0.0]]))[0]
    ry = euler_rotation_xyz(torch.tensor([[0.0, quarter, 0.0]]))[0]
    rz = euler_rotation_xyz(torch.tensor([[0.0, 0.0, quarter]]))[0]
    e_x, e_y, e_z = torch.eye(3)
    torch.testing.assert_close(rx @ e_y, e_z, atol=1e-6, rtol=0)
    torch.testing.assert_close(ry @ e_z, e_x, atol=1e-6, rtol=0)
    torch.testing.assert_close(rz @ e_x, e_y, atol=1e-6, rtol=0)
    combined = euler_rotation_xyz(torch.tensor([[0.3, -0.2, 0.5]]))[0]
    parts = [euler_rotation_xyz(torch.tensor([a]))[0] for a in ([0.3, 0, 0], [0, -0.2, 0], [0, 0, 0.5])]
    torch.testing.assert_close(combined, parts[2] @ parts[1] @ parts[0])


def test_unsup3d_depth_grid_reprojects_onto_its_own_pixels() -> None:
    """Unsup3d unprojects pixel (u, v) at depth d as ((u - c) d / f, (v - c) d / f, d) with
    f = (S - 1) / 2 / tan(fov / 2), c = (S - 1) / 2; with a zero view it must land on pixel (v, u)."""
    size = 64
    f = (size - 1) / 2 / math.tan(math.radians(10) / 2)
    c = (size - 1) / 2
    v, u = torch.meshgrid(
        torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij"
    )
    depth = 1.0 + 0.05 * torch.sin(u / 7) * torch.cos(v / 5)
    points = torch.stack(((u - c) * depth / f, (v - c) * depth / f, depth), dim=-1).reshape(1, -1, 3)
    screen = pivot_perspective_camera(torch.zeros(1, 6), size).project(points)
    ndc = torch.stack(((2 * u + 1 - size) / size, (size - 2 * v - 1) / size), dim=-1).reshape(1, -1, 2)
    torch.testing.assert_close(screen[..., :2], ndc, atol=2e-5, rtol=0)
    torch.testing.assert_close(screen[..., 2], depth.reshape(1, -1))


def test_unsup3d_view_rotates_about_the_pivot_then_translates() -> None:
    view = torch.tensor([[0.1, -0.4, 0.2, 0.05, -0.03, 0.02]])
    camera = pivot_perspective_camera(view, 64, pivot_depth=1.0)
    points = torch.tensor([[[0.0, 0.0, 1.0], [0.1, 0.2, 1.1]]])
    rotation = euler_rotation_xyz(view[:, :3])[0]
    pivot = torch.tensor([0.0, 0.0, 1.0])
    expected = (points[0] - pivot) @ rotation.T + pivot + view[0, 3:]
    torch.testing.assert_close(camera.to_view(points)[0], expected)
    torch.testing.assert_close(camera.to_view(points)[0, 0], pivot + view[0, 3:])  # the pivot only moves by t
