"""A tiny, randomly initialised StyleGAN2 registered as GAN2Shape weights, and a synthetic photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from backend.inputs import InputImage
from backend.methods.gan2shape.stylegan2 import Discriminator, Generator, StyleGAN2Config, flatten_checkpoint
from backend.weights import WeightsEntry, sha256_file, write_manifest

TINY = StyleGAN2Config(size=64, style_dim=32, n_mlp=4, channel_multiplier=1, channel_base=512, channel_max=32)


def tiny_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return flatten_checkpoint({"g_ema": Generator(TINY).state_dict(), "d": Discriminator(TINY).state_dict()})


@pytest.fixture
def tiny_entry(tmp_path: Path) -> tuple[WeightsEntry, dict[str, torch.Tensor]]:
    """The tiny GAN written and registered in a private user weights folder (no extras there)."""
    state = tiny_state()
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    entry = WeightsEntry(
        id="tiny-car", method="gan2shape", category="car", file=path.name, sha256=sha256_file(path),
        size=path.stat().st_size, source="test", licence="test", config=TINY.to_dict(), root=tmp_path,
        origin="user",
    )
    write_manifest(tmp_path, [entry])
    return entry, state


def ellipse_photo(width: int = 96, height: int = 72) -> InputImage:
    """A shaded red ellipse (a lit bump) on grey, with its exact mask."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    u, v = (xx - width / 2) / (width * 0.35), (yy - height / 2) / (height * 0.3)
    r2 = u**2 + v**2
    mask = r2 < 1
    shade = np.sqrt(np.clip(1 - r2, 0, 1))[..., None]
    rgb = np.full((height, width, 3), 0.6, np.float32)
    rgb = np.where(mask[..., None], np.array([0.8, 0.2, 0.2], np.float32) * (0.4 + 0.6 * shade), rgb)
    return InputImage(rgb.astype(np.float32), mask, "ellipse.png", [], (width, height))


TINY_OPTIONS = {
    "invert_steps": 6, "prior_iters": 8, "num_stages": 2, "stage0": (6, 5, 6), "later": (3, 3, 3), "batch": 2,
    "collect_iters": 2, "net_width": 16, "mesh_resolution": 24, "preview_every": 4,
}
"""A schedule short enough for unit tests; every mechanism still runs."""
