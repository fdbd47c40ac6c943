"""Preview strips of a finished reconstruction: rotations, relighting, shape, input vs. recon.

All are rendered with the same canonical-view warp the optimisation used, so they show what
the model actually learnt; pixels the relief does not cover are white.
"""

from __future__ import annotations

import numpy as np
import torch

from backend.methods.gan2shape import depth_render
from backend.methods.gan2shape.schedule import Prediction

PREVIEW_YAWS = (-45.0, -22.5, 0.0, 22.5, 45.0)
RELIGHT_DIRECTIONS = ((-1.5, 0.0), (-0.7, 0.0), (0.0, 0.6), (0.7, 0.0), (1.5, 0.0))
"""Light (dx, dy) of the official relighting previews (direction = normalise(dx, dy, 1))."""
SHAPE_GREY = 0.7


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> one (H, N*W, 3) uint8 strip."""
    strip = torch.cat(list(images.detach().float().cpu()), dim=2)
    return ((strip.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def whiten_background(
    images: torch.Tensor, recon_depth: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Paint uncovered (and, with ``mask``, off-object) pixels white."""
    keep = depth_render.background(recon_depth)[:, None]
    if mask is not None:
        keep = keep * (mask > 0.5).float()
    return images * keep + (1 - keep)


def shape_image(state: Prediction) -> torch.Tensor:
    """Grey, front-lit shading of the canonical relief (as the official ``shape`` previews)."""
    front = state.normal.new_tensor([[0.0, 0.0, 1.0]])
    term = depth_render.diffuse_shading(state.normal[:1], front)
    return (term * SHAPE_GREY).expand(-1, 3, -1, -1) * 2 - 1


@torch.no_grad()
def make_previews(
    state: Prediction, image: torch.Tensor, view_mask: torch.Tensor, canon_mask: torch.Tensor,
    texture: torch.Tensor,
) -> dict[str, np.ndarray]:
    """``recon`` (input | reconstruction | exported texture | shape), ``rotate`` (the exported
    ``texture``, given in the canonical frame, turned about the vertical axis) and ``shape_rotate``,
    ``relight`` (input view, five light directions, object only)."""
    depth, view = state.depth[:1], state.view[:1]
    views = depth_render.yaw_pitch_views(list(PREVIEW_YAWS), [], depth)
    n = views.shape[0]
    many = depth.expand(n, -1, -1)
    recon_depth = depth_render.warp_canon_depth(many, views)
    grid = depth_render.canon_to_view_grid(recon_depth, views)
    masks = depth_render.sample(canon_mask.expand(n, -1, -1, -1), grid)

    def rotate(texture: torch.Tensor) -> torch.Tensor:
        return whiten_background(depth_render.sample(texture.expand(n, -1, -1, -1), grid), recon_depth, masks)

    ambient, diffuse, _ = depth_render.light_terms(state.light[:1])
    directions = torch.tensor([[dx, dy, 1.0] for dx, dy in RELIGHT_DIRECTIONS], device=depth.device)
    directions = directions / directions.norm(dim=1, keepdim=True)
    k = directions.shape[0]
    terms = depth_render.diffuse_shading(state.normal[:1].expand(k, -1, -1, -1), directions)
    relit = depth_render.shade(state.albedo[:1].expand(k, -1, -1, -1), terms, ambient, diffuse)
    relit_view, relit_depth, _ = depth_render.render_view(relit, depth.expand(k, -1, -1), view.expand(k, -1))
    shape = shape_image(state)
    recon = whiten_background(state.recon[:1], state.recon_depth[:1])
    recon_row = torch.cat([image, recon, texture, shape])
    return {
        "recon": to_uint8(recon_row),
        "rotate": to_uint8(rotate(texture)),
        "relight": to_uint8(whiten_background(relit_view, relit_depth, view_mask)),
        "shape_rotate": to_uint8(rotate(shape)),
    }
