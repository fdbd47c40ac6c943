"""The committed data: held-out evaluation renders (``examples/eval/``) and demo photos (``examples/``).

Both come from evaluation-split seeds only (never used in training) and are reproducible:
``python -m workbench.train make-eval`` and ``python -m workbench.train make-examples`` rewrite them,
bit-for-bit on the same CPU, up to float rounding (a few pixels by one level) on another.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from workbench.data.render_sample import RenderedCars, render_cars
from workbench.splits import EVAL_SEED_START, eval_seeds

EVAL_COUNT = 24
CHUNK = 4
"""Cars rendered per batch: every car is rendered in the same chunk whatever the set size, so a
smaller regeneration reproduces a prefix of the committed set exactly."""
EXAMPLE_SEEDS = [EVAL_SEED_START + 500 + i for i in range(4)]
"""Demo photos: held-out seeds beyond the eval set, so demo and evaluation never share a car."""
EXAMPLE_SIZE = 384


def render_chunked(seeds: list[int], size: int) -> RenderedCars:
    """Render in fixed chunks of CHUNK seeds and concatenate (faces are shared)."""
    parts = [render_cars(seeds[i : i + CHUNK], size) for i in range(0, len(seeds), CHUNK)]
    merged = {}
    for name in RenderedCars.__dataclass_fields__:
        arrays = [getattr(p, name) for p in parts]
        merged[name] = arrays[0] if name == "faces" else np.concatenate(arrays)
    return RenderedCars(**merged)


def _save_png(image: np.ndarray, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.png")
    Image.fromarray(image).save(tmp, optimize=False)
    os.replace(tmp, path)


def write_eval_set(out: Path, count: int = EVAL_COUNT, size: int = 256) -> Path:
    """Write ``car_eval_NNN.png`` images and ``ground_truth.npz`` (masks, depth, cameras, lights,
    meshes, UV maps) for the first ``count`` held-out seeds."""
    out.mkdir(parents=True, exist_ok=True)
    seeds = eval_seeds(count)
    cars = render_chunked(seeds, size)
    for i, image in enumerate(cars.image):
        _save_png(image, out / f"car_eval_{i:03d}.png")
    arrays = {name: getattr(cars, name) for name in RenderedCars.__dataclass_fields__ if name != "image"}
    target = out / "ground_truth.npz"
    tmp = out / f".ground_truth.tmp{os.getpid()}.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, target)
    return target


def write_examples(out: Path) -> list[Path]:
    """Demo photos: ``car_01.png`` .. ``car_03.png`` with backgrounds and ``car_04_alpha.png`` whose
    alpha channel is the ground-truth mask."""
    out.mkdir(parents=True, exist_ok=True)
    cars = render_chunked(EXAMPLE_SEEDS, EXAMPLE_SIZE)
    paths = []
    for i, image in enumerate(cars.image[:-1]):
        paths.append(out / f"car_{i + 1:02d}.png")
        _save_png(image, paths[-1])
    alpha = cars.mask[-1].astype(np.uint8)[..., None] * 255
    paths.append(out / f"car_{len(EXAMPLE_SEEDS):02d}_alpha.png")
    _save_png(np.concatenate([cars.image[-1], alpha], -1), paths[-1])
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="regenerate the held-out evaluation set")
    parser.add_argument("--out", default="examples/eval")
    parser.add_argument("--count", type=int, default=EVAL_COUNT)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    print(write_eval_set(Path(args.out), args.count))


def main_examples(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="regenerate the demo photos")
    parser.add_argument("--out", default="examples")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    for path in write_examples(Path(args.out)):
        print(path)
