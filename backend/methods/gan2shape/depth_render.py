"""Depth-map rendering for GAN2Shape on the team rasteriser: depth head, lighting, view warps.

A canonical depth map is meshed as a pixel grid, moved by a view and rasterised with the
perspective camera (fov 10 deg) to get its depth in that view; every image is then produced by
the *canonical-view warp*: each view pixel is lifted with the rendered depth, moved back to the
canonical frame and bilinearly samples the canonical texture (Unsup3d's ``grid_sample`` path,
``align_corners=True``). Rendered depth is clamped to [0.8, 1.2]; 1.2 marks background.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from backend.methods.gan2shape.depthmap import (
    DEPTH_MARGIN,
    FOV_DEG,
    MAX_DEPTH,
    MIN_DEPTH,
    ROT_CENTER_DEPTH,
    depth_to_points,
    inverse_transform_points,
    points_to_grid,
    transform_points,
)
from backend.render.cameras import pivot_perspective_camera
from backend.render.primitives import grid_faces
from backend.render.rasterize import rasterize

BORDER_DEPTH = 0.7 * MAX_DEPTH + 0.3 * MIN_DEPTH
BORDER_WEIGHT = 1.02
"""GAN2Shape pins the 2 leftmost/rightmost columns towards BORDER_DEPTH with this weight (the
official value; ``d * (1 - w) + w * border``), which keeps image-edge background from folding."""
BACKGROUND_DEPTH = MAX_DEPTH + DEPTH_MARGIN


def depth_head(raw: torch.Tensor, clamp_border: bool = True) -> torch.Tensor:
    """Depth network output (B, 1, H, W) -> canonical depth (B, H, W) in [0.9, 1.1].

    Subtracting the mean before tanh fixes the depth's overall offset (it is unobservable from
    one image), so the network only models relative shape.
    """
    centred = raw[:, 0] - raw.mean(dim=(1, 2, 3))[:, None, None]
    depth = MIN_DEPTH + (centred.tanh() + 1) / 2 * (MAX_DEPTH - MIN_DEPTH)
    if not clamp_border:
        return depth
    w = depth.shape[-1]
    weight = F.pad(depth.new_zeros(1, 1, w - 4), (2, 2), value=BORDER_WEIGHT)[0]
    return depth * (1 - weight) + weight * BORDER_DEPTH


def light_terms(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Light vector (B, 4) -> ambient (B,), diffuse strength (B,), unit direction (B, 3)."""
    ambient = raw[:, 0] / 2 + 0.5
    diffuse = raw[:, 1] / 2 + 0.5
    direction = torch.cat([raw[:, 2:4], raw.new_ones(raw.shape[0], 1)], dim=1)
    return ambient, diffuse, direction / direction.norm(dim=1, keepdim=True)


def diffuse_shading(normal: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Lambert term max(0, n . l), (B, 1, H, W) from normals (B, H, W, 3) and directions (B, 3)."""
    return (normal * direction[:, None, None, :]).sum(-1).clamp(min=0)[:, None]


def shade(
    albedo: torch.Tensor, diffuse_term: torch.Tensor, ambient: torch.Tensor, diffuse: torch.Tensor
) -> torch.Tensor:
    """Albedo in [-1, 1] (B, 3, H, W) lit by ambient + diffuse * Lambert -> image in about [-1, 1]."""
    shading = ambient.view(-1, 1, 1, 1) + diffuse.view(-1, 1, 1, 1) * diffuse_term
    return (albedo / 2 + 0.5) * shading * 2 - 1


def warp_canon_depth(depth: torch.Tensor, view: torch.Tensor, fov_deg: float = FOV_DEG) -> torch.Tensor:
    """Depth (B, H, W) of the canonical relief seen from ``view`` (B, 6), clamped to [0.8, 1.2].

    Differentiable in the depth values and the view through the rasteriser's barycentrics.
    Both sides of the grid mesh are drawn (a tilted relief may show its back).
    """
    b, h, w = depth.shape
    points = depth_to_points(depth, fov_deg).reshape(b, -1, 3)
    camera = pivot_perspective_camera(view, w, fov_deg, ROT_CENTER_DEPTH)
    fragments = rasterize(camera.project(points), grid_faces(h, w, depth.device), (h, w), perspective=True)
    rendered = fragments.to_image(fragments.depth_values, fill=BACKGROUND_DEPTH)
    return rendered.clamp(MIN_DEPTH - DEPTH_MARGIN, BACKGROUND_DEPTH)


def background(recon_depth: torch.Tensor) -> torch.Tensor:
    """(B, H, W) float 1 where the relief covers the view pixel (rendered depth below the clamp)."""
    return (recon_depth < BACKGROUND_DEPTH).float()


def canon_to_view_grid(
    recon_depth: torch.Tensor, view: torch.Tensor, fov_deg: float = FOV_DEG
) -> torch.Tensor:
    """For every view pixel, where to sample the canonical image: (B, H, W, 2) grid_sample coords."""
    points = depth_to_points(recon_depth, fov_deg)
    return points_to_grid(inverse_transform_points(points, view), fov_deg)


def view_to_canon_grid(
    canon_depth: torch.Tensor, view: torch.Tensor, fov_deg: float = FOV_DEG
) -> torch.Tensor:
    """For every canonical pixel, where it lands in the view (to pull input-view maps into canon)."""
    points = depth_to_points(canon_depth, fov_deg)
    return points_to_grid(transform_points(points, view), fov_deg)


def sample(image: torch.Tensor, grid: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """``grid_sample`` with Unsup3d's conventions (align_corners=True, zeros outside)."""
    return F.grid_sample(image, grid, mode=mode, padding_mode="zeros", align_corners=True)


def render_view(
    texture: torch.Tensor, canon_depth: torch.Tensor, view: torch.Tensor, fov_deg: float = FOV_DEG
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Canonical texture (B, C, H, W) + depth seen from ``view``: (image, recon_depth, grid)."""
    recon_depth = warp_canon_depth(canon_depth, view, fov_deg)
    grid = canon_to_view_grid(recon_depth, view, fov_deg)
    return sample(texture, grid), recon_depth, grid


def yaw_pitch_views(yaws_deg: list[float], pitches_deg: list[float], like: torch.Tensor) -> torch.Tensor:
    """(N, 6) views turning the object about the vertical axis, then tilting it (for previews)."""
    rows = [[0.0, math.radians(y), 0.0, 0.0, 0.0, 0.0] for y in yaws_deg]
    rows += [[math.radians(p), 0.0, 0.0, 0.0, 0.0, 0.0] for p in pitches_deg]
    return torch.tensor(rows, dtype=like.dtype, device=like.device)
