"""Ground truth of procedural cars in MeshInversion's template parametrisation.

For each car: the displacement map (3, 32, 32) (normal offset from the unit sphere in channel 0,
tangent and bitangent offsets 0), and the UV texture (3, T, T) painted per texel from the surface
point it maps to. Both are computed on their x >= 0 half and mirrored, so they are exactly symmetric.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from workbench.data.car_paint import paint_car
from workbench.data.car_params import car_params
from workbench.data.car_sdf import Params, car_centre, car_normals
from workbench.data.star_surface import star_radius
from workbench.data.uv_grid import half_columns, mirror_half, texel_directions

DISPLACEMENT_SIZE = 32
TEXTURE_SIZE = 256
RADIUS_GRID = 64
"""The radius used for painting is cast on a 64 x 64 grid and interpolated to the texels: the
surface is smooth, so this costs 16x fewer casts at 256 px for a sub-texel shift of the features."""


@dataclass
class CarMaps:
    """UV-space ground truth of a batch of cars (all tensors on one device, float32)."""

    params: Params
    displacement: torch.Tensor  # (B, 3, 32, 32): channel 0 = radius - 1 along the sphere normal
    texture: torch.Tensor  # (B, 3, T, T) in [0, 1], sRGB, row 0 = v 1 (top)


def displacement_maps(p: Params, size: int = DISPLACEMENT_SIZE) -> torch.Tensor:
    """(B, 3, size, size) displacement maps: the star radius minus 1 in channel 0."""
    device = p["half_length"].device
    dirs = texel_directions(size, size, device)[:, half_columns(size)]
    r = star_radius(p, dirs.reshape(-1, 3)).reshape(-1, size, size // 2)
    normal = mirror_half(r - 1)
    return torch.stack([normal, torch.zeros_like(normal), torch.zeros_like(normal)], 1)


def _interpolate_radius(p: Params, size: int) -> torch.Tensor:
    """(B, size, size/2) radius at the texel directions of the x >= 0 half, interpolated from a
    RADIUS_GRID cast (rows: align-corners in v; columns: pixel centres, wrapped in u)."""
    device = p["half_length"].device
    coarse = star_radius(p, texel_directions(RADIUS_GRID, RADIUS_GRID, device).reshape(-1, 3))
    coarse = coarse.reshape(-1, 1, RADIUS_GRID, RADIUS_GRID)
    padded = torch.cat([coarse[..., -1:], coarse, coarse[..., :1]], -1)
    rows = torch.arange(size, device=device, dtype=torch.float32) / (size - 1) * 2 - 1
    u = (torch.arange(size, device=device, dtype=torch.float32)[half_columns(size)] + 0.5) / size
    cols = (u * RADIUS_GRID - 0.5 + 1) / (RADIUS_GRID + 1) * 2 - 1  # column index in the padded map
    grid = torch.stack(torch.meshgrid(cols, rows, indexing="xy"), -1)  # (size, size/2, 2) as (x, y)
    grid = grid.expand(coarse.shape[0], -1, -1, -1)
    return F.grid_sample(padded, grid, mode="bilinear", align_corners=True)[:, 0]


def texture_maps(p: Params, size: int = TEXTURE_SIZE) -> torch.Tensor:
    """(B, 3, size, size) textures in [0, 1] painted from the surface points of the texels."""
    device = p["half_length"].device
    dirs = texel_directions(size, size, device)[:, half_columns(size)].reshape(-1, 3)
    r = _interpolate_radius(p, size).reshape(-1, dirs.shape[0])
    q = car_centre(p)[:, None, :] + r[..., None] * dirs[None]
    colours = paint_car(q, car_normals(q, p), p)  # (B, N, 3)
    half = colours.reshape(-1, size, size // 2, 3).permute(0, 3, 1, 2)
    return mirror_half(half).clamp(0, 1)


def car_maps(
    seeds: list[int], texture_size: int = TEXTURE_SIZE, device: torch.device | str = "cpu"
) -> CarMaps:
    """Displacement and texture ground truth of the cars ``seeds``."""
    p = car_params(seeds, device)
    return CarMaps(params=p, displacement=displacement_maps(p), texture=texture_maps(p, texture_size))
