"""Accuracy metrics shared by every row of the benchmark report (``benchmarks/run_all.py``).

All functions are batched torch code on the inputs' device. Depth SIDE and MAD (``depth_metrics``)
are computed as the GAN2Shape paper does, on its depth-map geometry, for every row of the report.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from backend.methods.gan2shape.depthmap import normals_from_depth
from backend.render.srgb import srgb_to_linear


def mask_iou(predicted: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """(B,) intersection over union of (B, H, W) boolean masks; two empty masks count as 1 (agree)."""
    predicted, truth = predicted.bool(), truth.bool()
    inter = (predicted & truth).flatten(1).sum(1).float()
    union = (predicted | truth).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


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


def masked_ssim(predicted: torch.Tensor, truth: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean SSIM (Gaussian window, std 1.5 px, on each channel of (H, W, 3) colours in [0, 1]) over
    the pixels where ``mask`` (H, W) is true; NaN when the mask is empty."""
    mask = mask.bool()
    if not bool(mask.any()):
        return math.nan
    offsets = torch.arange(-5, 6, dtype=predicted.dtype, device=predicted.device)
    kernel = torch.exp(-0.5 * (offsets / 1.5).square())
    kernel = (kernel / kernel.sum())[:, None] * (kernel / kernel.sum())[None, :]
    weights = kernel.expand(3, 1, -1, -1)

    def blur(image: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(image, weights, padding=5, groups=3)

    x, y = predicted.permute(2, 0, 1)[None], truth.permute(2, 0, 1)[None]
    mean_x, mean_y = blur(x), blur(y)
    var_x = blur(x * x) - mean_x.square()
    var_y = blur(y * y) - mean_y.square()
    cov = blur(x * y) - mean_x * mean_y
    c1, c2 = 0.01**2, 0.03**2
    numerator = (2 * mean_x * mean_y + c1) * (2 * cov + c2)
    ssim = numerator / ((mean_x.square() + mean_y.square() + c1) * (var_x + var_y + c2))
    return float(ssim[0].mean(dim=0)[mask].mean())


def srgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3) sRGB in [0, 1] -> CIELAB (D65 white)."""
    linear = srgb_to_linear(rgb)
    to_xyz = rgb.new_tensor([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = linear @ to_xyz.T / rgb.new_tensor([0.95047, 1.0, 1.08883])
    f = torch.where(xyz > (6 / 29) ** 3, xyz.clamp(min=1e-12) ** (1 / 3), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    x, y, z = f.unbind(-1)
    return torch.stack((116 * y - 16, 500 * (x - y), 200 * (y - z)), -1)


def ciede2000(lab1: torch.Tensor, lab2: torch.Tensor) -> torch.Tensor:
    """CIEDE2000 colour difference of (..., 3) CIELAB colours (Sharma, Wu and Dalal 2005)."""
    l1, a1, b1 = lab1.unbind(-1)
    l2, a2, b2 = lab2.unbind(-1)
    c_mean = (torch.hypot(a1, b1) + torch.hypot(a2, b2)) / 2
    g = 0.5 * (1 - torch.sqrt(c_mean**7 / (c_mean**7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = torch.hypot(a1p, b1), torch.hypot(a2p, b2)
    h1p = torch.rad2deg(torch.atan2(b1, a1p)) % 360
    h2p = torch.rad2deg(torch.atan2(b2, a2p)) % 360
    delta_l, delta_c = l2 - l1, c2p - c1p
    dh = h2p - h1p
    dh = torch.where(dh > 180, dh - 360, torch.where(dh < -180, dh + 360, dh))
    dh = torch.where(c1p * c2p == 0, torch.zeros_like(dh), dh)
    delta_h = 2 * torch.sqrt(c1p * c2p) * torch.sin(torch.deg2rad(dh) / 2)
    l_mean, cp_mean = (l1 + l2) / 2, (c1p + c2p) / 2
    h_sum = h1p + h2p
    h_mean = torch.where(
        (h1p - h2p).abs() > 180, torch.where(h_sum < 360, h_sum + 360, h_sum - 360) / 2, h_sum / 2
    )
    h_mean = torch.where(c1p * c2p == 0, h_sum, h_mean)
    t = (1 - 0.17 * torch.cos(torch.deg2rad(h_mean - 30)) + 0.24 * torch.cos(torch.deg2rad(2 * h_mean))
         + 0.32 * torch.cos(torch.deg2rad(3 * h_mean + 6)) - 0.20 * torch.cos(torch.deg2rad(4 * h_mean - 63)))
    s_l = 1 + 0.015 * (l_mean - 50) ** 2 / torch.sqrt(20 + (l_mean - 50) ** 2)
    s_c = 1 + 0.045 * cp_mean
    s_h = 1 + 0.015 * cp_mean * t
    r_c = 2 * torch.sqrt(cp_mean**7 / (cp_mean**7 + 25.0**7))
    r_t = -torch.sin(torch.deg2rad(60 * torch.exp(-(((h_mean - 275) / 25) ** 2)))) * r_c
    return torch.sqrt((delta_l / s_l) ** 2 + (delta_c / s_c) ** 2 + (delta_h / s_h) ** 2
                      + r_t * (delta_c / s_c) * (delta_h / s_h))


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
