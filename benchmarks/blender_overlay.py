"""Does a reconstruction seen through its aligned camera look like the photo? Checked through Blender.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/blender_overlay.py --method meshinversion --preset fast \
        --cars 8 9 10 11 12 13 14 15 --out benchmarks/blender_overlay_meshinversion_fast.json

An independent check of the whole user path (issue 20): the add-on's batch script reconstructs the
eval photos with ``--aligned-camera --save-blend`` exactly as a user would run it, then each saved
``.blend`` is rendered in a fresh bpy process (``blender_overlay_render.py``) through the camera the
importer made, and the render is scored against the photo and its true mask: silhouette IoU, PSNR
on the object and its mean colour. Side-by-side figures (photo | render | difference) go to
``<out>_figures/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT / "examples" / "eval"
BATCH = ROOT / "blender_addon" / "batch.py"
RENDER = Path(__file__).with_name("blender_overlay_render.py")
GREY = 0.5
"""Background under the render in the figures."""
ONLY_TRUE = (1.0, 0.0, 0.0)
ONLY_RENDER = (0.0, 0.5, 1.0)
"""Difference-panel colours of the pixels only the true mask, or only the render, covers."""
KEYS = ("iou", "psnr")
"""The scores averaged over the cars."""


def eval_photo(car: int) -> Path:
    return EVAL / f"car_eval_{car:03d}.png"


def true_masks() -> np.ndarray:
    """(24, H, W) bool: the object in each eval photo, index = car number."""
    with np.load(EVAL / "ground_truth.npz") as data:
        return data["mask"]


def bench_env() -> dict[str, str]:
    """The caller's environment with one torch thread (the cores are shared)."""
    return {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def run_logged(command: list[str], env: dict[str, str], timeout: float) -> str:
    """Run a subprocess; its stdout, or an error carrying the end of its log."""
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{shlex.join(command)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc.stdout


def run_batch(
    photos: list[Path],
    output: Path,
    method: str,
    preset: str,
    sets: list[str],
    python: str,
    env: dict[str, str],
) -> list[str]:
    """The add-on's batch script as a user runs it; returns the command (for the report)."""
    command = [
        python, str(BATCH), "--input", *map(str, photos), "--output", str(output),
        "--aligned-camera", "--save-blend", "--method", method, "--preset", preset,
        *(f"--set={item}" for item in sets),
    ]  # fmt: skip
    run_logged(command, env, timeout=600 + 300 * len(photos))
    return command


def render_blend(
    blend: Path, png: Path, size: tuple[int, int], python: str, env: dict[str, str], shading: str = "flat"
) -> dict:
    """Render ``blend`` through its aligned camera in a fresh bpy process (``shading``: flat texture
    colours, or Cycles under the scene's own or Blender's default light); what that scene held."""
    command = [python, str(RENDER), str(blend), str(png), *map(str, size), shading]
    stdout = run_logged(command, env, timeout=600)
    line = next(line for line in reversed(stdout.splitlines()) if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def load(path: Path, mode: str) -> np.ndarray:
    """(H, W, C) float in [0, 1], as stored (sRGB, straight alpha)."""
    return np.asarray(Image.open(path).convert(mode), np.float32) / 255


def score(render: np.ndarray, photo: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """Silhouette IoU (alpha >= 0.5 vs the true mask) and, on the pixels both cover, PSNR and the
    mean colour of render and photo (same definitions as ``metrics.mask_iou`` / ``masked_psnr``)."""
    silhouette = render[..., 3] >= 0.5
    union = silhouette | mask
    both = silhouette & mask
    iou = float(both.sum() / union.sum()) if union.any() else 1.0
    error = float(np.square(render[..., :3][both] - photo[both]).mean()) if both.any() else math.nan
    return {
        "iou": iou,
        "psnr": 10 * math.log10(1 / max(error, 1e-10)) if both.any() else math.nan,
        "render_rgb": render[..., :3][both].mean(0).tolist() if both.any() else None,
        "photo_rgb": photo[both].mean(0).tolist() if both.any() else None,
        "pixels": {"true": int(mask.sum()), "rendered": int(silhouette.sum()), "both": int(both.sum())},
    }


def save_figure(render: np.ndarray, photo: np.ndarray, mask: np.ndarray, path: Path) -> None:
    """photo | render over grey | |render - photo| where both cover, red where only the true mask
    does, blue where only the render does: misalignment and colour error at a glance."""
    alpha = render[..., 3:]
    over_grey = render[..., :3] * alpha + GREY * (1 - alpha)
    silhouette = alpha[..., 0] >= 0.5
    diff = np.zeros_like(photo)
    both = silhouette & mask
    diff[both] = np.abs(render[..., :3][both] - photo[both])
    diff[mask & ~silhouette] = ONLY_TRUE
    diff[silhouette & ~mask] = ONLY_RENDER
    panels = np.concatenate([photo, over_grey, diff], axis=1)
    Image.fromarray((panels.clip(0, 1) * 255).round().astype(np.uint8), "RGB").save(path)


def result_facts(result_dir: Path) -> dict[str, Any]:
    """What the backend said about the texture and the camera, to read the numbers by."""
    info = json.loads((result_dir / "result.json").read_text())
    camera = info.get("camera") or {}
    details = info.get("info", {})
    texture = details.get("texture") or {}  # MeshInversion
    mesh = details.get("mesh") or {}  # GAN2Shape
    return {
        "texture_mode": texture.get("mode") or mesh.get("texture"),
        "camera": {key: camera.get(key) for key in ("type", "crop_box", "image_size")},
    }


def evaluate(
    cars: list[int],
    method: str,
    preset: str,
    sets: list[str],
    work: Path,
    figures: Path,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    shadings: tuple[str, ...] = ("flat",),
) -> dict[str, Any]:
    """Batch-reconstruct the eval cars, render each .blend through its camera in each of ``shadings``
    (the first one's scores are the row's and the report's mean), score and draw it."""
    env = env or bench_env()
    batch_dir = work / "batch"
    figures.mkdir(parents=True, exist_ok=True)
    photos = [eval_photo(car) for car in cars]
    started = time.monotonic()
    command = run_batch(photos, batch_dir, method, preset, sets, python, env)
    batch_seconds = time.monotonic() - started
    masks = true_masks()
    rows = []
    for car, photo_path in zip(cars, photos, strict=True):
        photo = load(photo_path, "RGB")
        scores = {}
        for shading in shadings:
            suffix = "" if shading == "flat" else f"_{shading}"
            png = work / f"{photo_path.stem}_render{suffix}.png"
            blend = batch_dir / f"{photo_path.stem}.blend"
            scene = render_blend(blend, png, photo.shape[1::-1], python, env, shading)
            render = load(png, "RGBA")
            save_figure(render, photo, masks[car], figures / f"{photo_path.stem}{suffix}.png")
            scores[shading] = {**score(render, photo, masks[car]), "scene": scene}
        row = {"car": car, **scores[shadings[0]], **result_facts(batch_dir / photo_path.stem)}
        rows.append({**row, "shadings": scores} if len(shadings) > 1 else row)
    report = {
        "method": method,
        "preset": preset,
        "sets": sets,
        "batch_command": shlex.join(command),
        "batch_seconds": batch_seconds,
        "mean": {key: float(np.mean([row[key] for row in rows])) for key in KEYS},
        "cars": rows,
    }
    if len(shadings) > 1:
        report["mean_by_shading"] = {
            shading: {key: float(np.mean([row["shadings"][shading][key] for row in rows])) for key in KEYS}
            for shading in shadings
        }
    return report


def print_summary(report: dict[str, Any]) -> None:
    print(f"{'car':>4} {'IoU':>7} {'PSNR dB':>8} {'texture':>9}  mean RGB render / photo")
    for row in report["cars"]:
        colours = " / ".join(
            "(" + ", ".join(f"{c:.3f}" for c in row[key]) + ")" if row[key] else "-"
            for key in ("render_rgb", "photo_rgb")
        )
        print(f"{row['car']:>4} {row['iou']:>7.4f} {row['psnr']:>8.2f} {row['texture_mode']!s:>9}  {colours}")
    mean = report["mean"]
    print(f"mean {mean['iou']:>7.4f} {mean['psnr']:>8.2f}   (batch {report['batch_seconds']:.0f} s)")
    for shading, means in report.get("mean_by_shading", {}).items():
        print(f"{shading:>8}: IoU {means['iou']:.4f}, PSNR {means['psnr']:.2f} dB")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="meshinversion", choices=("meshinversion", "gan2shape"))
    parser.add_argument("--preset", default="fast", choices=("fast", "paper"))
    parser.add_argument("--cars", type=int, nargs="+", default=list(range(8, 16)))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="method option")
    parser.add_argument("--out", type=Path, required=True, help="the report JSON")
    parser.add_argument("--work", type=Path, default=None, help="keep the batch output here (default: temp)")
    parser.add_argument(
        "--shading", nargs="+", default=["flat"], choices=("flat", "lit", "default"),
        help="flat: the texture's colours (Workbench); lit: Cycles under the scene's own light (the "
        "recovered one of a de-lit texture); default: Cycles under Blender's factory light and world",
    )  # fmt: skip
    args = parser.parse_args(argv)
    figures = args.out.with_name(args.out.stem + "_figures")
    with tempfile.TemporaryDirectory(prefix="blender_overlay_") as tmp:
        report = evaluate(
            args.cars, args.method, args.preset, args.set, args.work or Path(tmp), figures,
            shadings=tuple(args.shading),
        )  # fmt: skip
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print_summary(report)
    print(f"wrote {args.out} and {figures}/")


if __name__ == "__main__":
    main(sys.argv[1:])
