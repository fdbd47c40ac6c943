"""Directions on the unit sphere for the texels of MeshInversion's UV maps.

The template's UV layout (research notes §2.1): v = 1 - theta/pi with theta the polar angle from +y,
u = (0.25 + atan2(x, z) / 2pi) mod 1. Its displacement and texture samplers (§2.3, §2.4) read row
i at v = 1 - i/(H-1) (align-corners along v) and column j at u = (j + 0.5)/W (pixel centres along u),
so texel (i, j) holds the value at that direction. Columns W/4 .. 3W/4 - 1 are the x >= 0 half, which
is what the symmetric generator produces.
"""

from __future__ import annotations

import torch

from backend.methods.meshinversion.template import map_texel_uv, uv_to_sphere


def texel_directions(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(height, width, 3) unit directions (x, y, z) of the texel centres of a full UV map.

    Uses the MeshInversion template's own inverse mapping, so ground truth and model agree exactly."""
    return uv_to_sphere(map_texel_uv(height, width)).to(device)


def half_columns(width: int) -> slice:
    """The columns of the x >= 0 half of a symmetric UV map of ``width`` columns."""
    return slice(width // 4, 3 * width // 4)


def mirror_half(half: torch.Tensor) -> torch.Tensor:
    """Full symmetric map (..., W) from its x >= 0 half (..., W/2), as ConvMesh's ``symmetrize_texture``.

    Column j of the full map mirrors column (W/2 - 1 - j) mod W, which is u -> 0.5 - u (x -> -x).
    """
    n = half.shape[-1]
    flipped = half.flip(-1)
    return torch.cat([flipped[..., n // 2:], half, flipped[..., : n // 2]], -1)
