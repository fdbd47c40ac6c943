#!/usr/bin/env python3
"""Object-mask accuracy: IoU against the true mask for the salient-object net (U^2-Net-p) with the
backend's clean-up steps, GrabCut and the GAN2Shape demo mask net, on procedural car photos without
an alpha channel.

``--split validation``: the salient net's threshold sweep and an ablation of the steps of
``backend.salient_mask.object_mask`` (component choice, ``cut_merged``, ``snap``) on held-out
validation renders (``render_cars`` with ``split_seeds("validation", n)``, 256 px like the eval
set): the numbers the module's constants were chosen by. Writes ``benchmarks/masks_validation.json``.
``--split eval``: each source as the backend runs it, on the 24 committed eval photos
(``examples/eval``); measured once, never tuned on. Writes ``benchmarks/masks.json``.
Either run rewrites ``benchmarks/MASKS.md`` from both JSON files (keeping its hand-written end).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_masks.py --split validation --images 192
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_masks.py --split eval
"""

from __future__ import annotations

import argparse
import json
import math
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
FIRST_HALF = 96
"""Validation cars 900000-900095 were looked at while designing the steps; the rest only measured."""
PHOTO_SIZE = 256
"""The eval set's size; validation renders are made at the same size."""
BENCH = ROOT / "benchmarks"
VALIDATION_JSON = BENCH / "masks_validation.json"
EVAL_JSON = BENCH / "masks.json"
HAND_WRITTEN = "<!-- Written by hand below this line; bench_masks.py keeps it. -->"
"""MASKS.md's part after this line (what was looked at and tried outside this script) is kept."""


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
        "median_iou": round(float(np.median(ious)), 4),
        "min_iou": round(float(np.min(ious)), 4),
        "below_097": int(np.sum(np.asarray(ious) < 0.97)),
        "per_image": [round(v, 4) for v in ious],
    }
    if seconds is not None:
        row["mean_seconds"] = round(float(np.mean(seconds)), 3)
    return row


Step = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
"""(rgb, soft mask, the previous step's mask) -> mask."""


def _cut(always: bool) -> Step:
    def step(rgb: np.ndarray, soft: np.ndarray, found: np.ndarray) -> np.ndarray:
        return salient_mask.cut_merged(rgb, soft, found, always=always) if found.any() else found

    return step


def _snap(rgb: np.ndarray, soft: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return salient_mask.snap(rgb, mask) if mask.any() else mask


ABLATION: dict[str, tuple[str, list[Step]]] = {
    "largest": ("largest component, holes filled (before issue 22)", []),
    "centre": ("component weighted by closeness to the centre", []),
    "centre_snap": ("centre + `snap`", [_snap]),
    "cut_always": ("centre + `cut_merged`, always kept", [_cut(True)]),
    "cut": ("centre + `cut_merged`, kept when no less convex", [_cut(False)]),
    "final": ("centre + `cut_merged` + `snap` (`object_mask`, what `auto` runs)", [_cut(False), _snap]),
}
"""Each variant: the component choice at ``THRESHOLD`` (``largest`` or centre-weighted), then its steps."""


def ablation(rgb: np.ndarray, soft: list[np.ndarray], truth: np.ndarray) -> dict:
    """IoU of every ``ABLATION`` variant, and seconds per photo of its steps after the net."""
    rows = {}
    for name, (_, steps) in ABLATION.items():
        sigma = math.inf if name == "largest" else salient_mask.CENTRE_SIGMA
        masks, seconds = [], []
        for image, level in zip(rgb, soft, strict=True):
            start = time.perf_counter()
            mask = salient_mask.one_object(level >= salient_mask.THRESHOLD, centre_sigma=sigma)
            for step in steps:
                mask = step(image, level, mask)
            masks.append(mask)
            seconds.append(time.perf_counter() - start)
        ious = [iou(m, t) for m, t in zip(masks, truth, strict=True)]
        first = round(float(np.mean(ious[:FIRST_HALF])), 4)
        rest = round(float(np.mean(ious[FIRST_HALF:])), 4) if len(ious) > FIRST_HALF else None
        rows[name] = summary(ious, seconds) | {"half_means": [first, rest]}
    return rows


def validation_report(count: int) -> dict:
    """The salient net's threshold sweep, the ablation of the clean-up steps, GrabCut and the demo net."""
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
        "threshold": salient_mask.THRESHOLD,
        "ablation": ablation(rgb, soft, truth),
        "baselines": baselines,
        "machine": machine(),
    }


def baseline_sources() -> dict[str, Source]:
    return {"grabcut": grabcut_mask, "masknet": masknet_source()}


def scored(source: Source, rgb: np.ndarray, truth: np.ndarray) -> dict:
    """IoU summary and mean seconds of ``source`` over the photos."""
    masks, seconds = timed(source, rgb)
    return summary([iou(m, t) for m, t in zip(masks, truth, strict=True)], seconds)


def salient_before(rgb: np.ndarray) -> np.ndarray:
    """The salient source before issue 22: the largest component at ``THRESHOLD``, holes filled."""
    soft = salient_mask.soft_mask(rgb)
    return salient_mask.one_object(soft >= salient_mask.THRESHOLD, centre_sigma=math.inf)


def eval_report() -> dict:
    """Each source as the backend runs it (``object_mask``; the salient source as it was before issue 22
    beside it), GrabCut from its default centred box, the demo mask net at 0.5."""
    rgb, truth, seeds = eval_photos()
    sources = {"salient": salient_mask.object_mask, "salient_before": salient_before, **baseline_sources()}
    rows = {name: scored(source, rgb, truth) for name, source in sources.items()}
    return {
        "split": "eval",
        "seeds": seeds,
        "threshold": salient_mask.THRESHOLD,
        "sources": rows,
        "machine": machine(),
    }


SOURCE_NAMES = {
    "salient": "salient net + clean-up (`object_mask`: `--mask salient`, what `auto` runs without alpha)",
    "salient_before": "salient-object net, largest component (the same source before issue 22)",
    "grabcut": "GrabCut from the default centred box (`--mask grabcut`)",
    "masknet": "GAN2Shape demo mask net (64 px, threshold 0.5)",
}


MASKNET_NOTE = (
    "The demo mask net was trained on GAN2Shape's car renders on plain grey backgrounds\n"
    "(`workbench/data/gan2shape_renders.py`), the images it segments inside GAN2Shape; on photos\n"
    "with busy backgrounds it is no object mask, and it is listed only for comparison."
)


def validation_markdown(report: dict) -> list[str]:
    count, seeds = len(report["seeds"]), report["seeds"]
    lines = [
        f"## Validation ({count} cars, seeds {seeds[0]}-{seeds[-1]})", "",
        "### Threshold sweep", "",
        "IoU of the salient net's soft mask at each threshold, raw and after choosing one component",
        "(weighted by closeness to the centre, holes filled), against the render's true mask.", "",
        "| threshold | raw mean | raw min | one object mean | one object min |", "|---|---|---|---|---|",
    ]  # fmt: skip
    for row in report["sweep"]:
        raw, clean = row["raw"], row["cleaned"]
        lines.append(f"| {row['threshold']} | {raw['mean_iou']:.4f} | {raw['min_iou']:.4f} | "
                     f"{clean['mean_iou']:.4f} | {clean['min_iou']:.4f} |")  # fmt: skip
    lines += ["", f"Best mean with one component: threshold {report['best_threshold_cleaned']}.", "",
              f"### Clean-up steps at threshold {report['threshold']}", "",
              f"Means of the first {FIRST_HALF} cars (looked at while designing the steps) and of the rest",
              "(only measured) are given apart. Seconds: the steps after the net, per photo.", "",
              "| variant | mean | median | min | below 0.97 | first / rest mean | s / photo |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, row in report["ablation"].items():
        first, rest = row["half_means"]
        rest = "-" if rest is None else f"{rest:.4f}"
        lines.append(f"| {ABLATION[name][0]} | {row['mean_iou']:.4f} | {row['median_iou']:.4f} | "
                     f"{row['min_iou']:.4f} | {row['below_097']} | {first:.4f} / {rest} | "
                     f"{row['mean_seconds']:.3f} |")  # fmt: skip
    lines += ["", "Beside it on the same cars:", ""]
    for name, row in report["baselines"].items():
        lines.append(f"- {SOURCE_NAMES[name]}: mean {row['mean_iou']:.4f}, median {row['median_iou']:.4f}, "
                     f"min {row['min_iou']:.4f}")  # fmt: skip
    threads = report["machine"]["torch_threads"]
    lines += ["", f"Salient net alone: {report['salient_seconds']} s per photo ({threads} thread(s)).", ""]
    return lines


def eval_markdown(report: dict) -> list[str]:
    lines = [
        f"## Evaluation split ({len(report['seeds'])} photos of `examples/eval`, measured once)", "",
        "Each source as the backend runs it; the salient source as it was before issue 22 beside it.", "",
        "| source | mean IoU | median IoU | min IoU | below 0.97 | s / photo |", "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for name, row in report["sources"].items():
        lines.append(f"| {SOURCE_NAMES[name]} | {row['mean_iou']:.4f} | {row['median_iou']:.4f} | "
                     f"{row['min_iou']:.4f} | {row['below_097']} | {row['mean_seconds']:.3f} |")  # fmt: skip
    lines += ["", "Photos below IoU 0.97 (`car_eval_NNN`: IoU):", ""]
    for name, row in report["sources"].items():
        low = [f"{i:03d}: {v:.3f}" for i, v in enumerate(row["per_image"]) if v < 0.97]
        lines.append(f"- {name}: {', '.join(low) or 'none'}")
    lines += ["", MASKNET_NOTE]
    m = report["machine"]
    lines += ["", f"Machine: {m['cpu_model']}, {m['cpus']} cores, {m['torch_threads']} thread(s), load "
              f"average before the run {m['load_average']} (other jobs shared the CPU: times are "
              "pessimistic).", ""]  # fmt: skip
    return lines


def markdown(validation: dict | None, evaluation: dict | None, hand_written: str) -> str:
    lines = [
        "# Object masks", "",
        "Mask IoU against the true mask on procedural car photos without an alpha channel (256 px).",
        "Every constant of `backend/salient_mask.py` was chosen on the validation split only; the eval",
        "split is measured once.", "",
        "Commands:", "",
        "    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_masks.py --split validation --images 192",
        "    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_masks.py --split eval", "",
    ]  # fmt: skip
    if validation:
        lines += validation_markdown(validation)
    if evaluation:
        lines += eval_markdown(evaluation)
    return "\n".join([*lines, HAND_WRITTEN, "", hand_written])


def read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("validation", "eval"), default="eval")
    parser.add_argument("--images", type=int, default=192, help="validation cars (eval uses all 24)")
    args = parser.parse_args()
    validation = args.split == "validation"
    report = validation_report(args.images) if validation else eval_report()
    (VALIDATION_JSON if validation else EVAL_JSON).write_text(json.dumps(report, indent=2) + "\n")
    doc = BENCH / "MASKS.md"
    old = doc.read_text() if doc.is_file() else ""
    hand_written = old.split(HAND_WRITTEN, 1)[1].lstrip("\n") if HAND_WRITTEN in old else ""
    doc.write_text(markdown(read(VALIDATION_JSON), read(EVAL_JSON), hand_written))
    print(json.dumps({k: v for k, v in report.items() if k != "seeds"}, indent=1))


if __name__ == "__main__":
    main()
