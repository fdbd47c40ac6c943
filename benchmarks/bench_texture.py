#!/usr/bin/env python3
"""Cost of MeshInversion's texture stage (bake the photo into the UV map, mirror, fill) by size.

Reconstructs one photo once (``fast``), then times ``MeshInversion.final_texture`` for each
texture size and mode, and reports the process's peak resident memory after the largest one.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_texture.py --out benchmarks/texture_stage.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from backend.inputs import MIN_SIDE, crop_to_object, load_input, photo_side  # noqa: E402
from backend.methods.meshinversion.invert import InversionSettings  # noqa: E402
from backend.methods.meshinversion.options import Options  # noqa: E402
from backend.models import default_entry, load_model  # noqa: E402
from backend.options import preset_options  # noqa: E402
from backend.weights import Registry  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=str(ROOT / "examples" / "car_01.png"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "texture_stage.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    registry = Registry()
    entry = default_entry(registry, "meshinversion")
    method = load_model(registry, entry, "cpu")
    preset = preset_options(Options, "fast")
    settings = InversionSettings.from_options(preset)
    image = load_input(args.image, "auto", None, None)
    crop = crop_to_object(image, settings.render_size, preset.crop_margin)
    photo = crop_to_object(image, photo_side(image, crop.box[2], MIN_SIDE), preset.crop_margin)
    result = method.inverter(settings).run([crop.rgb], [crop.mask], 0, lambda *a, **k: None)[0]
    rows = []
    for size in args.sizes:
        for mode in ("projected", "blended"):
            options = dataclasses.replace(preset, texture=mode, texture_size=size)
            seconds = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                method.final_texture(result, photo, options)
                seconds.append(time.perf_counter() - started)
            rows.append({"size": size, "mode": mode, "median_s": statistics.median(seconds)})
            print(rows[-1], flush=True)
    report = {
        "image": Path(args.image).name,
        "photo_pixels": int(photo.mask.shape[0]),
        "rows": rows,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print("peak RSS MB", round(report["peak_rss_mb"]), "->", args.out)


if __name__ == "__main__":
    main()
