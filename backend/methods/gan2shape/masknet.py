"""Object-mask network for GAN samples of a category (the role of GAN2Shape's parsing networks).

The official method segments its StyleGAN samples with large pretrained parsers (PSPNet on VOC for
cars, BiSeNet for faces). For the demo category a small U-Net trained on the ground-truth masks of
the procedural renders does the same job at a fraction of the cost. Input images are in [-1, 1]
at any size (resized to the network's size and back); output is a soft mask in [0, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class MaskNetConfig:
    """Architecture (the ``config`` table of a mask weights entry)."""

    size: int = 64
    width: int = 8
    depth: int = 3

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, table: dict[str, Any]) -> MaskNetConfig:
        names = cls.__dataclass_fields__.keys()
        return cls(**{k: int(v) for k, v in table.items() if k in names})


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 conv + GroupNorm + ReLU: enough receptive field per level, stable at small batches."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.GroupNorm(4, cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.GroupNorm(4, cout),
        nn.ReLU(inplace=True),
    )


class MaskNet(nn.Module):
    """U-Net: ``depth`` down-samplings, channels doubling from ``width``, skip connections, 1 logit map."""

    def __init__(self, config: MaskNetConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.width * 2**i for i in range(config.depth + 1)]
        self.down = nn.ModuleList([conv_block(3, widths[0])])
        self.down.extend(conv_block(widths[i], widths[i + 1]) for i in range(config.depth))
        self.up = nn.ModuleList(
            conv_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(config.depth))
        )
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Mask logits (B, 1, size, size) for images (B, 3, size, size) in [-1, 1]."""
        skips = []
        x = images
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = block(torch.cat([F.interpolate(x, scale_factor=2.0, mode="bilinear"), skip], dim=1))
        return self.head(x)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Soft masks (B, 1, H, W) in [0, 1] for images (B, 3, H, W) in [-1, 1] of any size."""
        size = self.config.size
        h, w = images.shape[-2:]
        x = images if (h, w) == (size, size) else F.interpolate(images, size=(size, size), mode="area")
        probs = torch.sigmoid(self(x))
        return probs if (h, w) == (size, size) else F.interpolate(probs, size=(h, w), mode="bilinear")


def load_masknet(
    config: MaskNetConfig, state_dict: dict[str, torch.Tensor], device: torch.device | str
) -> MaskNet:
    """A mask network loaded strictly, frozen and in eval mode on ``device``."""
    net = MaskNet(config)
    net.load_state_dict(state_dict, strict=True)
    return net.to(device).eval().requires_grad_(False)
