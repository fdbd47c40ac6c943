"""Attributes over the rasterised pixels: per-vertex, per-face-corner, and UV textures.

Per-corner attributes exist so that UV seams work: a vertex on a seam has a different UV in
each face that uses it, which per-vertex interpolation cannot express.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.render.rasterize import Fragments

FEW_CHANNELS = 4
"""Up to this many channels, attributes are gathered channel by channel as 1-D tensors (several
times faster on CPU than gathering (P, C) rows); wider ones (features) are gathered as rows."""


def blend_vertex_attributes(fragments: Fragments, faces: Tensor, attributes: Tensor) -> Tensor:
    """(P, C) per-vertex ``attributes`` ((B, V, C) or (V, C)) interpolated at the covered pixels."""
    shared = attributes.dim() == 2
    channels = attributes.shape[-1]
    first_vertex = 0 if shared else fragments.batch_index * attributes.shape[1]
    corner_ids = [corner.index_select(0, fragments.faces) + first_vertex for corner in faces.long().t()]
    table = attributes.reshape(-1, channels)
    if channels > FEW_CHANNELS:
        return _blend_rows(fragments, [table.index_select(0, ids) for ids in corner_ids])
    columns = table.t().contiguous()
    return _blend(fragments, [[column.index_select(0, ids) for ids in corner_ids] for column in columns])


def blend_corner_attributes(fragments: Fragments, attributes: Tensor) -> Tensor:
    """(P, C) per-face-corner ``attributes`` ((B, F, 3, C) or (F, 3, C)) interpolated at the
    covered pixels."""
    channels = attributes.shape[-1]
    if attributes.dim() == 3:
        rows = fragments.faces
    else:
        rows = fragments.batch_index * attributes.shape[1] + fragments.faces
    table = attributes.reshape(-1, 3 * channels)
    if channels > FEW_CHANNELS:
        gathered_rows = table.index_select(0, rows).reshape(-1, 3, channels)
        return _blend_rows(fragments, list(gathered_rows.unbind(1)))
    columns = table.t().contiguous()  # row k * C + c: corner k, channel c
    gathered = [column.index_select(0, rows) for column in columns]
    return _blend(fragments, [[gathered[k * channels + c] for k in range(3)] for c in range(channels)])


def _blend(fragments: Fragments, corner_values: list[list[Tensor]]) -> Tensor:
    """(P, C) from per-channel lists of the three corners' (P,) values."""
    w0, w1, w2 = fragments.bary.unbind(1)
    return torch.stack([w0 * c0 + w1 * c1 + w2 * c2 for c0, c1, c2 in corner_values], dim=1)


def _blend_rows(fragments: Fragments, corner_rows: list[Tensor]) -> Tensor:
    """(P, C) from the three corners' (P, C) values."""
    w0, w1, w2 = fragments.bary[:, :, None].unbind(1)
    return w0 * corner_rows[0] + w1 * corner_rows[1] + w2 * corner_rows[2]


def interpolate_vertex_attributes(fragments: Fragments, faces: Tensor, attributes: Tensor) -> Tensor:
    """(B, H, W, C) image of per-vertex ``attributes`` (B, V, C) or (V, C); zero on background."""
    return fragments.to_image(blend_vertex_attributes(fragments, faces, attributes))


def interpolate_corner_attributes(fragments: Fragments, attributes: Tensor) -> Tensor:
    """(B, H, W, C) image of per-face-corner ``attributes`` (B, F, 3, C) or (F, 3, C); zero on
    background. Use it for UVs given per corner (F, 3, 2)."""
    return fragments.to_image(blend_corner_attributes(fragments, attributes))


def sample_texture(texture: Tensor, uv: Tensor, padding_mode: str = "border") -> Tensor:
    """Bilinear lookup of ``texture`` (B or 1, C, Ht, Wt) at ``uv`` (B, H, W, 2) -> (B, H, W, C).

    u runs left to right and v bottom to top (Blender/OpenGL); texture row 0 is the top (v = 1).
    ``align_corners=False``: u = 0 and u = 1 are the outer edges of the texture, texel j's centre
    is at u = (j + 0.5) / Wt. Pass ``padding_mode="reflection"`` or pad the texture yourself for
    other wrap rules (MeshInversion pads one column circularly).
    """
    if texture.shape[0] != uv.shape[0]:
        texture = texture.expand(uv.shape[0], -1, -1, -1)
    grid = uv_to_grid(uv)
    sampled = F.grid_sample(texture, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return sampled.permute(0, 2, 3, 1)


def sample_texture_points(
    texture: Tensor, uv: Tensor, batch_index: Tensor, padding_mode: str = "border"
) -> Tensor:
    """Bilinear lookup of ``texture`` (B or 1, C, Ht, Wt) at (P, 2) ``uv`` of covered pixels that
    belong to batch items ``batch_index`` (P,) in ascending order -> (P, C). Same convention as
    ``sample_texture``; it samples only the covered pixels, not the whole image."""
    grid = uv_to_grid(uv)
    if uv.shape[0] == 0:
        return uv.new_zeros(0, texture.shape[1])
    if texture.shape[0] == 1:
        sampled = F.grid_sample(texture, grid[None, None], padding_mode=padding_mode, align_corners=False)
        return sampled[0, :, 0].t()
    # One row of samples per batch item, padded to the longest.
    batch = texture.shape[0]
    counts = torch.bincount(batch_index, minlength=batch)
    longest = int(counts.max())
    rank = torch.arange(uv.shape[0], device=uv.device) - (counts.cumsum(0) - counts).index_select(
        0, batch_index
    )
    slot = batch_index * longest + rank
    padded = grid.new_zeros(batch * longest, 2).index_copy(0, slot, grid).reshape(batch, 1, longest, 2)
    sampled = F.grid_sample(texture, padded, padding_mode=padding_mode, align_corners=False)
    return sampled[:, :, 0].transpose(1, 2).reshape(batch * longest, -1).index_select(0, slot)


def uv_to_grid(uv: Tensor) -> Tensor:
    """UV (v up) -> grid_sample coordinates (x right, y down, both in [-1, 1])."""
    return uv * uv.new_tensor([2.0, -2.0]) + uv.new_tensor([-1.0, 1.0])
