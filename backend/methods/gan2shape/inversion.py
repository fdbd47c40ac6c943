"""GAN inversion of a photo: find the W code (and noise maps) whose StyleGAN2 image matches it.

GAN2Shape only works on images the GAN can produce, described by a latent code; for a real
photo that code comes from inverting the generator, as its authors recommend (the standard
StyleGAN2 projector, Karras et al. 2020 / rosinality ``projector.py``): start at the mean W,
optimise with Adam under a cosine-ramped learning rate, perturb the code with decaying noise
early on (to escape poor minima), and optimise the per-layer noise maps too, regularised
towards spatially uncorrelated noise so they cannot encode the image themselves. The noise
maps found are then used for every later generator call, so the projected samples of step 2
start from the same image. The image loss is LPIPS when VGG16 weights are available, else
discriminator features (the GAN's own perceptual space), plus a pixel MSE in both cases.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from backend.methods.gan2shape.losses import discriminator_feature_loss
from backend.methods.gan2shape.perceptual import PerceptualDistance
from backend.methods.gan2shape.stylegan2 import Discriminator, Generator

MEAN_SAMPLES = 10_000
LR_RAMPUP, LR_RAMPDOWN = 0.05, 0.25
NOISE_STRENGTH, NOISE_RAMP = 0.05, 0.75
NOISE_REGULARIZE = 1e5
FEATURE_LAYERS = 4


@dataclass
class Inversion:
    """``latent`` (1, D) W code, or (1, n_latent, D) with ``w_plus``; ``noise`` the maps to render with;
    ``losses`` the image term per step (the noise regulariser, ~1e5 x tiny, is left out)."""

    latent: torch.Tensor
    noise: list[torch.Tensor]
    losses: list[float]


def learning_rate(t: float, base: float) -> float:
    """The projector's schedule: linear warm-up over the first 5 %, cosine decay over the last 25 %."""
    ramp = min(1.0, (1.0 - t) / LR_RAMPDOWN)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return base * ramp * min(1.0, t / LR_RAMPUP)


def noise_regularizer(noises: list[torch.Tensor]) -> torch.Tensor:
    """Squared auto-correlation of each noise map at one-pixel shifts, over a pyramid down to 8 px."""
    total = noises[0].new_zeros(())
    for noise in noises:
        while True:
            total = total + (noise * noise.roll(1, dims=3)).mean().square()
            total = total + (noise * noise.roll(1, dims=2)).mean().square()
            if noise.shape[-1] <= 8:
                break
            noise = F.avg_pool2d(noise, 2)
    return total


@torch.no_grad()
def normalize_noise(noises: list[torch.Tensor]) -> None:
    """Keep every noise map at zero mean, unit variance (what the generator was trained with)."""
    for noise in noises:
        noise.sub_(noise.mean()).div_(noise.std())


def fit_size(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize to ``size``: area averaging when shrinking, bilinear when enlarging (GAN2Shape's rule)."""
    if image.shape[-1] == size:
        return image
    if image.shape[-1] > size:
        return F.interpolate(image, size=(size, size), mode="area")
    return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False)


def gan_view(image: torch.Tensor, size: int, crop: float = 1.0) -> torch.Tensor:
    """A GAN image as the nets see it: its centre square of ``crop`` of the frame (the official cat
    runs keep 170 of the 256 px; 1 keeps all) resized to ``size`` by ``fit_size``."""
    if crop < 1.0:
        side = image.shape[-1]
        keep = max(1, round(side * crop))
        start = (side - keep) // 2
        image = image[..., start : start + keep, start : start + keep]
    return fit_size(image, size)


def invert(
    generator: Generator,
    discriminator: Discriminator,
    target: torch.Tensor,
    steps: int,
    rng: torch.Generator,
    perceptual: PerceptualDistance | None = None,
    lr: float = 0.1,
    mse_weight: float = 1.0,
    w_plus: bool = False,
    gan_crop: float = 1.0,
    on_step: Callable[[int, float], None] | None = None,
) -> Inversion:
    """Invert ``target`` (1, 3, S, S) in [-1, 1]; the generator output is seen as the nets see it
    (``gan_view``: its centre ``gan_crop``, resized to S) for the loss.

    ``on_step(step, loss)`` runs after every step (progress and cancel).
    """
    device = target.device
    with torch.no_grad():
        z = torch.randn(MEAN_SAMPLES, generator.config.style_dim, generator=rng, device=device)
        w_samples = generator.style_forward(z)
        w_mean = w_samples.mean(dim=0, keepdim=True)
        w_std = ((w_samples - w_mean).square().sum() / MEAN_SAMPLES).sqrt()
    start = w_mean[:, None].repeat(1, generator.n_latent, 1) if w_plus else w_mean.clone()
    latent = start.requires_grad_(True)
    noises = [torch.randn(n.shape, generator=rng, device=device) for n in generator.fixed_noise()]
    for noise in noises:
        noise.requires_grad_(True)
    optimizer = torch.optim.Adam([latent, *noises], lr=lr, foreach=True)
    if perceptual is None:
        with torch.no_grad():
            target_features = discriminator(target, ftr_num=FEATURE_LAYERS)
    ones = target.new_ones(1, 1, *target.shape[-2:])
    losses: list[float] = []
    for step in range(steps):
        t = step / max(steps, 1)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(t, lr)
        strength = float(w_std) * NOISE_STRENGTH * max(0.0, 1.0 - t / NOISE_RAMP) ** 2
        jitter = torch.randn(latent.shape, generator=rng, device=device) * strength
        image = generator(latent + jitter, input_is_w=True, noise=noises)
        image = gan_view(image, target.shape[-1], gan_crop)
        if perceptual is not None:
            image_loss = perceptual(image, target).sum()
        else:
            features = discriminator(image, ftr_num=FEATURE_LAYERS)
            image_loss = discriminator_feature_loss(features, target_features, ones)
        image_loss = image_loss + mse_weight * F.mse_loss(image, target)
        loss = image_loss + NOISE_REGULARIZE * noise_regularizer(noises)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"GAN inversion diverged at step {step} (loss {loss.item()})")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        normalize_noise(noises)
        losses.append(image_loss.item())
        if on_step is not None:
            on_step(step, losses[-1])
    return Inversion(latent.detach(), [n.detach() for n in noises], losses)
