#!/usr/bin/env python3
"""Object-mask accuracy: IoU against the true mask for the salient-object net (U^2-Net-p), GrabCut
and the GAN2Shape demo mask net, on procedural car photos without an alpha channel.

``--split validation``: the salient net's threshold sweep, with and without the clean-up (one
connected component, holes filled), on held-out validation renders (``render_cars`` with
``split_seeds("validation", n)``, 256 px like the eval set): the numbers
``backend.salient_mask.THRESHOLD`` was chosen by. Writes ``benchmarks/masks_validation.json``.
``--split eval``: each source as the backend runs it, on the 24 committed eval photos
(``examples/eval``); measured once, never tuned on. Writes ``benchmarks/masks.json``.
Either run rewrites ``benchmarks/MASKS.md`` from both JSON files.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_masks.py --split validation --images 16
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_masks.py --split eval
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from machine import machine  # noqa: E402
from PIL import Image  # noqa: E402

from backend import salient_mask  # noqa: E402
from backend.inputs import grabcut_mask  # noqa: E402
from backend.methods.gan2shape.masknet import MaskNet, MaskNetConfig, load_masknet  # noqa: E402
from backend.weights import Registry  # noqa: E402
from workbench.data.render_sample import render_cars  # noqa: E402
from workbench.splits import split_seeds  # noqa: E402

THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
PHOTO_SIZE = 256
"""The eval set's size; validation renders are made at the same size."""
BENCH = ROOT / "benchmarks"
VALIDATION_JSON = BENCH / "masks_validation.json"
EVAL_JSON = BENCH / "masks.json"


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    return float((predicted & truth).sum() / max(1, (predicted | truth).sum()))


def validation_photos(count: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Rendered validation cars: RGB (N, H, W, 3) float32 in [0, 1], true masks (N, H, W), seeds."""
    seeds = split_seeds("validation", count)
    parts = [render_cars(seeds[i : i + 4], PHOTO_SIZE) for i in range(0, count, 4)]
    rgb = np.concatenate([p.image for p in parts]).astype(np.float32) / 255
    return rgb, np.concatenate([p.mask for p in parts]).astype(bool), seeds


def eval_photos() -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The committed eval photos (``examples/eval``) and their true masks."""
    truth = np.load(ROOT / "examples" / "eval" / "ground_truth.npz")
    paths = [ROOT / "examples" / "eval" / f"car_eval_{i:03d}.png" for i in range(len(truth["mask"]))]
    rgb = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32) / 255 for p in paths])
    return rgb, truth["mask"].astype(bool), [int(s) for s in truth["seeds"]]


def demo_masknet() -> MaskNet:
    """The GAN2Shape demo car mask network, from the shipped weights registry."""
    registry = Registry()
    entry = next(e for e in registry.entries() if e.method == "gan2shape" and e.config.get("kind") == "mask")
    return load_masknet(MaskNetConfig.from_dict(entry.config), registry.load_state_dict(entry, "cpu"), "cpu")


def masknet_source() -> Source:
    """The demo mask net on the whole photo (resized to its 64 px and back), at 0.5 as GAN2Shape uses it."""
    net = demo_masknet()

    def predict(rgb: np.ndarray) -> np.ndarray:
        image = torch.from_numpy(rgb).permute(2, 0, 1)[None] * 2 - 1
        return net.predict(image)[0, 0].numpy() >= 0.5

    return predict


Source = Callable[[np.ndarray], np.ndarray]


def timed(source: Source, rgb: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
    """Masks of every photo and the seconds each took (wall)."""
    masks, seconds = [], []
    for image in rgb:
        start = time.perf_counter()
        masks.append(source(image))
        seconds.append(time.perf_counter() - start)
    return masks, seconds


def summary(ious: list[float], seconds: list[float] | None = None) -> dict:
    row = {
        "mean_iou": round(float(np.mean(ious)), 4),
        "min_iou": round(float(np.min(ious)), 4),
        "per_image": [round(v, 4) for v in ious],
    }
    if seconds is not None:
        row["mean_seconds"] = round(float(np.mean(seconds)), 3)
    return row


def validation_report(count: int) -> dict:
    """The salient net's sweep (raw threshold and with the clean-up), GrabCut and the demo net beside it."""
    rgb, truth, seeds = validation_photos(count)
    soft, seconds = timed(salient_mask.soft_mask, rgb)
    sweep = []
    for threshold in THRESHOLDS:
        raw = [iou(s >= threshold, t) for s, t in zip(soft, truth, strict=True)]
        clean = [iou(salient_mask.one_object(s >= threshold), t) for s, t in zip(soft, truth, strict=True)]
        sweep.append({"threshold": threshold, "raw": summary(raw), "cleaned": summary(clean)})
    best = max(sweep, key=lambda row: row["cleaned"]["mean_iou"])
    baselines = {name: scored(source, rgb, truth) for name, source in baseline_sources().items()}
    return {
        "split": "validation",
        "seeds": seeds,
        "salient_seconds": round(float(np.mean(seconds)), 3),
        "sweep": sweep,
        "best_threshold_cleaned": best["threshold"],
        "baselines": baselines,
        "machine": machine(),
    }


def baseline_sources() -> dict[str, Source]:
    return {"grabcut": grabcut_mask, "masknet": masknet_source()}


def scored(source: Source, rgb: np.ndarray, truth: np.ndarray) -> dict:
    """IoU summary and mean seconds of ``source`` over the photos."""
    masks, seconds = timed(source, rgb)
    return summary([iou(m, t) for m, t in zip(masks, truth, strict=True)], seconds)


def eval_report() -> dict:
    """Each source as the backend runs it: salient at ``THRESHOLD`` with the clean-up, GrabCut from its
    default centred box, the demo mask net at 0.5."""
    rgb, truth, seeds = eval_photos()
    sources = {"salient": salient_mask.object_mask, **baseline_sources()}
    rows = {name: scored(source, rgb, truth) for name, source in sources.items()}
    return {
        "split": "eval",
        "seeds": seeds,
        "threshold": salient_mask.THRESHOLD,
        "sources": rows,
        "machine": machine(),
    }


SOURCE_NAMES = {
    "salient": "salient-object net (U^2-Net-p, `--mask salient`, what `auto` uses without alpha)",
    "grabcut": "GrabCut from the default centred box (`--mask grabcut`)",
    "masknet": "GAN2Shape demo mask net (64 px, threshold 0.5)",
}


MASKNET_NOTE = (
    "The demo mask net was trained on GAN2Shape's car renders on plain grey backgrounds\n"
    "(`workbench/data/gan2shape_renders.py`), the images it segments inside GAN2Shape; on photos\n"
    "with busy backgrounds it is no object mask, and it is listed only for comparison."
)


def validation_markdown(report: dict) -> list[str]:
    lines = [
        f"## Validation: threshold sweep ({len(report['seeds'])} cars, seeds {report['seeds'][0]}"
        f"-{report['seeds'][-1]})", "",
        "IoU of the salient net's soft mask at each threshold, raw and after the clean-up (the largest",
        "connected component, holes filled), against the render's true mask.", "",
        "| threshold | raw mean | raw min | cleaned mean | cleaned min |", "|---|---|---|---|---|",
    ]  # fmt: skip
    for row in report["sweep"]:
        raw, clean = row["raw"], row["cleaned"]
        lines.append(f"| {row['threshold']} | {raw['mean_iou']:.4f} | {raw['min_iou']:.4f} | "
                     f"{clean['mean_iou']:.4f} | {clean['min_iou']:.4f} |")  # fmt: skip
    lines += ["", f"Best cleaned mean: threshold {report['best_threshold_cleaned']}.", "",
              "Beside it on the same cars:", ""]  # fmt: skip
    for name, row in report["baselines"].items():
        lines.append(f"- {SOURCE_NAMES[name]}: mean {row['mean_iou']:.4f}, min {row['min_iou']:.4f}")
    seconds = report["salient_seconds"]
    lines += ["", f"Salient net: {seconds} s per photo ({report['threads']} thread(s)).", ""]
    return lines


def eval_markdown(report: dict) -> list[str]:
    lines = [
        f"## Evaluation split ({len(report['seeds'])} photos of `examples/eval`, measured once)", "",
        f"Salient net at threshold {report['threshold']} with the clean-up, as the backend runs it.", "",
        "| source | mean IoU | median IoU | min IoU | s / photo |", "|---|---|---|---|---|",
    ]  # fmt: skip
    for name, row in report["sources"].items():
        median = float(np.median(row["per_image"]))
        lines.append(f"| {SOURCE_NAMES[name]} | {row['mean_iou']:.4f} | {median:.4f} | "
                     f"{row['min_iou']:.4f} | {row['mean_seconds']:.3f} |")  # fmt: skip
    lines += ["", "Photos below IoU 0.9 (`car_eval_NNN`: IoU):", ""]
    for name, row in report["sources"].items():
        low = [f"{i:03d}: {v:.3f}" for i, v in enumerate(row["per_image"]) if v < 0.9]
        lines.append(f"- {name}: {', '.join(low) or 'none'}")
    lines += ["", MASKNET_NOTE]
    m = report["machine"]
    lines += ["", f"Machine: {m['cpu_model']}, {m['cpus']} cores, {m['torch_threads']} thread(s), load "
              f"average before the run {m['load_average']} (other jobs shared the CPU: times are "
              "pessimistic).", ""]  # fmt: skip
    return lines


def markdown(validation: dict | None, evaluation: dict | None) -> str:
    lines = [
        "# Object masks", "",
        "Mask IoU against the true mask on procedural car photos without an alpha channel (256 px).",
        "The salient net's threshold was chosen on the validation split only; the eval split is",
        "measured once.", "",
        "Commands:", "",
        "    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_masks.py --split validation --images 16",
        "    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_masks.py --split eval", "",
    ]  # fmt: skip
    if validation:
        lines += validation_markdown(validation)
    if evaluation:
        lines += eval_markdown(evaluation)
    return "\n".join(lines)


def read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("validation", "eval"), default="eval")
    parser.add_argument("--images", type=int, default=16, help="validation cars (eval uses all 24)")
    args = parser.parse_args()
    validation = args.split == "validation"
    report = validation_report(args.images) if validation else eval_report()
    (VALIDATION_JSON if validation else EVAL_JSON).write_text(json.dumps(report, indent=2) + "\n")
    (BENCH / "MASKS.md").write_text(markdown(read(VALIDATION_JSON), read(EVAL_JSON)))
    print(json.dumps({k: v for k, v in report.items() if k != "seeds"}, indent=1))


if __name__ == "__main__":
    main()
