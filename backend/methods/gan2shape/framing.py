"""How a GAN frames its objects, measured on its own samples.

GAN2Shape's official data are the GAN's own samples: whole frames for car and church, faces and cat
faces that fill the frame (cat's cut further to its centre 170 of 256 px, ``gan_crop``). A real
photo should reach the nets framed the way they see the GAN's images, so each imported StyleGAN2 is
sampled once at import (after its category's ``gan_crop``), the objects are found with the
salient-object net, and the median margin around them becomes the entry's ``crop_margin``
(``config.resolve`` takes it unless the user gives one). The margin has ``crop_to_object``'s
meaning: the fraction of the object box's long side added on every side.
"""

from __future__ import annotations

import numpy as np
import torch

from backend import salient_mask
from backend.methods.gan2shape.inversion import gan_view
from backend.methods.gan2shape.stylegan2 import Generator, StyleGAN2Config

SAMPLES = 8
"""Samples measured; the median margin over them is kept."""
TRUNCATION = 0.7
"""Typical samples (W pulled towards the mean), not the tails of the distribution."""
MEAN_SAMPLES = 512
"""z drawn to estimate the mean W the truncation pulls towards."""
COVERAGE = (0.02, 0.98)
"""A sample whose object mask covers less or more of the frame found no object: it is skipped."""
MARGIN_RANGE = (0.0, 0.5)


@torch.no_grad()
def samples(generator: Generator, count: int, seed: int = 0, crop: float = 1.0) -> np.ndarray:
    """(count, S, S, 3) truncated samples in [0, 1], rendered with the checkpoint's fixed noise, as
    the nets see them (``gan_view``'s centre ``crop``)."""
    rng = torch.Generator().manual_seed(seed)
    mean = generator.mean_latent(MEAN_SAMPLES, rng)
    z = torch.randn(count, generator.config.style_dim, generator=rng)
    images = generator(z, truncation=TRUNCATION, truncation_latent=mean)
    images = gan_view(images, round(images.shape[-1] * crop), crop)
    return ((images.clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).cpu().numpy()


def object_margin(mask: np.ndarray) -> float | None:
    """The margin of a square frame around the object's box (None when the mask holds no object):
    ``side = long_side * (1 + 2 * margin)``, the frame's side being the image's."""
    coverage = float(mask.mean())
    if not COVERAGE[0] <= coverage <= COVERAGE[1]:
        return None
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    long_side = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1)
    return (mask.shape[0] / long_side - 1) / 2


def measure_margin(generator: Generator, seed: int = 0, crop: float = 1.0) -> float | None:
    """The median object margin over ``SAMPLES`` samples, clamped to ``MARGIN_RANGE``; None when the
    salient net is not installed or found no object in most samples."""
    try:
        images = samples(generator, SAMPLES, seed, crop)
        margins = [object_margin(salient_mask.object_mask(image)) for image in images]
    except salient_mask.SalientUnavailable:
        return None
    found = [m for m in margins if m is not None]
    if len(found) * 2 < SAMPLES:
        return None
    return float(np.clip(np.median(found), *MARGIN_RANGE))


def checkpoint_margin(
    config: StyleGAN2Config, g_ema: dict[str, torch.Tensor], crop: float = 1.0
) -> float | None:
    """``measure_margin`` of the generator a checkpoint's ``g_ema`` holds (None for a checkpoint of
    shapes only, on the meta device: there is nothing to sample)."""
    if any(t.is_meta for t in g_ema.values()):
        return None
    generator = Generator(config)
    generator.load_state_dict(g_ema, strict=True)
    return measure_margin(generator.eval(), crop=crop)
