"""A feed-forward guess of z and the camera from a photo crop, to start the inversion from.

The published start draws random z and searches a grid of cameras, most of a ``fast`` run's time,
and a wrong front/back choice there is rarely undone. Like nerf-from-image (the successor work by
ConvMesh's author), an encoder trained on the generator's own renders (``workbench.train
meshinversion-encoder``) predicts z and the weak-perspective camera in one pass; the optimisation
then only refines. An encoder fits only the generator it was trained for: its weights entry records
that generator's id and sha256 (``config["generator"]``, ``config["generator_sha256"]``).

Input: the crop as ``crop_to_object`` makes it (object box plus margin, square), at ``INPUT_SIZE``,
colours in [-1, 1] with the background zeroed by the mask, plus the mask: backgrounds never matter.
Output: z, azimuth (as cos, sin), elevation, log scale and translation; the view is built by
``view_quaternion`` exactly as the camera search builds its hypotheses.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from backend.methods.meshinversion.camera_search import view_quaternion

INPUT_SIZE = 128
ENCODER_KIND = "pose_latent_encoder"
"""``config["kind"]`` of an encoder weights entry."""


@dataclass(frozen=True)
class EncoderConfig:
    latent_dim: int = 64
    width: int = 16

    def to_dict(self) -> dict[str, Any]:
        return {"kind": ENCODER_KIND, "latent_dim": self.latent_dim, "width": self.width}

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> EncoderConfig:
        return cls(latent_dim=int(config["latent_dim"]), width=int(config["width"]))


def _block(c_in: int, c_out: int) -> nn.Sequential:
    """Halve the resolution: strided conv, group norm, leaky ReLU, then a 3x3 conv of the same kind."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 4, stride=2, padding=1),
        nn.GroupNorm(8, c_out),
        nn.LeakyReLU(0.2),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.GroupNorm(8, c_out),
        nn.LeakyReLU(0.2),
    )


@dataclass
class Guess:
    """What the inversion takes from the encoder: z (B, latent) and the view. The camera head's
    scale and translation are training targets only: the start places the view on the mask's box."""

    z: torch.Tensor
    azimuth: torch.Tensor  # (B,) radians
    elevation: torch.Tensor  # (B,) radians
    confidence: torch.Tensor
    """(B,) the length of the predicted (cos, sin) of the azimuth, about 1 where the encoder is sure:
    regression shrinks it towards 0 between two likely answers, such as a car's front and back."""

    def view(self) -> torch.Tensor:
        """(B, 4) quaternions of the guessed views, built as the camera search builds its hypotheses."""
        return view_quaternion(self.azimuth, self.elevation)


class PoseLatentEncoder(nn.Module):
    """(B, 4, 128, 128) masked crop + mask -> z and camera; five halvings to 4x4, then linear heads."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.config = config
        w = config.width
        widths = (4, w, 2 * w, 4 * w, 8 * w, 8 * w)
        self.trunk = nn.Sequential(*(_block(a, b) for a, b in pairwise(widths)))
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(8 * w * 16, 512), nn.LeakyReLU(0.2))
        self.head_z = nn.Linear(512, config.latent_dim)
        self.head_camera = nn.Linear(512, 6)  # cos az, sin az, elevation, log scale, tx, ty

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, camera head) as trained: the head's (cos az, sin az, elevation, log scale, tx, ty)."""
        features = self.fc(self.trunk(x))
        return self.head_z(features), self.head_camera(features)

    def guess(self, x: torch.Tensor) -> Guess:
        z, camera = self(x)
        return Guess(
            z=z, azimuth=torch.atan2(camera[:, 1], camera[:, 0]), elevation=camera[:, 2],
            confidence=camera[:, :2].norm(dim=1),
        )  # fmt: skip


def encoder_input(rgb: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, 3, S, S) colours in [-1, 1] and (B, S, S) masks -> (B, 4, 128, 128): colours zeroed
    outside the mask, then the mask; area-averaged (or bilinearly enlarged) to ``INPUT_SIZE``."""
    m = mask[:, None].to(rgb.dtype)
    x = torch.cat([rgb * m, m], dim=1)
    if x.shape[-1] > INPUT_SIZE:
        return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="area")
    return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
