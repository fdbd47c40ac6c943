"""StyleGAN2 generator and discriminator in the rosinality layout that GAN2Shape's checkpoints use.

Module and buffer names follow ``rosinality/stylegan2-pytorch`` as vendored by GAN2Shape, so an
official ``{'g_ema', 'd'}`` checkpoint loads strictly (``noises.noise_i`` and the blur kernels are
buffers inside the state dict). The ops are plain PyTorch (``stylegan2_ops``). Widths follow the
official table ``min(channel_max, channel_base * channel_multiplier / resolution)``; the demo model
only lowers ``channel_base``/``channel_max``, so it is the same classes at a smaller width.

GAN2Shape's additions are here too: ``style_forward(skip, depth)`` (part of the mapping network,
for the latent-offset encoder), ``input_is_w`` and the fixed noise buffers used by default, and
``Discriminator(x, ftr_num=k)`` returning the first ``k`` ResBlock outputs for its feature loss.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from backend.methods.gan2shape.stylegan2_ops import (
    fused_leaky_relu,
    make_blur_kernel,
    modulated_conv2d,
    upfirdn2d,
)

BLUR_TAPS = (1, 3, 3, 1)
STDDEV_GROUP = 4


@dataclass(frozen=True)
class StyleGAN2Config:
    """Architecture of one generator/discriminator pair (the ``config`` table of a weights entry)."""

    size: int
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channel_base: int = 16384
    channel_max: int = 512

    def __post_init__(self) -> None:
        if self.size < 8 or self.size & (self.size - 1):
            raise ValueError(f"StyleGAN2 size must be a power of two >= 8, got {self.size}")

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def n_latent(self) -> int:
        """Number of W vectors a W+ code has (one per modulated layer input, shared by conv/to_rgb)."""
        return self.log_size * 2 - 2

    @property
    def n_noise(self) -> int:
        return (self.log_size - 2) * 2 + 1

    def channels(self, resolution: int) -> int:
        """Feature width at ``resolution`` px (official: 512 up to 32 px, then halving per doubling)."""
        return min(self.channel_max, self.channel_base * self.channel_multiplier // resolution)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> StyleGAN2Config:
        """Build from a manifest ``config`` table, ignoring keys that describe other things."""
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: int(v) for k, v in table.items() if k in names})


OFFICIAL_CONFIGS: dict[str, StyleGAN2Config] = {
    "celeba": StyleGAN2Config(size=128, channel_multiplier=1),
    "synface": StyleGAN2Config(size=128, channel_multiplier=1),
    "cat": StyleGAN2Config(size=256, channel_multiplier=1),
    "church": StyleGAN2Config(size=256, channel_multiplier=2),
    "car": StyleGAN2Config(size=512, channel_multiplier=2),
}
"""GAN2Shape's released StyleGAN2 checkpoints (``configs/*.yml``: gan_size, channel_multiplier)."""


class PixelNorm(nn.Module):
    """Normalise each latent to unit RMS so the mapping network sees z on a sphere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: N(0,1) weights scaled at run time by 1/sqrt(fan_in).

    ``lr_mul`` slows the mapping network (0.01) by storing weights divided by it.
    """

    def __init__(
        self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, activate: bool = False
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.linear(x, self.weight * self.scale)
        bias = self.bias * self.lr_mul
        return fused_leaky_relu(out, bias) if self.activate else out + bias


class EqualConv2d(nn.Module):
    """Conv2d with equalised learning rate (weights scaled at run time by 1/sqrt(fan_in))."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0, bias: bool = True
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.conv2d(
            x, self.weight * self.scale, self.bias, stride=self.stride, padding=self.padding
        )


class FusedLeakyReLU(nn.Module):
    """Per-channel bias, leaky ReLU and sqrt(2) gain (the official fused op, here unfused)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class Blur(nn.Module):
    """Anti-aliasing FIR filter with explicit pads (the kernel is a buffer, hence in the state dict)."""

    def __init__(self, pad: tuple[int, int], gain: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("kernel", make_blur_kernel(BLUR_TAPS) * gain)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling of the RGB skip path (kernel gain 4 keeps the mean after zero insertion)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernel", make_blur_kernel(BLUR_TAPS) * 4)
        p = len(BLUR_TAPS) - 2
        self.pad = ((p + 1) // 2 + 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=2, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Convolution whose weights are scaled per sample by the style and (optionally) demodulated."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
    ) -> None:
        super().__init__()
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            p = (len(BLUR_TAPS) - 2) - (kernel - 1)
            self.blur = Blur(pad=((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel, kernel))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_ch * kernel * kernel)
        self.padding = kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.modulation(w)
        weight = self.weight[0] * self.scale
        out = modulated_conv2d(x, weight, style, self.demodulate, self.upsample, self.padding)
        return self.blur(out) if self.upsample else out


class NoiseInjection(nn.Module):
    """Adds single-channel noise with a learned strength (zero at init)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return x + self.weight * noise


class ConstantInput(nn.Module):
    """The learned 4x4 tensor the synthesis network starts from."""

    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class StyledConv(nn.Module):
    """Modulated 3x3 conv (optionally 2x up), noise, bias + leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, w), noise))


class ToRGB(nn.Module):
    """1x1 modulated conv to RGB (no demodulation), added to the upsampled RGB of the coarser level."""

    def __init__(self, in_ch: int, style_dim: int, upsample: bool = True) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, w) + self.bias
        return out if skip is None else out + self.upsample(skip)


class Generator(nn.Module):
    """Mapping network (``style``) + synthesis network; images in [-1, 1] (unclamped), (B, 3, size, size)."""

    def __init__(self, config: StyleGAN2Config, lr_mlp: float = 0.01) -> None:
        super().__init__()
        self.config = config
        c, d = config.channels, config.style_dim
        self.style = nn.ModuleList(
            [PixelNorm()] + [EqualLinear(d, d, lr_mul=lr_mlp, activate=True) for _ in range(config.n_mlp)]
        )
        self.input = ConstantInput(c(4))
        self.conv1 = StyledConv(c(4), c(4), d)
        self.to_rgb1 = ToRGB(c(4), d, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for level in range(3, config.log_size + 1):
            in_ch, out_ch = c(2 ** (level - 1)), c(2**level)
            self.convs.append(StyledConv(in_ch, out_ch, d, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, d))
            self.to_rgbs.append(ToRGB(out_ch, d))
        self.noises = nn.Module()
        for i in range(config.n_noise):
            side = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, side, side))

    @property
    def n_latent(self) -> int:
        return self.config.n_latent

    def style_forward(self, x: torch.Tensor, skip: int = 0, depth: int | None = None) -> torch.Tensor:
        """Apply mapping layers ``skip <= i < depth`` (index 0 is the PixelNorm); defaults give z -> W."""
        for layer in list(self.style)[skip:depth]:
            x = layer(x)
        return x

    def mean_latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean W over ``n`` random z (1, style_dim): the centre used for truncation."""
        device = self.input.input.device
        z = torch.randn(n, self.config.style_dim, generator=generator, device=device)
        return self.style_forward(z).mean(dim=0, keepdim=True)

    def fixed_noise(self) -> list[torch.Tensor]:
        """The checkpoint's noise buffers; GAN2Shape renders with these (randomize_noise=False)."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.config.n_noise)]

    def make_noise(self, batch: int, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fresh per-sample noise maps for training, drawn from ``generator``."""
        device = self.input.input.device
        return [
            torch.randn(batch, 1, n.shape[-2], n.shape[-1], generator=generator, device=device)
            for n in self.fixed_noise()
        ]

    def forward(
        self,
        latent: torch.Tensor,
        input_is_w: bool = False,
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        noise: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Synthesise images from z (B, D), W (B, D) or W+ (B, n_latent, D) codes.

        ``input_is_w`` skips the mapping network. ``truncation`` < 1 pulls W towards
        ``truncation_latent``. ``noise`` defaults to the fixed buffers.
        """
        w = latent if input_is_w else self.style_forward(latent)
        if truncation < 1.0:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent (see Generator.mean_latent)")
            w = truncation_latent + truncation * (w - truncation_latent)
        if w.dim() == 2:
            w = w[:, None, :].expand(-1, self.n_latent, -1)
        if w.shape[1] != self.n_latent:
            raise ValueError(f"W+ code must have {self.n_latent} vectors, got {w.shape[1]}")
        noise = self.fixed_noise() if noise is None else noise
        out = self.conv1(self.input(w.shape[0]), w[:, 0], noise[0])
        rgb = self.to_rgb1(out, w[:, 1])
        for level, to_rgb in enumerate(self.to_rgbs):
            i = 2 * level + 1
            out = self.convs[2 * level](out, w[:, i], noise[i])
            out = self.convs[2 * level + 1](out, w[:, i + 1], noise[i + 1])
            rgb = to_rgb(out, w[:, i + 2], rgb)
        return rgb


class ConvLayer(nn.Sequential):
    """[Blur] + EqualConv2d + [bias/leaky ReLU]; a Sequential so the official indices (0, 1, 2) match."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        downsample: bool = False,
        bias: bool = True,
        activate: bool = True,
    ) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(BLUR_TAPS) - 2) + (kernel - 1)
            layers.append(Blur(pad=((p + 1) // 2, p // 2)))
            layers.append(EqualConv2d(in_ch, out_ch, kernel, stride=2, bias=bias and not activate))
        else:
            layers.append(EqualConv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_ch))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Two 3x3 convs (the second halving the resolution) plus a blurred 1x1 skip, variance-preserving sum."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, bias=False, activate=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2.0)


class Discriminator(nn.Module):
    """Residual discriminator with minibatch-stddev; logits (B, 1), or early features for GAN2Shape."""

    def __init__(self, config: StyleGAN2Config) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        blocks: list[nn.Module] = [ConvLayer(3, c(config.size), 1)]
        for level in range(config.log_size, 2, -1):
            blocks.append(ResBlock(c(2**level), c(2 ** (level - 1))))
        self.convs = nn.ModuleList(blocks)
        self.final_conv = ConvLayer(c(4) + 1, c(4), 3)
        self.final_linear = nn.Sequential(
            EqualLinear(c(4) * 4 * 4, c(4), activate=True),
            EqualLinear(c(4), 1),
        )

    def features(self, x: torch.Tensor, ftr_num: int) -> list[torch.Tensor]:
        """Outputs of the first ``ftr_num`` ResBlocks; works at any input size a power of two >= 8.

        GAN2Shape feeds its 64/128 px images here even for a 512 px discriminator: only the early,
        fully convolutional blocks are used.
        """
        out = self.convs[0](x)
        feats = []
        for block in list(self.convs)[1 : ftr_num + 1]:
            out = block(out)
            feats.append(out)
        return feats

    def forward(self, x: torch.Tensor, ftr_num: int | None = None) -> torch.Tensor | list[torch.Tensor]:
        """Realness logits (B, 1); with ``ftr_num`` the first ``ftr_num`` ResBlock outputs instead."""
        if ftr_num is not None:
            return self.features(x, ftr_num)
        out = x
        for block in self.convs:
            out = block(out)
        return self.final_linear(self.final_conv(minibatch_stddev(out)).flatten(1))


def minibatch_stddev(x: torch.Tensor) -> torch.Tensor:
    """Append one channel: the feature std across groups of up to 4 samples, averaged to a scalar.

    The official layer requires the batch to be divisible by min(batch, 4); here the group is the
    largest divisor of the batch that is <= 4, which equals the official choice whenever that works.
    """
    b, c, h, w = x.shape
    group = next(g for g in range(min(b, STDDEV_GROUP), 0, -1) if b % g == 0)
    grouped = x.view(group, b // group, c, h, w)
    std = torch.sqrt(grouped.var(dim=0, unbiased=False) + 1e-8).mean(dim=(1, 2, 3))
    std_map = std.view(1, b // group, 1, 1, 1).expand(group, -1, 1, h, w).reshape(b, 1, h, w)
    return torch.cat([x, std_map], dim=1)


GAN_PARTS = ("g_ema", "d")
"""The two networks of a rosinality checkpoint that GAN2Shape needs (the EMA generator, the critic)."""


def flatten_checkpoint(raw: dict[str, Any]) -> dict[str, torch.Tensor]:
    """``{'g_ema': sd, 'd': sd, ...}`` (a rosinality checkpoint) -> flat ``{'g_ema.<key>', 'd.<key>'}``.

    The flat form is what a safetensors file holds; other entries (``g``, optimisers) are dropped.
    """
    missing = [part for part in GAN_PARTS if not isinstance(raw.get(part), dict)]
    if missing:
        raise KeyError(f"a StyleGAN2 checkpoint needs 'g_ema' and 'd'; missing {', '.join(missing)}")
    return {f"{part}.{key}": value for part in GAN_PARTS for key, value in raw[part].items()}


def split_state_dict(flat: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Inverse of ``flatten_checkpoint``: flat keys -> one state dict per part (other prefixes ignored)."""
    parts: dict[str, dict[str, torch.Tensor]] = {part: {} for part in GAN_PARTS}
    for key, value in flat.items():
        head, _, rest = key.partition(".")
        if head in parts:
            parts[head][rest] = value
    return parts


def infer_config(g_state: dict[str, torch.Tensor]) -> StyleGAN2Config:
    """Recover the architecture from a generator state dict (size, latent size, mapping depth, widths).

    Official checkpoints come out with the official channel table; other widths are matched with
    ``channel_multiplier`` 1 and the smallest ``channel_base``/``channel_max`` that reproduce them.
    """
    n_noise = sum(1 for k in g_state if k.startswith("noises.noise_"))
    if n_noise < 3 or "style.1.weight" not in g_state:
        raise ValueError("not a StyleGAN2 generator state dict (no noises.noise_* or style.1.weight)")
    size = 2 ** ((n_noise - 1) // 2 + 2)
    style_dim = g_state["style.1.weight"].shape[0]
    n_mlp = sum(1 for k in g_state if k.startswith("style.") and k.endswith(".weight"))
    widths = {4: g_state["conv1.conv.weight"].shape[1]}
    for level in range(3, int(math.log2(size)) + 1):
        widths[2**level] = g_state[f"convs.{2 * (level - 3)}.conv.weight"].shape[1]
    common = {"size": size, "style_dim": style_dim, "n_mlp": n_mlp}
    candidates = [StyleGAN2Config(**common, channel_multiplier=m) for m in (2, 1)]
    channel_max = max(widths.values())
    candidates += [
        StyleGAN2Config(**common, channel_multiplier=1, channel_base=w * r, channel_max=channel_max)
        for r, w in sorted(widths.items())
    ]
    for config in candidates:
        if all(config.channels(r) == w for r, w in widths.items()):
            return config
    raise ValueError(f"generator widths {widths} follow no min(max, base / resolution) table")


def build_gan(
    config: StyleGAN2Config, state_dict: dict[str, torch.Tensor], device: torch.device | str
) -> tuple[Generator, Discriminator]:
    """Generator and discriminator loaded strictly from a flat ``g_ema.*``/``d.*`` dict, frozen, in eval."""
    parts = split_state_dict(state_dict)
    g, d = Generator(config), Discriminator(config)
    g.load_state_dict(parts["g_ema"], strict=True)
    d.load_state_dict(parts["d"], strict=True)
    for net in (g, d):
        net.to(device).eval().requires_grad_(False)
    return g, d
