#!/usr/bin/env python3
"""One benchmark report: held-out accuracy of every method and baseline, speed and memory.

Writes ``benchmarks/RESULTS.md``, ``benchmarks/results.json`` and ``benchmarks/figures/*.png``.
Each accuracy row runs in its own child process (``--part``), so its peak resident memory is its
own; the orchestrator adds the renderer step time (``bench_render``'s steps, in process), the
backend's cold start and warm job overhead (a real ``python -m backend serve``), batch throughput and
Blender import time (``bench_import.py``). It refuses to run when the held-out split overlaps the
seeds the shipped weights were trained on.

    .venv/bin/python benchmarks/run_all.py --quick      # small subset (~15-25 min on 2 loaded cores)
    .venv/bin/python benchmarks/run_all.py              # everything (paper preset, 16-image batch)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path[:0] = [str(ROOT), str(BENCH)]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from machine import machine  # noqa: E402
from metrics import (  # noqa: E402
    chamfer_l2,
    depth_metrics,
    mask_iou,
    masked_psnr,
    normalise_scale,
    scatter_depth,
)
from PIL import Image  # noqa: E402

from backend.render.primitives import sample_surface  # noqa: E402

EVAL_DIR = ROOT / "examples" / "eval"
FIGURES = BENCH / "figures"
PY = sys.executable
NOVEL_FIGURE_AZIMUTHS = (60.0, 180.0, 300.0)
"""Azimuths (deg, object frame) of the three novel views drawn in the figures."""
TILE = 128
MESH_RENDER_DEPTH_OFFSET = 3.0
"""The eval renders' view distance (``render_sample.DEPTH_OFFSET``); predicted depth uses the same."""


# ----------------------------------------------------------------------------- split and provenance


def check_split(manifest: dict) -> dict:
    """Refuse to run when an evaluation seed is not reserved or overlaps a training range.

    The training seed ranges come from the shipped weights' ``train_command`` (``--cars N`` draws
    seeds 0..N-1); ``workbench.splits.check_training_seeds`` rejects any that reach the split.
    """
    from workbench.splits import check_training_seeds, is_eval_seed

    seeds = np.load(EVAL_DIR / "ground_truth.npz")["seeds"].tolist()
    if not all(is_eval_seed(s) for s in seeds):
        sys.exit(f"run_all: {EVAL_DIR} holds seeds outside the held-out range; regenerate it with make-eval")
    ranges = {}
    for entry in manifest["weights"]:
        cars = re.findall(r"--cars (\d+)", entry.get("train_command", ""))
        if cars:
            training = range(max(int(n) for n in cars))
            try:
                check_training_seeds(training)
            except ValueError as exc:
                sys.exit(f"run_all: {entry['id']} was trained on held-out seeds: {exc}")
            if set(seeds) & set(training):
                sys.exit(f"run_all: {entry['id']} training seeds overlap the evaluation split")
            ranges[entry["id"]] = [training.start, training.stop - 1]
    return {"eval_seeds": [min(seeds), max(seeds)], "count": len(seeds), "training_seed_ranges": ranges}


def weights_provenance(manifest: dict) -> list[dict]:
    """Id, sha256 (checked against the file) and training step of every shipped weights file."""
    rows = []
    for entry in manifest["weights"]:
        path = ROOT / "weights" / entry["file"]
        actual = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
        step = re.search(r"(\d+) steps", entry.get("source", ""))
        rows.append(
            {
                "id": entry["id"],
                "sha256": entry["sha256"],
                "file_matches": actual == entry["sha256"],
                "training_steps": int(step.group(1)) if step else None,
                "source": entry.get("source", ""),
            }
        )
    return rows


# ----------------------------------------------------------------------------- held-out data


def eval_photos(count: int, size: int, first: int = 0) -> list[dict]:
    """``count`` committed held-out renders from number ``first`` on (with backgrounds), cropped like a
    user photo, with their ground truth mesh, depth cropped the same way, and the camera scale in crop
    NDC."""
    import cv2

    from backend.inputs import InputImage, crop_to_object

    truth = np.load(EVAL_DIR / "ground_truth.npz")
    photos = []
    for i in range(first, first + count):
        rgb = np.asarray(Image.open(EVAL_DIR / f"car_eval_{i:03d}.png").convert("RGB"), np.float32) / 255
        image = InputImage(rgb, truth["mask"][i], f"car_eval_{i:03d}.png")
        crop = crop_to_object(image, size, 0.05)
        x0, y0, side = (round(v) for v in crop.box)
        pad = side
        depth = np.pad(truth["depth"][i], pad)[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]
        photos.append({
            "name": f"car_eval_{i:03d}", "seed": int(truth["seeds"][i]), "crop": crop,
            "photo": crop_to_object(image, round(crop.box[2]), 0.05),
            "texture": torch.from_numpy(truth["texture"][i]).permute(2, 0, 1).float() / 127.5 - 1,
            "depth": torch.from_numpy(cv2.resize(depth, (size, size), interpolation=cv2.INTER_NEAREST)),
            "vertices": torch.from_numpy(truth["vertices"][i]),
            "faces": torch.from_numpy(truth["faces"]).long(),
            "scale": float(truth["scale"][i]) * rgb.shape[1] / side,
        })  # fmt: skip
    return photos


# ----------------------------------------------------------------------------- MeshInversion rows


def meshinversion_metrics(model: Any, result: Any, texture: torch.Tensor, photo: dict) -> tuple[dict, dict]:
    """All accuracy metrics of one MeshInversion-style result with its exported ``texture`` (3, N, N) in
    [-1, 1], and the renders the figure needs."""
    from bench_meshinversion import input_view_appearance, novel_view_appearance, novel_view_iou

    from backend.render.rasterize import rasterize

    crop, size = photo["crop"], photo["crop"].mask.shape[0]
    target = torch.from_numpy(crop.mask >= 0.5)
    with torch.no_grad():
        rendering = model.render_exported(result.vertices[None], texture[None], result.camera, size)
        fragments = rasterize(
            result.camera.camera().project(result.vertices[None]), model.faces, size, cull_backfaces=True
        )
    depth = scatter_depth(fragments.pixels, fragments.depth_values, (1, size, size), MESH_RENDER_DEPTH_OFFSET)
    rgb = ((rendering.rgb[0] + 1) / 2).clamp(0, 1).permute(1, 2, 0)
    on_white = torch.where(rendering.mask[0, ..., None], rgb, torch.ones_like(rgb))
    truth_depth = photo["depth"][None]
    depth_row = depth_metrics(depth, truth_depth, (truth_depth > 0) & (depth > 0))
    generator = torch.Generator().manual_seed(0)
    clouds = [
        normalise_scale(sample_surface(v, f, 4000, generator))
        for v, f in ((result.vertices, model.faces), (photo["vertices"], photo["faces"]))
    ]
    row = {
        "input_iou": float(mask_iou(rendering.mask, target[None])[0]),
        "novel_iou": novel_view_iou((result.vertices, model.faces), float(result.camera.scale[0]),
                                    (photo["vertices"], photo["faces"]), photo["scale"]),
        "chamfer_l2": chamfer_l2(*clouds),
        **input_view_appearance(model, result, texture, photo),
        **novel_view_appearance(model, result, texture, photo),
        "side": depth_row["side"], "mad": depth_row["mad"],
    }  # fmt: skip
    return row, {"recon": on_white.numpy()}


def novel_renders(model: Any, result: Any, texture: torch.Tensor) -> list[np.ndarray]:
    """The reconstruction with its exported texture from the figure's three novel azimuths at 20 deg
    elevation."""
    from backend.methods.meshinversion.camera_search import WeakPerspective, view_quaternion

    count = len(NOVEL_FIGURE_AZIMUTHS)
    quaternions = view_quaternion(torch.tensor(NOVEL_FIGURE_AZIMUTHS).deg2rad(), torch.full((count,), 0.35))
    camera = WeakPerspective(quaternions, result.camera.scale[:1].expand(count), torch.zeros(count, 2))
    centred = (result.vertices - result.vertices.mean(0))[None].expand(count, -1, -1)
    with torch.no_grad():
        rendering = model.render_exported(centred, texture[None].expand(count, -1, -1, -1), camera, TILE)
    white = (~rendering.mask[:, None]).float()
    images = ((rendering.rgb + 1) / 2).clamp(0, 1) + white
    return [image.permute(1, 2, 0).numpy() for image in images.clamp(0, 1)]


def figure_row(photo: dict, recon: np.ndarray, views: list[np.ndarray], texture: np.ndarray) -> np.ndarray:
    """One row of a method's grid: input, mask, input-view reconstruction, three novel views, texture."""
    mask = np.repeat(photo["crop"].mask[..., None], 3, -1)
    tiles = [photo["crop"].rgb, mask, recon, *views, texture]
    resized = [
        np.asarray(Image.fromarray((np.clip(t, 0, 1) * 255).astype(np.uint8)).resize((TILE, TILE)))
        for t in tiles
    ]
    return np.concatenate(resized, axis=1)


def part_meshinversion(args: argparse.Namespace) -> dict:
    """A MeshInversion row (``mi-fast``, ``mi-paper``) or a baseline (``mi-mean-shape``,
    ``mi-category-mean``, ``mi-free-form``) on the held-out photos; ``mi-batch`` times one batched
    optimisation."""
    from backend.methods.meshinversion.invert import InversionSettings
    from backend.methods.meshinversion.options import Options
    from backend.models import default_entry, load_model
    from backend.options import preset_options
    from backend.weights import Registry
    from workbench.baselines import Baselines

    registry = Registry()
    entry = default_entry(registry, "meshinversion")
    method = load_model(registry, entry, "cpu")
    preset = "paper" if args.part == "mi-paper" else "fast"
    texture_options = preset_options(Options, preset)
    settings = InversionSettings.from_options(texture_options)
    stage = preset_options(Options, "fast")  # the baselines are also scored with fast's texture stage
    photos = eval_photos(args.images, settings.render_size, args.first)
    rgbs, masks = [p["crop"].rgb for p in photos], [p["crop"].mask for p in photos]

    def quiet(*_a: Any, **_k: Any) -> None:
        """The benchmark shows no progress."""

    if args.part == "mi-batch":
        started = time.perf_counter()
        method.inverter(settings).run(rgbs, masks, 0, quiet)
        seconds = time.perf_counter() - started
        return {"images": len(rgbs), "seconds": seconds, "images_per_min": 60 * len(rgbs) / seconds,
                "weights_sha256": entry.sha256}
    runner = {
        "mi-fast": method.inverter(settings).run,
        "mi-paper": method.inverter(settings).run,
        "mi-mean-shape": Baselines(method.model, settings).mean_shape,
        "mi-free-form": Baselines(method.model, settings).free_form,
        "mi-category-mean": Baselines(method.model, settings).category_mean,
    }[args.part]
    baseline = args.part in ("mi-mean-shape", "mi-free-form", "mi-category-mean")
    rows, textured_rows, grid, seconds = [], [], [], []
    for photo, rgb, mask in zip(photos, rgbs, masks, strict=True):
        started = time.perf_counter()
        result = runner([rgb], [mask], 0, quiet)[0]
        exported = method.final_texture(result, photo["photo"], texture_options)[0]
        texture = result.texture if baseline else exported
        seconds.append(time.perf_counter() - started)
        row, renders = meshinversion_metrics(method.model, result, texture, photo)
        rows.append({"image": photo["name"], "seed": photo["seed"], "seconds": seconds[-1], **row})
        print(args.part, json.dumps(rows[-1]), flush=True)
        if baseline:
            textured = method.final_texture(result, photo["photo"], stage)[0]
            row = meshinversion_metrics(method.model, result, textured, photo)[0]
            textured_rows.append({"image": photo["name"], "seed": photo["seed"], **row})
        if len(grid) < 3:
            image = ((texture + 1) / 2).clamp(0, 1).permute(1, 2, 0).numpy()
            views = novel_renders(method.model, result, texture)
            grid.append(figure_row(photo, renders["recon"], views, image))
    FIGURES.mkdir(exist_ok=True)
    figure = FIGURES / f"{args.part}.png"
    Image.fromarray(np.concatenate(grid, axis=0)).save(figure)
    return {
        "weights": entry.id,
        "weights_sha256": entry.sha256,
        "preset": preset,
        "texture": "generated" if baseline else texture_options.texture,
        "rows": rows,
        **({"textured_rows": textured_rows, "textured_with": stage.texture} if baseline else {}),
        "figure": str(figure.relative_to(ROOT)),
        "seconds_per_image_median": statistics.median(seconds),
    }


# ----------------------------------------------------------------------------- GAN2Shape rows


def part_gan2shape(args: argparse.Namespace) -> dict:
    """GAN2Shape ``fast``, its ellipsoid prior alone and that prior seen from the mean training view, on
    the held-out seeds rendered as the GAN2Shape engineer's benchmark renders them (the demo GAN's 64 px
    framing, with ground-truth depth and mask): input-view IoU, texture PSNR, SIDE and MAD. The
    silhouette is the exported relief's: the canonical object mask warped into the input view (the nets
    predict depth for the whole frame, background included), so it is bounded by the input mask; the
    relief is not a closed mesh, so novel-view IoU and Chamfer are not defined for it."""
    from bench_gan2shape import prior_from_mean_view, render_with_depth

    from backend.inputs import InputImage
    from backend.methods.gan2shape import depth_render
    from backend.methods.gan2shape.depth_render import BACKGROUND_DEPTH
    from backend.methods.gan2shape.options import Options
    from backend.methods.gan2shape.prior import ellipsoid_prior
    from backend.models import default_entry, load_model
    from backend.options import parse_options
    from backend.weights import Registry
    from workbench.splits import eval_seeds

    registry = Registry()
    entry = default_entry(registry, "gan2shape")
    model = load_model(registry, entry, "cpu")
    options = parse_options(Options, "fast", {"crop": "full"})  # export's previews make the figure
    size = model.image_size
    seeds = eval_seeds(args.images)
    data = render_with_depth(seeds, size)
    rows: dict[str, list[dict]] = {"gan2shape-fast": [], "gan2shape-prior": [], "gan2shape-tilted-prior": []}
    grid, seconds = [], []
    for i, seed in enumerate(seeds):
        rgb = data["rgb"][i].permute(1, 2, 0).numpy().astype(np.float32)
        truth_mask, truth_depth = data["mask"][i][None], data["depth"][i][None]
        photo = InputImage(rgb, (data["alpha"][i] > 0.5).numpy(), f"car-{seed}.png", [], (size, size))
        started = time.perf_counter()
        outcome = model.reconstruct(photo, options, seed=0, progress=lambda *a, **k: None)
        seconds.append(time.perf_counter() - started)
        state = outcome.state
        depth = state.recon_depth[:1].detach()
        view_grid = depth_render.canon_to_view_grid(depth, state.view[:1].detach())
        canon_mask = outcome.run.canon_mask[:1].detach()
        covered = (depth_render.sample(canon_mask, view_grid)[:, 0] > 0.5) & (depth < BACKGROUND_DEPTH)
        recon = ((state.recon[0].detach() + 1) / 2).clamp(0, 1).permute(1, 2, 0)
        measured = depth_metrics(depth, truth_depth, truth_mask & (depth < BACKGROUND_DEPTH))
        rows["gan2shape-fast"].append({
            "image": f"held-out seed {seed}", "seed": seed, "seconds": seconds[-1],
            "input_iou": float(mask_iou(covered, truth_mask)[0]),
            "input_psnr": masked_psnr(recon, torch.from_numpy(rgb), covered[0] & truth_mask[0]),
            "side": measured["side"], "mad": measured["mad"],
        })  # fmt: skip
        prior = ellipsoid_prior(outcome.run.target.mask[0, 0], entry.category, far=outcome.options.prior_far)
        tilted = prior_from_mean_view(prior, outcome.run)
        for name, baseline in (("gan2shape-prior", prior), ("gan2shape-tilted-prior", tilted)):
            visible = truth_mask & (baseline[None] < BACKGROUND_DEPTH)  # all of the untilted prior
            measured = depth_metrics(baseline[None], truth_depth, visible)
            row = {"image": f"held-out seed {seed}", "seed": seed}
            rows[name].append({**row, "side": measured["side"], "mad": measured["mad"]})
        print("gan2shape", json.dumps(rows["gan2shape-fast"][-1]), flush=True)
        if len(grid) < 3:
            strip = model.export(outcome).previews["rotate"].astype(np.float32) / 255
            views = [strip[:, k * size : (k + 1) * size] for k in (0, 2, 4)]  # yaw -45, 0, +45 deg
            on_white = torch.where(covered[0, ..., None], recon, torch.ones_like(recon)).numpy()
            texture = ((state.texture[0].detach() + 1) / 2).clamp(0, 1).permute(1, 2, 0).numpy()
            crop = argparse.Namespace(rgb=rgb, mask=truth_mask[0].float().numpy())
            grid.append(figure_row({"crop": crop}, on_white, views, texture))
    FIGURES.mkdir(exist_ok=True)
    figure = FIGURES / "gan2shape-fast.png"
    Image.fromarray(np.concatenate(grid, axis=0)).save(figure)
    return {
        "weights": entry.id,
        "weights_sha256": entry.sha256,
        "preset": "fast",
        "rows": rows["gan2shape-fast"],
        "prior_rows": rows["gan2shape-prior"],
        "tilted_prior_rows": rows["gan2shape-tilted-prior"],
        "figure": str(figure.relative_to(ROOT)),
        "seconds_per_image_median": statistics.median(seconds),
    }


# ----------------------------------------------------------------------------- speed


def renderer_step_ms(repeats: int) -> dict[str, float]:
    """Median forward+backward wall time of ``bench_render``'s steps (same code, no files written)."""
    from bench_render import depth_grid_step, median_ms, sphere_step

    torch.set_num_threads(1)
    steps = {
        "template_960_256": sphere_step(32, 16, 256, 1),
        "sphere_2048_256": sphere_step(32, 33, 256, 1),
        "depth_grid_32k_128": depth_grid_step(128, 128),
    }
    return {name: round(median_ms(step, repeats)[0], 2) for name, step in steps.items()}


def read_line(process: subprocess.Popen, want: str) -> dict:
    """The next protocol message of type ``want`` (progress and other messages skipped)."""
    while True:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"backend ended before a {want!r} message")
        message = json.loads(line)
        if message["type"] == want or message["type"] == "error":
            return message


def backend_timings(runs: int) -> dict:
    """Cold start to the ``hello`` handshake (median of ``runs``), then two identical ``fast`` jobs in
    one process: job wall time minus the method's own optimisation time is the job overhead (loading
    the image, crop, export, files; the first job also loads the weights)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [PY, "-m", "backend", "serve"]

    def start() -> subprocess.Popen:
        pipe = subprocess.PIPE
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=pipe, stdout=pipe, stderr=subprocess.DEVNULL, text=True
        )

    starts = []
    for _ in range(runs):
        started = time.perf_counter()
        process = start()
        read_line(process, "hello")
        starts.append(time.perf_counter() - started)
        process.stdin.write(json.dumps({"type": "shutdown"}) + "\n")
        process.stdin.flush()
        process.wait(timeout=60)
    process = start()
    read_line(process, "hello")
    jobs = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(2):
            job = {
                "type": "job",
                "id": f"bench{n}",
                "image": str(ROOT / "examples" / "car_04_alpha.png"),
                "output_dir": str(Path(tmp) / f"job{n}"),
                "method": "meshinversion",
                "preset": "fast",
                "mask": "alpha",
                "preview": False,
            }
            started = time.perf_counter()
            process.stdin.write(json.dumps(job) + "\n")
            process.stdin.flush()
            message = read_line(process, "result")
            wall = time.perf_counter() - started
            if message["type"] == "error":
                raise RuntimeError(f"backend job failed: {message}")
            info = json.loads((Path(tmp) / f"job{n}" / "result.json").read_text())["info"]
            jobs.append(
                {
                    "wall_s": wall,
                    "optimisation_s": info["optimisation_seconds_per_image"],
                    "overhead_s": wall - info["optimisation_seconds_per_image"],
                }
            )
    process.stdin.write(json.dumps({"type": "shutdown"}) + "\n")
    process.stdin.flush()
    process.wait(timeout=60)
    return {
        "command": "python -m backend serve",
        "cold_start_to_hello_s": starts,
        "cold_start_median_s": statistics.median(starts),
        "first_job": jobs[0],
        "warm_job": jobs[1],
    }


def blender_import(faces: int) -> dict:
    """``bench_import.py`` for a grid of ``faces`` triangles (its JSON goes to a temporary file)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "import.json"
        command = [
            PY,
            str(BENCH / "bench_import.py"),
            "--faces",
            str(faces),
            "--repeat",
            "3",
            "--output",
            str(out),
        ]
        subprocess.run(
            command,
            cwd=ROOT,
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        )
        report = json.loads(out.read_text())
    report["command"] = " ".join(["python", "benchmarks/bench_import.py", *command[2:-2]])
    return report


PART_CACHE = ROOT / "runs" / "bench_parts"
"""Every finished row is kept here, so ``--resume`` can reuse it (runs/ is not committed)."""


def part_inputs(part: str) -> dict[str, Any]:
    """What a row's numbers depend on besides the code: the sha256 of every shipped weights file of
    its method (a GAN2Shape run also loads its mask network and pretrained encoder) and the preset."""
    from backend.methods import options_class
    from backend.options import as_dict, preset_options
    from backend.weights import Registry

    method = "gan2shape" if part.startswith("gan2shape") else "meshinversion"
    preset = "paper" if part == "mi-paper" else "fast"
    shas = sorted(e.sha256 for e in Registry().entries() if e.method == method and e.origin == "shipped")
    options = as_dict(preset_options(options_class(method), preset))
    return {"weights": shas, "preset": preset, "options": json.loads(json.dumps(options, default=list))}


def run_part(part: str, images: int, resume: bool = False) -> dict:
    """A row in a fresh child process; its peak RSS is the child's own maximum resident set.

    With ``resume``, a row finished earlier with the same image count, the same shipped weights of
    its method and the same preset (``part_inputs``) is reused; the report names the commit it was
    measured at.
    """
    cached = PART_CACHE / f"{part}-{images}.json"
    inputs = part_inputs(part)
    if resume and cached.is_file():
        report = json.loads(cached.read_text())
        if report.get("inputs") == inputs:
            print(f"= {part}: reused from {cached} (commit {report.get('commit', '?')})", flush=True)
            report["reused"] = True
            return report
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "part.json"
        command = [PY, str(Path(__file__)), "--part", part, "--images", str(images), "--out", str(out)]
        print("+", " ".join(command[1:]), flush=True)
        subprocess.run(
            command, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        )
        report = json.loads(out.read_text())
    report["command"] = f"python benchmarks/run_all.py --part {part} --images {images}"
    report["inputs"] = inputs
    report["commit"] = machine()["commit"]
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    PART_CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(report, indent=1))
    return report


# ----------------------------------------------------------------------------- report


def mean_cell(rows: list[dict], key: str, digits: int) -> str:
    """Mean of a metric over the rows as a table cell; "-" where the row does not define it."""
    values = [r[key] for r in rows if r.get(key) is not None and np.isfinite(r[key])]
    return f"{np.mean(values):.{digits}f}" if values else "-"


ROW_LABELS = {
    "mi-fast": "MeshInversion fast",
    "mi-paper": "MeshInversion paper",
    "mi-mean-shape": "baseline: mean shape + camera fit",
    "mi-free-form": "baseline: free-form deformation, no GAN prior",
    "mi-category-mean": "baseline: category mean (mean true car of the training split) + camera fit",
    "gan2shape-fast": "GAN2Shape fast",
}


def blender_markdown(parts: dict) -> list[str]:
    """The check through Blender: each batch ``.blend`` rendered through its aligned camera."""
    if not parts:
        return []
    lines = [
        "## Through Blender's aligned camera",
        "",
        "The add-on's batch script (`blender_addon/batch.py --aligned-camera --save-blend`, the default "
        "`--mask auto`) on the photos `examples/eval/car_eval_NNN.png`; each saved `.blend` rendered through "
        "its aligned camera (Workbench, flat light, texture colour, Standard view transform) and compared "
        "with the photo on its true mask: silhouette IoU and PSNR on the object "
        "(`benchmarks/blender_overlay.py`; figures photo | render | difference in "
        "`benchmarks/blender_overlay_*_figures/`).",
        "",
        "| method / preset | cars | IoU | PSNR dB | per car PSNR | batch s/image |",
        "|---|---|---|---|---|---|",
    ]
    for name, part in parts.items():
        cars = part["cars"]
        per_car = ", ".join(f"{c['car']}: {c['psnr']:.1f}" for c in cars)
        lines.append(f"| {name} | {len(cars)} | {part['mean']['iou']:.3f} | {part['mean']['psnr']:.1f} | "
                     f"{per_car} | {part['batch_seconds'] / len(cars):.1f} |")  # fmt: skip
    return [*lines, ""]


def blender_overlay(method: str, preset: str, cars: list[int]) -> dict:
    """``benchmarks/blender_overlay.py`` for one method and preset, in a child process."""
    out = BENCH / f"blender_overlay_{method}_{preset}.json"
    command = [PY, str(BENCH / "blender_overlay.py"), "--method", method, "--preset", preset,
               "--cars", *map(str, cars), "--out", str(out)]  # fmt: skip
    print("+", " ".join(command[1:]), flush=True)
    subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return json.loads(out.read_text())


def markdown(report: dict) -> str:
    """RESULTS.md from results.json: every number in it comes from this run."""
    m, lines = report["machine"], []
    lines += [
        "# Benchmark results",
        "",
        f"Command: `{report['command']}` ({report['wall_minutes']:.1f} min). Commit `{m['commit']}`.",
        "",
        f"Machine: {m['cpu_model']}, {m['cpus']} CPUs, torch {m['torch']} "
        f"(CPU, {m['torch_threads']} thread), "
        f"numpy {m['numpy']}, Python {m['python']}; load average at start {m['load_average']}, at end "
        f"{report['load_average_end']} (shared machine: training jobs and other engineers ran alongside, so "
        "absolute times are pessimistic; the ratios below travel better).",
        "",
        f"Held-out split: seeds {report['split']['eval_seeds']} ({report['split']['count']} committed images "
        f"in `examples/eval/`); training seed ranges of the shipped weights "
        f"{report['split']['training_seed_ranges']} - checked disjoint before running.",
        "",
        "Weights used (the shipped demo weights; training steps as their manifest entries record):",
        "",
        "| id | sha256 | training steps | file matches manifest |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {w['id']} | `{w['sha256'][:16]}...` | {w['training_steps']} | {w['file_matches']} |"
        for w in report["weights"]
    ]
    lines += [
        "",
        "## Accuracy on the held-out split",
        "",
        "Input-view mask IoU; mean silhouette IoU over 8 novel views (azimuth 0-315 deg, 20 deg elevation, "
        "canonical frame); Chamfer-L2 between 4,000 surface samples each, both centred and scaled to unit "
        "RMS "
        "radius; appearance with the exported texture: PSNR (dB) and SSIM in the input view on the true "
        "mask and the rendering's, and in the 8 novel views (reconstruction and true mesh with its true "
        "texture, unlit on white) PSNR on the union of both silhouettes and the body colour error "
        "(CIEDE2000 between the two renders' mean object colours); depth SIDE and MAD (deg) in the "
        "input view as in the GAN2Shape paper (`benchmarks/metrics.depth_metrics`). "
        "GAN2Shape's input PSNR is its nets' 64 px reconstruction; its exported texture is the photo "
        "itself, measured through Blender below.",
        "",
        "| row | texture | images | input IoU | novel IoU | Chamfer-L2 | input PSNR | input SSIM "
        "| novel PSNR | body colour error | SIDE | MAD | s/image (median) | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    metrics = (
        ("input_iou", 3),
        ("novel_iou", 3),
        ("chamfer_l2", 4),
        ("input_psnr", 1),
        ("input_ssim", 3),
        ("novel_psnr", 1),
        ("body_colour_error", 1),
        ("side", 4),
        ("mad", 1),
    )
    for name, part in report["accuracy"].items():
        texture = part.get("texture", "-")
        table = [(ROW_LABELS.get(name, name), texture, part["rows"], part)]
        if "textured_rows" in part:
            label = f"{ROW_LABELS.get(name, name)}, with fast's texture stage"
            table.append((label, part["textured_with"], part["textured_rows"], None))
        if "prior_rows" in part:
            table.append(("baseline: ellipsoid prior alone (GAN2Shape)", "-", part["prior_rows"], None))
        if "tilted_prior_rows" in part:
            label = "baseline: ellipsoid prior seen from the mean training view (GAN2Shape)"
            table.append((label, "-", part["tilted_prior_rows"], None))
        for label, mode, rows, timed in table:
            cells = [mean_cell(rows, key, digits) for key, digits in metrics]
            cost = (
                f"{timed['seconds_per_image_median']:.1f} | {timed['peak_rss_mb']:.0f}" if timed else "- | -"
            )
            lines.append(f"| {label} | {mode} | {len(rows)} | " + " | ".join(cells) + f" | {cost} |")
    lines += [
        "",
        "Weights each row's process loaded: "
        + ", ".join(
            f"{ROW_LABELS.get(name, name)} `{part['weights']}` sha256 "
            f"`{part.get('weights_sha256', '?')[:16]}`"
            for name, part in report["accuracy"].items()
        )
        + ".",
        "",
        "MeshInversion rows and its baselines: the committed `examples/eval/` renders (256 px, lit, "
        "procedural backgrounds), cropped with `crop_to_object`. GAN2Shape rows: the same held-out seeds "
        "rendered as `bench_gan2shape.render_with_depth` renders them (the demo GAN's 64 px framing, "
        "grey background); "
        "its result is a relief over the input view, so novel-view IoU and Chamfer are not defined for it, "
        "and its silhouette (the canonical object mask warped back) is bounded by the input mask, so its "
        "input IoU is near 1 by construction. "
        "MeshInversion depth is the weak-perspective view depth (+3, as the ground truth). "
        "Per-image rows: `benchmarks/results.json`.",
        "",
        "Figures (rows: held-out images; columns: input crop, mask, reconstruction in the input view, "
        "three novel views (MeshInversion: azimuth 60/180/300 deg at 20 deg elevation; GAN2Shape: yaw "
        "-45/0/+45 deg of the relief), texture):",
        "",
    ]
    labelled = [
        *((ROW_LABELS.get(name, name), part) for name, part in report["accuracy"].items()),
        *((f"MeshInversion fast, batch of {n}", part) for n, part in report["speed"]["batch"].items()),
    ]
    reused = [
        f"{label} (commit `{part.get('commit', '?')}`, load at end {part.get('load_average_end', '?')})"
        for label, part in labelled
        if part.get("reused")
    ]
    if reused:
        lines += ["Rows measured by an earlier run with the same weights and reused (`--resume`): "
                  + "; ".join(reused) + ".", ""]
    for name, part in report["accuracy"].items():
        label = ROW_LABELS.get(name, name)
        lines += [f"{label}:", "", f"![{label}]({Path(part['figure']).relative_to('benchmarks')})", ""]
    lines += blender_markdown(report.get("blender", {}))
    speed = report["speed"]
    render_ms = speed["renderer_ms"]["template_960_256"]
    lines += [
        "",
        "## Speed and memory",
        "",
        f"Renderer forward+backward, median wall ms (`bench_render`'s steps, {speed['renderer_repeats']} "
        "repeats; names: mesh faces and image size):",
        "",
        "| step | ms |",
        "|---|---|",
        *(f"| {step} | {ms:.1f} |" for step, ms in speed["renderer_ms"].items()),
        "",
        f"Backend (`{speed['backend']['command']}`): cold start to handshake, median "
        f"{speed['backend']['cold_start_median_s']:.2f} s over "
        f"{len(speed['backend']['cold_start_to_hello_s'])} "
        f"runs; first MeshInversion fast job overhead {speed['backend']['first_job']['overhead_s']:.2f} s "
        f"(loads weights), warm job overhead {speed['backend']['warm_job']['overhead_s']:.2f} s "
        "(job wall time minus the method's optimisation time).",
        "",
        "| method / preset | s/image | peak RSS MB | s/image / renderer step (template 960 faces, 256 px) |",
        "|---|---|---|---|",
    ]
    for name, part in report["accuracy"].items():
        seconds, label = part["seconds_per_image_median"], ROW_LABELS.get(name, name)
        ratio = 1000 * seconds / render_ms
        lines.append(f"| {label} | {seconds:.1f} | {part['peak_rss_mb']:.0f} | {ratio:.0f} |")
    lines += [
        "",
        "Batch throughput, MeshInversion fast (one batched optimisation; 1 image = the sequential row):",
        "",
        "| images | images/min |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v['images_per_min']:.2f} |" for k, v in speed["batch"].items()]
    lines += ["", "Blender import (`bench_import.py`, best of 3):", "", "| triangles | best s |", "|---|---|"]
    lines += [f"| {v['faces']} | {v['best_s']:.3f} |" for v in speed["blender_import"].values()]
    lines += ["", "## Not measured in this run", ""] + [f"- {note}" for note in report["not_measured"]]
    return "\n".join(lines) + "\n"


def orchestrate(args: argparse.Namespace) -> None:
    started = time.perf_counter()
    manifest = tomllib.loads((ROOT / "weights" / "manifest.toml").read_text(encoding="utf-8"))
    split = check_split(manifest)
    report: dict[str, Any] = {
        "command": " ".join(["python3 build.py bench", *(["--quick"] if args.quick else []),
                             *(["--images", str(args.images)] if args.images else []),
                             *(["--resume"] if args.resume else [])]),
        "machine": machine(),
        "split": split,
        "weights": weights_provenance(manifest),
    }
    images = args.images or (3 if args.quick else 8)
    parts = ["mi-fast", "mi-mean-shape", "mi-category-mean", "mi-free-form"]
    parts += [] if args.quick else ["mi-paper"]
    report["accuracy"] = {part: run_part(part, images, args.resume) for part in parts}
    g2s_images = 1 if args.quick else images
    report["accuracy"]["gan2shape-fast"] = run_part("gan2shape-fast", g2s_images, args.resume)
    overlay_cars = list(range(8, 8 + (2 if args.quick else 8)))
    report["blender"] = {
        f"{method} fast": blender_overlay(method, "fast", overlay_cars)
        for method in ("meshinversion", "gan2shape")
    }
    speed: dict[str, Any] = {"renderer_repeats": 5 if args.quick else 15}
    speed["renderer_ms"] = renderer_step_ms(speed["renderer_repeats"])
    sequential = report["accuracy"]["mi-fast"]["seconds_per_image_median"]
    speed["batch"] = {"1": {"images": 1, "images_per_min": 60 / sequential}}
    for count in (4,) if args.quick else (4, 16):
        speed["batch"][str(count)] = run_part("mi-batch", count, args.resume)
    speed["backend"] = backend_timings(3)
    speed["blender_import"] = {str(n): blender_import(n) for n in (100_000, 1_000_000)}
    report["speed"] = speed
    report["not_measured"] = (
        ["MeshInversion paper preset (skipped by --quick)", "batch of 16 (skipped by --quick)"]
        if args.quick
        else []
    ) + [
        "GAN2Shape paper preset (hours per image on this CPU)",
        "GAN2Shape novel-view IoU and Chamfer (a relief over the input view, not a closed mesh)",
    ]
    report["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report["wall_minutes"] = (time.perf_counter() - started) / 60
    (BENCH / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    (BENCH / "RESULTS.md").write_text(markdown(report))
    print("wrote benchmarks/RESULTS.md, benchmarks/results.json and benchmarks/figures/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 images, fast presets, batch of 4 only")
    parser.add_argument("--images", type=int, help="held-out images per accuracy row (default 8, quick 3)")
    parser.add_argument("--report-only", action="store_true", help="rewrite RESULTS.md from results.json")
    parser.add_argument("--resume", action="store_true", help="reuse rows done earlier (runs/bench_parts)")
    parser.add_argument("--part", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help="with --part, MeshInversion: first eval car")
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.report_only:
        (BENCH / "RESULTS.md").write_text(markdown(json.loads((BENCH / "results.json").read_text())))
        return
    if args.part is None:
        orchestrate(args)
        return
    report = part_gan2shape(args) if args.part.startswith("gan2shape") else part_meshinversion(args)
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
