"""Camera geometry of GAN2Shape's depth-map world (Unsup3d conventions).

The camera sits at the origin looking along +z with a pinhole of ``fov`` degrees across the
image (10 deg: nearly orthographic, so a canonical depth map is a relief seen from the front).
Camera coordinates: x follows image columns (right), y follows image rows (down), z is depth.
A view is 6 numbers (rx, ry, rz in radians, tx, ty, tz); points rotate by ``Rz @ Ry @ Rx``
about (0, 0, ``ROT_CENTER_DEPTH``), then translate. All functions are batched and take their
device and dtype from their inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from backend.render.cameras import euler_rotation_xyz

FOV_DEG = 10.0
ROT_CENTER_DEPTH = 1.0
MIN_DEPTH, MAX_DEPTH = 0.9, 1.1
DEPTH_MARGIN = (MAX_DEPTH - MIN_DEPTH) / 2
"""Rendered depth is clamped to [MIN - margin, MAX + margin]; MAX + margin marks background."""
ROT_RANGE_DEG, XY_RANGE, Z_RANGE = 60.0, 0.1, 0.0
"""Network view outputs in (-1, 1) scale to these ranges (all official configs)."""
EPS = 1e-7


def focal_length(size: int, fov_deg: float = FOV_DEG) -> float:
    """Focal length in pixels, Unsup3d's choice: half of (size - 1) spans fov / 2."""
    return (size - 1) / 2 / math.tan(math.radians(fov_deg) / 2)


def intrinsics(size: int, like: torch.Tensor, fov_deg: float = FOV_DEG) -> torch.Tensor:
    """3x3 pinhole matrix for a square image; principal point at the centre of pixel indices."""
    f, c = focal_length(size, fov_deg), (size - 1) / 2
    return torch.tensor([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]], dtype=like.dtype, device=like.device)


def pixel_grid(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """(H, W, 2) integer pixel coordinates (x = column, y = row) as floats."""
    rows = torch.arange(h, dtype=like.dtype, device=like.device)
    cols = torch.arange(w, dtype=like.dtype, device=like.device)
    yy, xx = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


def depth_to_points(depth: torch.Tensor, fov_deg: float = FOV_DEG) -> torch.Tensor:
    """Back-project a depth map (B, H, W) to camera-space points (B, H, W, 3) at pixel indices."""
    _, h, w = depth.shape
    k_inv = torch.linalg.inv(intrinsics(w, depth, fov_deg))
    uv1 = torch.cat([pixel_grid(h, w, depth), depth.new_ones(h, w, 1)], dim=-1)
    return (uv1 @ k_inv.T) * depth.unsqueeze(-1)


def points_to_grid(points: torch.Tensor, fov_deg: float = FOV_DEG) -> torch.Tensor:
    """Project points (B, H, W, 3) to ``grid_sample`` coordinates in [-1, 1] (align_corners=True)."""
    w = points.shape[2]
    uv = (points / points[..., 2:].clamp(min=EPS)) @ intrinsics(w, points, fov_deg).T
    return uv[..., :2] / (w - 1) * 2 - 1


def scale_view(raw: torch.Tensor) -> torch.Tensor:
    """Network view output (B, 6) in about (-1, 1) -> (rx, ry, rz radians, tx, ty, tz)."""
    rot = raw[:, :3] * math.radians(ROT_RANGE_DEG)
    return torch.cat([rot, raw[:, 3:5] * XY_RANGE, raw[:, 5:] * Z_RANGE], dim=1)


def transform_points(points: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
    """Canonical -> view: rotate about the rotation centre, then translate. points (B, ..., 3)."""
    b = points.shape[0]
    flat = points.reshape(b, -1, 3)
    centre = flat.new_tensor([0.0, 0.0, ROT_CENTER_DEPTH])
    rot = euler_rotation_xyz(view[:, :3])
    moved = (flat - centre) @ rot.transpose(1, 2) + centre + view[:, None, 3:6]
    return moved.reshape(points.shape)


def inverse_transform_points(points: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
    """View -> canonical: undo the translation, then the rotation about the rotation centre."""
    b = points.shape[0]
    flat = points.reshape(b, -1, 3)
    centre = flat.new_tensor([0.0, 0.0, ROT_CENTER_DEPTH])
    rot = euler_rotation_xyz(view[:, :3])
    moved = (flat - view[:, None, 3:6] - centre) @ rot + centre
    return moved.reshape(points.shape)


def normals_from_depth(depth: torch.Tensor, fov_deg: float = FOV_DEG) -> torch.Tensor:
    """Unit normals (B, H, W, 3) by central differences of the 3D grid; the 1-px border is (0, 0, 1).

    Unsup3d's sign: d/dx x d/dy (y down) gives +z for a surface facing the camera, and light
    directions (lx, ly, 1) are defined against that sign, so n . l > 0 means lit.
    """
    points = depth_to_points(depth, fov_deg)
    tu = points[:, 1:-1, 2:] - points[:, 1:-1, :-2]
    tv = points[:, 2:, 1:-1] - points[:, :-2, 1:-1]
    inner = torch.linalg.cross(tu, tv, dim=-1)
    facing = depth.new_tensor([0.0, 0.0, 1.0]).expand(*depth.shape, 3).clone()
    normal = torch.cat([facing[:, 1:-1, :1], inner, facing[:, 1:-1, -1:]], dim=2)
    normal = torch.cat([facing[:, :1], normal, facing[:, -1:]], dim=1)
    return normal / (normal.square().sum(-1, keepdim=True).sqrt() + EPS)


def smooth_depth(depth: torch.Tensor, mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur (std ``sigma`` pixels) of depth maps (B, H, W) within the boolean ``mask``.

    A normalised convolution: only object pixels feed the average, so the rim is not pulled
    towards the background's depth, and pixels outside the mask keep their value. Why: short
    CPU schedules leave pixel-scale ripples in the depth (texture edges the photometric loss
    half-explains as shading) that tilt normals by several degrees; they are noise, not shape.
    """
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=depth.dtype, device=depth.device)
    kernel = torch.exp(-offsets.square() / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    weight = mask.to(depth.dtype)[:, None]

    def blur(maps: torch.Tensor) -> torch.Tensor:
        maps = F.conv2d(F.pad(maps, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
        return F.conv2d(F.pad(maps, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))

    total, coverage = blur(depth[:, None] * weight), blur(weight)
    smoothed = total / coverage.clamp(min=1e-6)
    return torch.where(weight > 0, smoothed, depth[:, None])[:, 0]


def extend_depth(depth: torch.Tensor, mask: torch.Tensor, rings: int) -> torch.Tensor:
    """Depth map (H, W) with the object's depth carried ``rings`` pixels past the boolean ``mask``.

    Each ring takes the mean of its already-known 3x3 neighbours; further out the map is unchanged.
    Why: the relief's vertices are resampled bilinearly from this map, so a vertex on the rim mixes
    the object's depth with the background's and, seen through a tilted view, lands off the rim
    (ragged teeth along the sills); past the outline the rim should continue the object.
    """
    kernel = depth.new_ones(1, 1, 3, 3)
    known = mask.to(depth.dtype)[None, None]
    value = depth[None, None] * known
    for _ in range(rings):
        total = F.conv2d(value, kernel, padding=1)
        count = F.conv2d(known, kernel, padding=1)
        grow = (known == 0) & (count > 0)
        value = torch.where(grow, total / count.clamp(min=1), value)
        known = torch.where(grow, torch.ones_like(known), known)
    return torch.where(known > 0, value, depth[None, None])[0, 0]
