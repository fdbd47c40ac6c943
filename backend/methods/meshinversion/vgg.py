"""VGG19 up to relu3_1, laid out like torchvision's ``vgg19().features`` so its state dict loads.

MeshInversion's feature-level texture loss compares relu3_1 features (256 channels at 1/4 of the
input size) of the rendering and the photo. The ImageNet weights are not shipped; a user imports
torchvision's ``vgg19-dcbb9e9d.pth`` (``weights import FILE --method meshinversion --category
vgg19``) and the loss switches on. torchvision itself is not needed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RELU3_1_LAYERS = 12
"""``features[0:12]``: conv1_1 .. relu3_1 (two 2x2 max-pools, so 1/4 resolution)."""
CONV_INDICES = (0, 2, 5, 7, 10)
CONV_CHANNELS = ((3, 64), (64, 64), (64, 128), (128, 128), (128, 256))
VGG_CONFIG = {"network": "vgg19_relu3_1"}
"""The ``config`` table of a VGG19 entry in the weights store."""


class VGG19Relu31(nn.Module):
    """``features.{0,2,5,7,10}`` convolutions with ReLUs and max-pools at torchvision's indices."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        convs = iter(CONV_CHANNELS)
        for index in range(RELU3_1_LAYERS):
            if index in CONV_INDICES:
                layers.append(nn.Conv2d(*next(convs), kernel_size=3, padding=1))
            elif index in (4, 9):
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers.append(nn.ReLU())
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] and (B, 1, H, W) mask -> (B, 256, H/4, W/4) relu3_1 features.

        As in the official loss the input is ImageNet-normalised and then multiplied by the mask,
        so the background does not leak into the object's features.
        """
        normalised = ((image / 2 + 0.5) - self.mean) / self.std
        return self.features(normalised * mask)


def vgg_state_from_torchvision(raw: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The relu3_1 part of a torchvision ``vgg19`` state dict (``features.N.*``; classifier dropped)."""
    state = raw.get("state_dict", raw)
    state = {str(k).removeprefix("module."): v for k, v in state.items()}
    wanted = [f"features.{i}.{p}" for i in CONV_INDICES for p in ("weight", "bias")]
    missing = [k for k in wanted if k not in state]
    if missing:
        raise KeyError(f"tensor {missing[0]!r} is missing: not a torchvision vgg19 state dict")
    expected = VGG19Relu31().state_dict()
    for key in wanted:
        if tuple(state[key].shape) != tuple(expected[key].shape):
            raise ValueError(
                f"tensor {key!r} has shape {list(state[key].shape)}, expected {list(expected[key].shape)}"
            )
    if "features.34.weight" not in state:
        raise ValueError("the file has no features.34 layer: it is not VGG19 (VGG16 has 13 convolutions)")
    return {k: state[k].detach().float().contiguous() for k in wanted}
