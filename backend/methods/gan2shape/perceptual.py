"""LPIPS-style perceptual distance on VGG16 features, without torchvision.

GAN2Shape weighs an LPIPS (v0.1, VGG) term at 0.5 next to the L1 photometric loss. VGG16
ImageNet weights cannot ship with the project, so the user imports them (a torchvision
``vgg16`` state dict); without them the term is switched off by the caller. The layer list
below reproduces torchvision's ``vgg16().features`` indices so such a state dict loads as is.
The optional LPIPS linear heads (``lin0..lin4.model.1.weight``) load too; without them every
channel weighs the same (the channel mean of the normalised squared differences).
"""

from __future__ import annotations

import torch
from torch import nn

VGG16_LAYOUT: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                                       512, 512, 512)
"""Conv widths and max-pools of VGG16 up to relu5_3 (the last pool is never needed)."""
TAP_LAYERS = (3, 8, 15, 22, 29)
"""``features`` indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (the LPIPS taps)."""
TAP_WIDTHS = (64, 128, 256, 512, 512)
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
"""LPIPS's input scaling layer: maps [-1, 1] images to ImageNet statistics."""


def vgg16_features() -> nn.Sequential:
    """Layers in torchvision's order, so ``features.<i>.weight`` keys line up."""
    layers: list[nn.Module] = []
    width = 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(width, int(item), kernel_size=3, padding=1), nn.ReLU()]
            width = int(item)
    return nn.Sequential(*layers)


def split_vgg_state(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``features.*`` part of a torchvision ``vgg16`` state dict (classifier weights are unused)."""
    features = {k.removeprefix("features."): v for k, v in raw.items() if k.startswith("features.")}
    if not features:
        raise ValueError("not a torchvision vgg16 state dict: no 'features.*' keys")
    return features


class PerceptualDistance(nn.Module):
    """Frozen LPIPS(VGG16) distance between image batches in [-1, 1]; returns one value per image."""

    def __init__(self) -> None:
        super().__init__()
        self.features = vgg16_features()
        self.lins = nn.ModuleList(nn.Conv2d(w, 1, kernel_size=1, bias=False) for w in TAP_WIDTHS)
        for lin, width in zip(self.lins, TAP_WIDTHS, strict=True):
            nn.init.constant_(lin.weight, 1.0 / width)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_state_dicts(
        cls, vgg: dict[str, torch.Tensor], lpips: dict[str, torch.Tensor] | None = None
    ) -> PerceptualDistance:
        """Build from a torchvision vgg16 state dict and, optionally, LPIPS v0.1 ``lin*`` heads (strict)."""
        model = cls()
        model.features.load_state_dict(split_vgg_state(vgg), strict=True)
        if lpips is not None:
            heads = {}
            for i in range(len(TAP_WIDTHS)):
                key = f"lin{i}.model.1.weight"
                if key not in lpips:
                    raise KeyError(f"LPIPS weights lack {key!r}")
                heads[f"{i}.weight"] = lpips[key]
            model.lins.load_state_dict(heads, strict=True)
        return model

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        x = (torch.cat([a, b]) - self.shift) / self.scale
        total = x.new_zeros(a.shape[0])
        taps = iter(zip(TAP_LAYERS, self.lins, strict=True))
        tap, lin = next(taps)
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index == tap:
                fa, fb = x.chunk(2)
                diff = (unit_channels(fa) - unit_channels(fb)).square()
                total = total + lin(diff).mean(dim=(1, 2, 3))
                tap, lin = next(taps, (None, None))
                if tap is None:
                    break
        return total


def unit_channels(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Normalise every spatial feature vector to unit length, as LPIPS does before differencing."""
    return features / (features.square().sum(dim=1, keepdim=True).sqrt() + eps)


def masked_perceptual(
    distance: PerceptualDistance | None, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """GAN2Shape's use: both images multiplied by the mask, batch mean; 0 when the term is off."""
    if distance is None:
        return a.new_zeros(())
    return distance(a * mask, b * mask).mean()

