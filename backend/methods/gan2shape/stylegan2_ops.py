"""StyleGAN2's low-level ops in plain PyTorch (no compiled extension), device-agnostic.

The official code ships CUDA kernels for ``upfirdn2d`` and the fused bias + leaky ReLU; they are
only speed-ups of the standard ops written here, so checkpoints behave the same with either.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LEAKY_SLOPE = 0.2
ACTIVATION_GAIN = math.sqrt(2.0)
"""He-style gain that keeps the activation's second moment at 1 after a leaky ReLU."""


def make_blur_kernel(taps: tuple[int, ...] | list[int]) -> torch.Tensor:
    """The 2-D FIR kernel (outer product of 1-D ``taps``), normalised to sum 1 so it preserves DC."""
    k = torch.tensor(taps, dtype=torch.float32)
    k2 = k[None, :] * k[:, None]
    return k2 / k2.sum()


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Add a per-channel bias (channel axis 1), leaky ReLU 0.2, times sqrt(2)."""
    shape = (1, -1) + (1,) * (x.dim() - 2)
    return F.leaky_relu(x + bias.view(shape), LEAKY_SLOPE) * ACTIVATION_GAIN


def upfirdn2d(
    x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative pads crop), FIR-filter, then keep every ``down``-th pixel.

    Same pads on both axes, as everywhere in StyleGAN2. The filter is a true convolution (the
    kernel is flipped), applied per channel as one depthwise ``conv2d``.
    """
    b, c, h, w = x.shape
    if up > 1:
        spread = x.new_zeros(b, c, h * up, w * up)
        spread[:, :, ::up, ::up] = x
        x = spread
    p0, p1 = pad
    x = F.pad(x, [p0, p1, p0, p1])
    taps = kernel.flip([0, 1]).to(x.dtype).expand(c, 1, *kernel.shape)
    x = F.conv2d(x, taps, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    style: torch.Tensor,
    demodulate: bool,
    upsample: bool = False,
    padding: int = 0,
    eps: float = 1e-8,
) -> torch.Tensor:
    """StyleGAN2's modulated convolution, computed without per-sample weights.

    ``weight`` (out, in, k, k) is already scaled by its equalised-lr factor, ``style`` (B, in) the
    modulation. Scaling the input by the style and the output by the demodulation factor equals
    convolving with the per-sample weight ``w * s`` normalised per output channel, but runs as one
    ordinary batched convolution (large GEMMs, no groups), which is much faster for batches.
    ``upsample`` uses a stride-2 transposed convolution, as the official layer does; the blur that
    follows it is the caller's.
    """
    x = x * style[:, :, None, None]
    if upsample:
        out = F.conv_transpose2d(x, weight.transpose(0, 1), stride=2)
    else:
        out = F.conv2d(x, weight, padding=padding)
    if demodulate:
        energy = style.square() @ weight.square().sum(dim=(2, 3)).t()
        out = out * torch.rsqrt(energy + eps)[:, :, None, None]
    return out


def demodulated_weight(weight: torch.Tensor, style: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The per-sample weights (B, out, in, k, k) that ``modulated_conv2d`` applies implicitly.

    Used for inspection and tests; the forward pass never materialises them.
    """
    w = weight[None] * style[:, None, :, None, None]
    return w * torch.rsqrt(w.square().sum(dim=(2, 3, 4), keepdim=True) + eps)
