"""A small random generator that behaves like a trained one (finite, moderate outputs) and photos
rendered from it with a known latent and camera."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from backend.methods.base import AuxiliaryWeights
from backend.methods.meshinversion.camera_search import WeakPerspective, view_quaternion
from backend.methods.meshinversion.generator import Generator, GeneratorConfig
from backend.methods.meshinversion.mesh_gan import MeshGAN

NO_AUXILIARY = AuxiliaryWeights(entries=list, read=lambda entry: {})
"""For a method loaded without a weights store: no auxiliary entries."""


def small_generator(n_classes: int = 0, seed: int = 0, n_colors: int = 0) -> Generator:
    """Width 1/16, 256 px texture; a few train-mode passes settle the spectral norms and BN statistics,
    without which an untrained generator's eval-mode outputs explode."""
    torch.manual_seed(seed)
    config = GeneratorConfig(n_classes=n_classes, n_colors=n_colors, texture_resolution=256, width=1 / 16)
    generator = Generator(config)
    torch.nn.init.normal_(generator.conv_mesh.weight, std=0.01)
    generator.train()
    with torch.no_grad():
        for _ in range(30):
            labels = torch.randint(0, max(n_classes, 1), (8,)) if n_classes else None
            if n_colors:
                labels = torch.stack((labels, torch.randint(0, n_colors, (8,))), dim=1)
            generator(torch.randn(8, 64), labels)
    return generator.eval()


def small_method(root: Path) -> Any:
    """The MeshInversion method loaded with ``small_generator()`` as a user entry under ``root``."""
    from backend.methods.meshinversion import METHOD

    generator = small_generator()
    entry = argparse.Namespace(
        config=generator.config.to_dict(), id="small", root=root, origin="user", category="car"
    )
    return METHOD.load(entry, generator.state_dict(), "cpu", NO_AUXILIARY)


def render_photo(
    model: MeshGAN,
    z: torch.Tensor,
    azimuth_deg: float,
    elevation_deg: float,
    size: int,
    label: int | None = None,
    background: float = 0.9,
) -> tuple[np.ndarray, np.ndarray, WeakPerspective]:
    """(rgb (S, S, 3) in [0, 1] on a flat background, mask (S, S) float, the true camera)."""
    camera = WeakPerspective(
        view_quaternion(torch.tensor([azimuth_deg]).deg2rad(), torch.tensor([elevation_deg]).deg2rad()),
        torch.tensor([0.6]),
        torch.tensor([[0.05, -0.04]]),
    )
    labels = None if label is None else torch.tensor([label])
    with torch.no_grad():
        texture, vertices = model.generate(z, labels)
        rendering = model.render(vertices, texture, camera, size)
    mask = rendering.mask[0]
    rgb = torch.where(mask, (rendering.rgb[0] + 1) / 2, torch.full_like(rendering.rgb[0], background))
    return rgb.permute(1, 2, 0).numpy(), mask.float().numpy(), camera
