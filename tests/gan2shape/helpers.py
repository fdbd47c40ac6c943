"""Shared test material: a tiny StyleGAN2 configuration, a synthetic photo, a short schedule."""

from __future__ import annotations

import numpy as np
import torch

from backend.inputs import InputImage
from backend.methods.base import AuxiliaryWeights
from backend.methods.gan2shape.stylegan2 import Discriminator, Generator, StyleGAN2Config, flatten_checkpoint

TINY = StyleGAN2Config(size=64, style_dim=32, n_mlp=4, channel_multiplier=1, channel_base=512, channel_max=32)

NO_AUXILIARY = AuxiliaryWeights(entries=list, read=lambda entry: {})
"""For a method loaded without a weights store: no auxiliary entries."""


def tiny_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return flatten_checkpoint({"g_ema": Generator(TINY).state_dict(), "d": Discriminator(TINY).state_dict()})


def ellipse_photo(width: int = 96, height: int = 72) -> InputImage:
    """A shaded red ellipse (a lit bump) on grey, with its exact mask."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    u, v = (xx - width / 2) / (width * 0.35), (yy - height / 2) / (height * 0.3)
    r2 = u**2 + v**2
    mask = r2 < 1
    shade = np.sqrt(np.clip(1 - r2, 0, 1))[..., None]
    rgb = np.full((height, width, 3), 0.6, np.float32)
    rgb = np.where(mask[..., None], np.array([0.8, 0.2, 0.2], np.float32) * (0.4 + 0.6 * shade), rgb)
    return InputImage(rgb.astype(np.float32), mask, "ellipse.png", [], (width, height))


TINY_OPTIONS = {
    "invert_steps": 6, "prior_iters": 8, "num_stages": 2, "stage0": (6, 5, 6), "later": (3, 3, 3), "batch": 2,
    "collect_iters": 2, "net_width": 16, "mesh_resolution": 24, "preview_every": 4,
}
"""A schedule short enough for unit tests; every mechanism still runs."""
