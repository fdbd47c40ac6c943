#!/usr/bin/env python3
"""The MeshInversion start encoder's pose alone on held-out photos, before any optimisation.

    .venv/bin/python benchmarks/bench_encoder_pose.py --split validation --images 128 \
        [--checkpoint runs/mi_encoder/checkpoint.safetensors]

Each photo (``bench_meshinversion.held_out_photos``: lit, over procedural backgrounds, cropped with
the true mask) goes through the shipped encoder, or a training run's checkpoint, exactly as the
inversion's start feeds it; the guessed view is compared with the true camera rotation. Front/back
swaps (errors above 150 deg) are what the optimisation never undoes, so they are counted apart,
with how many of them, and of the other photos, the result would warn about (the encoder's azimuth
confidence below ``UNSURE_POSE_BELOW``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_meshinversion import ROOT, held_out_photos, rotation_error_deg

from backend.methods.meshinversion.encoder import encoder_input
from backend.methods.meshinversion.invert import Targets
from backend.methods.meshinversion.method import UNSURE_POSE_BELOW
from backend.methods.meshinversion.options import Options
from backend.models import default_entry, load_model
from backend.options import preset_options
from backend.render.cameras import quaternion_matrix
from backend.weights import Registry
from workbench.data.car_maps import TEXTURE_SIZE
from workbench.splits import SPLITS

SWAP_DEG = 150.0
CHUNK = 64
"""Photos per encoder batch (bounds memory on 1,000 photos)."""
RENDER_SIZE = preset_options(Options, "fast").render_size
"""The crop side the inversion compares at, from which its start feeds the encoder."""


def pose_errors(split: str, images: int, checkpoint: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """(images,) rotation errors in degrees of the encoder's guessed views, and its confidences."""
    registry = Registry(shipped_dir=ROOT / "weights")
    method = load_model(registry, default_entry(registry, "meshinversion"), "cpu")
    encoder = method.start_encoder()
    if encoder is None:
        raise SystemExit("the default MeshInversion generator has no start encoder")
    if checkpoint is not None:  # a training run's state: the net's weights are stored as net.*
        state = load_file(checkpoint)
        encoder.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
    photos = held_out_photos(images, RENDER_SIZE, TEXTURE_SIZE, split)
    errors, confidence = [], []
    for start in range(0, len(photos), CHUNK):
        chunk = photos[start : start + CHUNK]
        targets = Targets.from_arrays([p["crop"].rgb for p in chunk], [p["crop"].mask for p in chunk], "cpu")
        with torch.no_grad():
            guess = encoder.eval().guess(encoder_input(targets.rgb, targets.mask))
        rotations = quaternion_matrix(guess.view())
        errors += [rotation_error_deg(p["rotation"], rotations[i]) for i, p in enumerate(chunk)]
        confidence += guess.confidence.tolist()
    return np.array(errors), np.array(confidence)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="validation", choices=SPLITS)
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--checkpoint", type=Path, help="a meshinversion-encoder run's checkpoint")
    args = parser.parse_args()
    torch.set_num_threads(1)
    errors, confidence = pose_errors(args.split, args.images, args.checkpoint)
    swaps, unsure = errors > SWAP_DEG, confidence < UNSURE_POSE_BELOW
    print(json.dumps({
        "split": args.split, "images": args.images,
        "within_20_deg": float((errors <= 20).mean()), "median_deg": float(np.median(errors)),
        "swaps": int(swaps.sum()),
        "unsure_below": UNSURE_POSE_BELOW, "swaps_warned": int((swaps & unsure).sum()),
        "others_warned": int((~swaps & unsure).sum()),
        "misses": {int(i): round(float(e)) for i, e in enumerate(errors) if e > 20},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
