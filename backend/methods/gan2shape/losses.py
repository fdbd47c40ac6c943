"""Losses and depth metrics of GAN2Shape (photometric, smoothness, discriminator features, SIDE/MAD)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from backend.methods.gan2shape.depthmap import normals_from_depth


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


def erode(mask: torch.Tensor) -> torch.Tensor:
    """Remove the one-pixel rim of a (B, H, W) 0/1 mask (the official 3x3 average > 0.99 test)."""
    return (F.avg_pool2d(mask[:, None], 3, stride=1, padding=1)[:, 0] > 0.99).float()


def depth_metrics(pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
    """SIDE (scale-invariant depth error) and MAD (mean angle deviation of normals, degrees).

    As in Unsup3d/GAN2Shape: evaluated on depth in the input view over the eroded intersection
    of both foreground masks; SIDE is the std of the log-depth difference. Unlike the official
    code the normals are normalised exactly here: its ``n / (|n| + 1e-7)`` on cross products of
    ~1e-5 shortens them by ~0.3 % at 64 px, which alone adds ~6 deg to every MAD.
    """
    mask = erode(valid.float())
    count = mask.sum(dim=(1, 2)).clamp(min=1)
    diff = (pred.clamp(min=1e-6).log() - gt.clamp(min=1e-6).log()) * mask
    mean = diff.sum(dim=(1, 2)) / count
    side = ((((diff - mean[:, None, None]) * mask).square()).sum(dim=(1, 2)) / count).sqrt()
    n_pred, n_gt = normals_from_depth(pred), normals_from_depth(gt)
    cos = (n_pred * n_gt).sum(-1) / (n_pred.norm(dim=-1) * n_gt.norm(dim=-1)).clamp(min=1e-12)
    cos = cos.clamp(-1, 1)
    mad = (torch.rad2deg(cos.acos()) * mask).sum(dim=(1, 2)) / count
    return {"side": float(side.mean()), "mad": float(mad.mean()), "pixels": float(count.mean())}
