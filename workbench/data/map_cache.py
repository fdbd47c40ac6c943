"""A cache of training cars' UV-space maps: computed once in batches, stored compactly as ``.npz``.

Only the x >= 0 halves are stored (the maps are exactly symmetric): textures as uint8 (N, 3, T, T/2),
the normal displacement as float16 (N, 32, 16). ``load`` mirrors them back to full maps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from workbench.data.car_maps import DISPLACEMENT_SIZE, TEXTURE_SIZE, car_maps
from workbench.data.uv_grid import half_columns, mirror_half
from workbench.splits import check_training_seeds


@dataclass
class MapCache:
    """Half maps of ``seeds``; ``full_batch`` turns rows into generator-shaped full maps."""

    seeds: np.ndarray  # (N,) int64
    texture_half: np.ndarray  # (N, 3, T, T/2) uint8
    normal_half: np.ndarray  # (N, 32, 16) float16

    def __len__(self) -> int:
        return len(self.seeds)

    def full_batch(self, rows: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Textures (B, 3, T, T) in [-1, 1] and displacement maps (B, 3, 32, 32) of ``rows``."""
        idx = rows.cpu().numpy()
        tex = torch.from_numpy(self.texture_half[idx]).to(device).float() / 127.5 - 1
        normal = torch.from_numpy(self.normal_half[idx]).to(device).float()
        disp = mirror_half(normal)[:, None]
        return mirror_half(tex), torch.cat([disp, torch.zeros_like(disp), torch.zeros_like(disp)], 1)


TRAINING_CARS = 1536
"""Training cars (seeds 0..N-1) of the demo mesh GAN's map cache, and so of a cache built by default."""


def build_cache(path: Path, count: int, first_seed: int = 0, batch: int = 16,
                texture_size: int = TEXTURE_SIZE) -> MapCache:
    """Compute the maps of training cars ``first_seed ..`` in batches and save them to ``path``."""
    seeds = list(range(first_seed, first_seed + count))
    check_training_seeds(seeds)
    return cache_seeds(path, seeds, batch, texture_size)


def cache_seeds(path: Path, seeds: list[int], batch: int = 16, texture_size: int = TEXTURE_SIZE) -> MapCache:
    """The maps of the cars ``seeds`` (any split: the caller checks which), computed in batches and
    saved atomically to ``path``."""
    tex_parts, normal_parts = [], []
    start = time.time()
    for i in range(0, len(seeds), batch):
        maps = car_maps(seeds[i : i + batch], texture_size)
        tex = maps.texture[..., half_columns(texture_size)]
        tex_parts.append((tex * 255).round().to(torch.uint8).numpy())
        normal_parts.append(maps.displacement[:, 0, :, half_columns(DISPLACEMENT_SIZE)].half().numpy())
        done = min(i + batch, len(seeds))
        print(f"cache: {done}/{len(seeds)} cars, {time.time() - start:.0f} s", flush=True)
    cache = MapCache(np.asarray(seeds, np.int64), np.concatenate(tex_parts), np.concatenate(normal_parts))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, seeds=cache.seeds, texture_half=cache.texture_half, normal_half=cache.normal_half)
    tmp.replace(path)
    return cache


def load_cache(path: Path) -> MapCache:
    """Read a cache written by ``build_cache``."""
    with np.load(path) as data:
        return MapCache(data["seeds"], data["texture_half"], data["normal_half"])
