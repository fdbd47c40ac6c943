"""Tiny, randomly initialised but real method weights for end-to-end job tests.

Each helper writes a real safetensors file plus a user manifest entry into ``root`` and returns
the weights id and the option overrides that make one job take a few seconds on one CPU core.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from backend.weights import WeightsEntry, read_manifest, write_manifest

GAN2SHAPE_FAST = {
    "num_stages": 1, "stage0": [2, 2, 2], "invert_steps": 3, "collect_iters": 1, "prior_iters": 2,
    "batch": 1, "net_width": 8, "mesh_resolution": 8, "preview_every": 1,
}  # fmt: skip
"""Every GAN2Shape stage runs, each for a couple of steps."""


def write_entry(
    root: Path, weights_id: str, method: str, tensors: dict[str, torch.Tensor], config: dict,
    source: str = "random initialisation (test)", category: str = "car", **fields: Any,
) -> WeightsEntry:
    """Write ``tensors`` as a safetensors file and add its entry to ``root``'s user manifest."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{weights_id}.safetensors"
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, path)
    entry = WeightsEntry(
        id=weights_id,
        method=method,
        category=category,
        file=path.name,
        sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
        size=path.stat().st_size,
        source=source,
        licence="MIT",
        config=config,
        root=root,
        origin="user",
        **fields,
    )
    write_manifest(root, [*read_manifest(root, "user"), entry])
    return entry


def register(root: Path, weights_id: str, method: str, tensors: dict[str, torch.Tensor], config: dict) -> str:
    return write_entry(root, weights_id, method, tensors, config).id


def tiny_gan2shape(root: Path, weights_id: str = "tiny-g2s") -> tuple[str, dict[str, Any]]:
    """A 64 px StyleGAN2 with 16 channels (the smallest size the GAN2Shape nets accept)."""
    from backend.methods.gan2shape.stylegan2 import Discriminator, Generator, StyleGAN2Config

    config = StyleGAN2Config(
        size=64, style_dim=32, n_mlp=2, channel_multiplier=1, channel_base=256, channel_max=16
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        generator, discriminator = Generator(config), Discriminator(config)
    tensors = {
        **{f"g_ema.{k}": v for k, v in generator.state_dict().items()},
        **{f"d.{k}": v for k, v in discriminator.state_dict().items()},
    }
    return register(root, weights_id, "gan2shape", tensors, config.to_dict()), dict(GAN2SHAPE_FAST)


MESHINVERSION_FAST = {
    "render_size": 32, "z_candidates": 2, "rendered_candidates": 1, "azimuths": 2, "elevations": [0.0],
    "camera_keep": 1, "camera_refine_steps": 1, "stages": [[2, 0.1, 0.01]], "chamfer_points": 64,
}  # fmt: skip
"""Candidate search, camera search and one short optimisation stage at 32 px."""


def tiny_generator_state(seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A ConvMesh generator at 1/32 of the official width (16k parameters) and its config."""
    from backend.methods.meshinversion.generator import Generator, GeneratorConfig

    config = GeneratorConfig(latent_dim=8, texture_resolution=256, width=1 / 32)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        generator = Generator(config)
    return generator.state_dict(), config.to_dict()


def tiny_meshinversion(root: Path, weights_id: str = "tiny-mi") -> tuple[str, dict[str, Any]]:
    tensors, config = tiny_generator_state()
    return register(root, weights_id, "meshinversion", tensors, config), dict(MESHINVERSION_FAST)


TINY_MODELS = {"meshinversion": tiny_meshinversion, "gan2shape": tiny_gan2shape}


def object_photo(path: Path) -> Path:
    """An RGBA image: a red box on a grey, transparent background (alpha gives the mask)."""
    image = np.zeros((64, 80, 4), np.uint8)
    image[..., :3] = 90
    image[16:48, 20:60] = (200, 50, 50, 255)
    Image.fromarray(image).save(path)
    return path
