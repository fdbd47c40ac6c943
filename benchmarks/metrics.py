"""Accuracy metrics shared by every row of the benchmark report (``benchmarks/run_all.py``).

All functions are batched torch code on the inputs' device. Depth SIDE and MAD are not here: the
GAN2Shape package already implements them as the paper does
(``backend.methods.gan2shape.losses.depth_metrics``) and the report calls that one function for
every row, so the numbers stay comparable with the GAN2Shape engineer's benchmark.
"""

from __future__ import annotations

import math

import torch


def mask_iou(predicted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """(B,) intersection over union of (B, H, W) boolean masks; two empty masks count as 1 (agree)."""
    predicted, truth = predicted.bool(), truth.bool()
    inter = (predicted & truth).flatten(1).sum(1).float()
    union = (predicted | truth).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def sample_surface(
    vertices: torch.Tensor, faces: torch.Tensor, count: int, generator: torch.Generator
) -> torch.Tensor:
    """(count, 3) points uniform on a triangle mesh: faces drawn by area, then uniform barycentrics.

    ``generator`` must live on the vertices' device; a fixed seed makes Chamfer numbers repeatable.
    """
    corners = vertices[faces.long()]
    edges_cross = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=-1)
    face = torch.multinomial(edges_cross.norm(dim=-1), count, replacement=True, generator=generator)
    r1 = torch.rand(count, 1, generator=generator, device=vertices.device).sqrt()
    r2 = torch.rand(count, 1, generator=generator, device=vertices.device)
    a, b, c = corners[face].unbind(1)
    return (1 - r1) * a + r1 * (1 - r2) * b + r1 * r2 * c


def normalise_scale(points: torch.Tensor) -> torch.Tensor:
    """Centre (N, 3) points on their mean and scale them to unit RMS radius, so Chamfer compares shape
    alone: the single-view methods recover size only up to the camera's scale."""
    centred = points - points.mean(dim=0)
    return centred / centred.square().sum(-1).mean().sqrt().clamp(min=1e-12)


def chamfer_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    """Symmetric Chamfer-L2: mean squared distance from each point of ``a`` to its nearest point of
    ``b`` plus the same from ``b`` to ``a`` (points (N, 3) and (M, 3), no normalisation here)."""
    squared = torch.cdist(a[None], b[None])[0].square()
    return float(squared.min(dim=1).values.mean() + squared.min(dim=0).values.mean())


def masked_psnr(predicted: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> float:
    """PSNR in dB of (H, W, 3) colours in [0, 1] over the pixels where ``mask`` (H, W) is true;
    NaN when the mask is empty (no pixel to compare, which the report shows as missing)."""
    mask = mask.bool()
    if not bool(mask.any()):
        return math.nan
    error = (predicted[mask] - truth[mask]).square().mean()
    return float(10 * torch.log10(1 / error.clamp(min=1e-10)))


def scatter_depth(
    pixels: torch.Tensor, depth_values: torch.Tensor, shape: tuple[int, int, int], offset: float
) -> torch.Tensor:
    """A dense (B, H, W) depth image from a rasteriser's covered flat ``pixels`` and their depths
    (plus ``offset``, the renders' constant view distance); 0 where nothing is covered, as in the
    ground-truth depth maps."""
    depth = depth_values.new_zeros(shape[0] * shape[1] * shape[2])
    depth[pixels] = depth_values + offset
    return depth.reshape(shape)
