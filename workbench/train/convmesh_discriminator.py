"""ConvMesh's multi-scale discriminator for UV-space maps, at widths that fit a CPU budget.

As in the official code (research notes §1.5): spectral-normed convolutions with bias, LeakyReLU 0.2,
four positional channels (cos/sin of u and v) appended to the input, circular padding along u
(the maps wrap around the sphere) and zero padding along v, and patch outputs whose hinge loss is
weighted by the average-pooled alpha. ``d1`` judges the texture [tex * alpha, alpha]; ``d2`` the
mesh map next to the texture pooled to its resolution [tex * alpha, alpha, mesh].
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


def positional_channels(batch: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """(B, 4, H, W): cos/sin of the azimuth along u and cos/sin of the polar angle along v."""
    u = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * 2 * math.pi
    v = torch.arange(height, device=device, dtype=torch.float32) / max(height - 1, 1) * math.pi
    uu, vv = torch.meshgrid(v, u, indexing="ij")
    pos = torch.stack([torch.cos(vv), torch.sin(vv), torch.cos(uu), torch.sin(uu)])
    return pos[None].expand(batch, -1, -1, -1)


class WrapConv(nn.Module):
    """A spectral-normed conv padded circularly along u and with zeros along v."""

    def __init__(self, ch_in: int, ch_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.pad = (kernel - 1) // 2 if stride == 1 else (kernel - stride) // 2
        self.conv = spectral_norm(nn.Conv2d(ch_in, ch_out, kernel, stride, padding=(self.pad, 0)))
        self.extra = kernel - 1 - 2 * self.pad if stride == 1 else kernel - stride - 2 * self.pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left, right = self.pad, self.pad + self.extra
        if left or right:
            x = torch.cat([x[..., x.shape[-1] - left:], x, x[..., :right]], -1)
        return self.conv(x)


class PatchDiscriminator(nn.Module):
    """A first conv, strided 4x4 downsampling convs, and a 5x5 conv to one logit per patch."""

    def __init__(self, ch_in: int, widths: tuple[int, ...], first_kernel: int, first_stride: int) -> None:
        super().__init__()
        layers = [WrapConv(ch_in + 4, widths[0], first_kernel, first_stride)]
        layers += [WrapConv(a, b, 4, 2) for a, b in itertools.pairwise(widths)]
        self.convs = nn.ModuleList(layers)
        self.out = WrapConv(widths[-1], 1, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        x = torch.cat([x, positional_channels(b, h, w, x.device)], 1)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
        return self.out(x)


class MapDiscriminator(nn.Module):
    """``d1`` on the texture, ``d2`` on the mesh map with the pooled texture; returns both logit maps."""

    def __init__(self, width: float = 1.0) -> None:
        super().__init__()
        ch = tuple(max(4, round(c * width)) for c in (64, 128, 256, 512))
        self.d1 = PatchDiscriminator(4, ch, first_kernel=4, first_stride=2)
        self.d2 = PatchDiscriminator(7, ch[:3], first_kernel=5, first_stride=1)

    def forward(self, texture: torch.Tensor, mesh: torch.Tensor, alpha: torch.Tensor) -> list[torch.Tensor]:
        """Logits of (B, 3, T, T) textures in [-1, 1], (B, 3, 32, 32) maps and (B, 1, T, T) alpha."""
        tex_in = torch.cat([texture * alpha, alpha], 1)
        pooled = F.adaptive_avg_pool2d(tex_in, mesh.shape[-2:])
        return [self.d1(tex_in), self.d2(torch.cat([pooled, mesh], 1))]


def masked_hinge(
    logits: list[torch.Tensor], alpha: torch.Tensor, real: bool, weights: tuple[float, ...] = (1.0, 1.0)
) -> torch.Tensor:
    """Discriminator hinge loss, each patch weighted by the alpha pooled to the logit grid, each
    discriminator by ``weights`` (official: equal weights below texture 512)."""
    total = logits[0].new_zeros(())
    for lg, w in zip(logits, weights, strict=True):
        weight = F.adaptive_avg_pool2d(alpha, lg.shape[-2:])
        term = F.relu(1 - lg) if real else F.relu(1 + lg)
        total = total + w * (term * weight).sum() / weight.sum().clamp(min=1e-6)
    return total


def masked_generator_loss(
    logits: list[torch.Tensor], alpha: torch.Tensor, weights: tuple[float, ...] = (1.0, 1.0)
) -> torch.Tensor:
    """Generator hinge loss: minus the alpha-weighted mean logit, per discriminator weighted."""
    total = logits[0].new_zeros(())
    for lg, w in zip(logits, weights, strict=True):
        weight = F.adaptive_avg_pool2d(alpha, lg.shape[-2:])
        total = total - w * (lg * weight).sum() / weight.sum().clamp(min=1e-6)
    return total
