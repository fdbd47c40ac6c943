"""The image-to-3D networks of GAN2Shape (Unsup3d family), laid out for strict checkpoint loading.

The official joint-pretrained files (``celeba_pretrain.pth`` and friends) store plain
``nn.Sequential`` state dicts named ``network.<index>.*``, so the order and count of every layer
(parameter-free ones included) is part of the file format. Each class below rebuilds that order;
``extra`` blocks are added once per doubling of the image size above 64 px.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NET_NAMES = ("netD", "netA", "netV", "netL", "netEnc")
"""Names of the five networks, as used as keys in the official trainer checkpoints."""


def extra_blocks(size: int) -> int:
    """Down/up blocks beyond the 64 px layout (1 at 128 px); only powers of two from 64 up are valid."""
    if size < 64 or size & (size - 1):
        raise ValueError(f"image size must be a power of two >= 64, got {size}")
    return int(math.log2(size)) - 6


def official_widths(size: int) -> tuple[int, int]:
    """(nf, gn_base) that GAN2Shape derives from the image size: keeps the 4x4 bottleneck width fixed."""
    return max(4096 // size, 16), (8 if size >= 128 else 16)


def net_widths(size: int, nf: int | None) -> tuple[int, int]:
    """(nf, gn_base): the official ones for ``size``, or a narrower ``nf`` with a quarter of it as the
    group-norm base (the CPU demo nets)."""
    return official_widths(size) if nf is None else (nf, max(1, nf // 4))


def _down(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=4, stride=2, padding=1, bias=False)


def _up(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, kernel_size=4, stride=2, padding=1, bias=False)


def _same(cin: int, cout: int, kernel: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=kernel, stride=1, padding=kernel // 2, bias=False)


class EDDeconv(nn.Module):
    """Encoder-decoder for per-pixel maps (depth: 1 channel, linear; albedo: 3 channels, tanh).

    A global 1x1 bottleneck forces a holistic shape/albedo code, which is what lets the
    networks generalise from a single image under the symmetry and shading constraints.
    """

    def __init__(
        self, cin: int, cout: int, size: int = 64, nf: int = 64, gn_base: int = 16, zdim: int = 256,
        tanh: bool = True,
    ) -> None:
        super().__init__()
        extra = extra_blocks(size)
        layers: list[nn.Module] = []
        widths = [cin] + [nf * 2**i for i in range(4)]
        for i in range(3):
            layers += [_down(widths[i], widths[i + 1]), nn.GroupNorm(gn_base * 2**i, widths[i + 1]),
                       nn.LeakyReLU(0.2)]
        layers.append(_down(widths[3], widths[4]))
        width = widths[4]
        for i in range(extra):
            groups = gn_base * 2 ** (3 + i)
            layers += [nn.GroupNorm(groups, width), nn.LeakyReLU(0.2), _down(width, width * 2)]
            width *= 2
        layers += [nn.LeakyReLU(0.2), nn.Conv2d(width, zdim, kernel_size=4, bias=False), nn.ReLU()]
        top = width
        layers += [nn.ConvTranspose2d(zdim, top, kernel_size=4, bias=False), nn.ReLU(),
                   _same(top, top), nn.ReLU()]
        for i in range(3 + extra):
            cin_up, cout_up = top // 2**i, top // 2 ** (i + 1)
            groups = gn_base * 2**extra * 4 // 2**i
            layers += [_up(cin_up, cout_up), nn.GroupNorm(groups, cout_up), nn.ReLU(),
                       _same(cout_up, cout_up), nn.GroupNorm(groups, cout_up), nn.ReLU()]
        last = top // 2 ** (3 + extra)
        layers += [nn.Upsample(scale_factor=2, mode="nearest"),
                   _same(last, last), nn.GroupNorm(gn_base, last), nn.ReLU(),
                   _same(last, last, 5), nn.GroupNorm(gn_base, last), nn.ReLU(),
                   _same(last, cout, 5)]
        if tanh:
            layers.append(nn.Tanh())
        self.network = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.network(image)


class Encoder(nn.Module):
    """Image -> small global vector in (-1, 1) (view: 6, light: 4)."""

    def __init__(self, cin: int, cout: int, size: int = 64, nf: int = 64) -> None:
        super().__init__()
        extra = extra_blocks(size)
        layers: list[nn.Module] = []
        width = cin
        for i in range(4 + extra):
            out = nf * 2**i
            layers += [_down(width, out), nn.ReLU()]
            width = out
        layers += [nn.Conv2d(width, width, kernel_size=4, bias=False), nn.ReLU(),
                   nn.Conv2d(width, cout, kernel_size=1, bias=False), nn.Tanh()]
        self.network = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.network(image).reshape(image.shape[0], -1)


class ResBlockDown(nn.Module):
    """Pre-activation residual block that halves the resolution.

    The official block applies an in-place ReLU to its input, so its shortcut also sees the
    rectified input; this reproduces that explicitly so pretrained weights behave the same.
    ``conv_sc`` always exists (it is in the checkpoints) but only acts when widths differ.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, kernel_size=3, stride=2, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, kernel_size=3, stride=1, padding=1, bias=False)
        self.conv_sc = nn.Conv2d(cin, cout, kernel_size=1)
        self.project = cin != cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        residual = self.conv2(F.relu(self.conv1(x)))
        shortcut = F.avg_pool2d(x, kernel_size=2, stride=2)
        if self.project:
            shortcut = self.conv_sc(shortcut)
        return shortcut + residual


class ResEncoder(nn.Module):
    """Image -> latent offset (the GAN-inversion encoder E of step 2); linear output."""

    def __init__(self, cin: int = 3, cout: int = 512, size: int = 128, nf: int = 32) -> None:
        super().__init__()
        extra = extra_blocks(size)
        layers: list[nn.Module] = [_down(cin, nf)]
        width = nf
        for _ in range(3 + extra):
            layers.append(ResBlockDown(width, width * 2))
            width *= 2
        layers += [nn.ReLU(), nn.Conv2d(width, width * 2, kernel_size=4, bias=False), nn.ReLU(),
                   nn.Conv2d(width * 2, cout, kernel_size=1, bias=False)]
        self.network = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.network(image).reshape(image.shape[0], -1)


class ShapeNets(nn.Module):
    """The five networks of one GAN2Shape model; state-dict keys are ``<netX>.network.<i>.*``.

    ``nf``/``gn_base`` default to the official values for ``size``; a smaller ``nf`` gives a
    cheaper model for CPUs (such weights are then not interchangeable with official files).
    """

    def __init__(
        self, size: int = 128, nf: int | None = None, gn_base: int | None = None, zdim: int = 256,
        enc_nf: int = 32, latent_dim: int = 512,
    ) -> None:
        super().__init__()
        default_nf, default_gn = official_widths(size)
        nf = nf or default_nf
        gn_base = gn_base or default_gn
        self.size = size
        self.netD = EDDeconv(3, 1, size=size, nf=nf, gn_base=gn_base, zdim=zdim, tanh=False)
        self.netA = EDDeconv(3, 3, size=size, nf=nf, gn_base=gn_base, zdim=zdim)
        self.netV = Encoder(3, 6, size=size, nf=nf)
        self.netL = Encoder(3, 4, size=size, nf=nf)
        self.netEnc = ResEncoder(3, latent_dim, size=size, nf=enc_nf)

    def load_official(self, nets: dict[str, dict[str, torch.Tensor]]) -> None:
        """Load a trainer checkpoint's ``{'netD': state_dict, ...}`` strictly; absent nets are kept."""
        for name in NET_NAMES:
            if name in nets:
                getattr(self, name).load_state_dict(nets[name], strict=True)
