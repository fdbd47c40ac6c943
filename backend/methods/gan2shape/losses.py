"""Losses of GAN2Shape (photometric, smoothness, discriminator features)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def photometric_loss(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute difference, over the mask when given (mask broadcasts over channels)."""
    diff = (a - b).abs()
    if mask is None:
        return diff.mean()
    mask = mask.expand_as(diff)
    return (diff * mask).sum() / mask.sum().clamp(min=1e-8)


def smooth_loss(image: torch.Tensor) -> torch.Tensor:
    """Sum of mean absolute second differences (xx, xy, yx, yy): penalises curvature, not slope."""
    maps = image.reshape(-1, image.shape[-2], image.shape[-1])
    dx = maps[:, :, 1:] - maps[:, :, :-1]
    dy = maps[:, 1:] - maps[:, :-1]
    terms = (dx[:, :, 1:] - dx[:, :, :-1], dx[:, 1:] - dx[:, :-1])
    terms += (dy[:, :, 1:] - dy[:, :, :-1], dy[:, 1:] - dy[:, :-1])
    return sum(t.abs().mean() for t in terms)


def discriminator_feature_loss(
    features: list[torch.Tensor], target_features: list[torch.Tensor], mask: torch.Tensor
) -> torch.Tensor:
    """Masked L1 between discriminator feature maps, the mask average-pooled to each resolution.

    Comparing early discriminator features rather than pixels lets the projection keep what the
    GAN can express (its manifold) while ignoring pixel-exact warping artefacts of the pseudo sample.
    """
    total = mask.new_zeros(())
    for fake, real in zip(features, target_features, strict=True):
        k = mask.shape[-1] // fake.shape[-1]
        pooled = F.avg_pool2d(mask, kernel_size=k, stride=k).expand_as(fake)
        total = total + ((fake - real).abs() * pooled).sum() / pooled.sum().clamp(min=1e-8)
    return total
