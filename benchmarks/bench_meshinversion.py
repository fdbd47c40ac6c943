#!/usr/bin/env python3
"""MeshInversion accuracy and speed on held-out procedural cars, against the three baselines.

For each held-out seed (``workbench.splits``; ``--split validation`` for tuning) the procedural car is
rendered by
``workbench.data.render_sample.render_cars`` (azimuth 0-360 deg, elevation 0-35 deg, ambient +
Lambertian light, procedural background), cropped like a user photo (``crop_to_object``), and
reconstructed by MeshInversion and by the baselines (a) mean shape + camera fit, (b) free-form
deformation and (c) the category's mean true car + camera fit.

Metrics per image: mask IoU in the input view (prediction in its fitted camera vs the photo's
mask); the mean silhouette IoU over 8 novel views (azimuth 0, 45, ..., 315 deg at 20 deg
elevation in the object frame; both meshes mean-centred and drawn at their own camera scale, so a
wrong shape, size or orientation all lower it); Chamfer-L2 between surface samples after
centring and scaling to unit RMS radius. Appearance, with the exported texture (the preset's
``texture`` mode): PSNR and SSIM in the input view on the true mask ∩ the rendered mask; in the
same 8 novel views, the reconstruction and the true mesh with its true texture rendered unlit on
white, PSNR on the union of both silhouettes and the body colour error (CIEDE2000 between the
mean colours of the two renders' object pixels, averaged over the views). The baselines are
scored with their own (mean) texture and again with the same texture stage as the method.
Speed: seconds per image one by one and in one batch; peak memory is the maximum resident set.

    .venv/bin/python benchmarks/bench_meshinversion.py --images 8 --preset fast
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from metrics import ciede2000, masked_psnr, masked_ssim, normalise_scale, srgb_to_lab  # noqa: E402

from backend.inputs import InputImage, crop_to_object  # noqa: E402
from backend.methods.meshinversion.camera_search import (  # noqa: E402
    WeakPerspective,
    silhouettes,
    view_quaternion,
)
from backend.methods.meshinversion.encoder import PoseLatentEncoder, encoder_input  # noqa: E402
from backend.methods.meshinversion.generator import Generator, GeneratorConfig  # noqa: E402
from backend.methods.meshinversion.invert import (  # noqa: E402
    RESEARCH,
    InversionResult,
    InversionSettings,
    Targets,
)
from backend.methods.meshinversion.losses import mask_iou, one_sided_chamfer  # noqa: E402
from backend.methods.meshinversion.mesh_gan import MeshGAN  # noqa: E402
from backend.methods.meshinversion.method import MeshInversion  # noqa: E402
from backend.methods.meshinversion.options import ENCODER_STARTS, Options  # noqa: E402
from backend.models import default_entry, load_model  # noqa: E402
from backend.options import as_dict, parse_options  # noqa: E402
from backend.render.cameras import quaternion_matrix  # noqa: E402
from backend.render.primitives import sample_surface  # noqa: E402
from backend.weights import Registry  # noqa: E402
from workbench.baselines import Baselines  # noqa: E402
from workbench.data.render_sample import render_cars  # noqa: E402
from workbench.splits import SPLITS, split_seeds  # noqa: E402

NOVEL_AZIMUTHS = [45.0 * k for k in range(8)]
NOVEL_ELEVATION = 20.0
PHOTO_SIZE = 320
Mesh = tuple[torch.Tensor, torch.Tensor]
"""(vertices (V, 3), faces (F, 3)) in the object frame."""


def held_out_photos(count: int, size: int, texture_size: int, split: str = "eval") -> list[dict]:
    """Held-out renders (``render_cars``: lit, over procedural backgrounds) cropped like a user photo,
    with their ground truth: vertices and texture, camera rotation and scale in the crop's NDC.
    ``split="validation"`` draws the tuning seeds instead of the evaluation ones."""
    seeds = split_seeds(split, count)
    renders = [render_cars(seeds[i : i + 4], PHOTO_SIZE, texture_size) for i in range(0, count, 4)]
    photos = []
    for cars in renders:
        for i in range(len(cars.seeds)):
            rgb = cars.image[i].astype(np.float32) / 255
            image = InputImage(rgb, cars.mask[i], f"car-{cars.seeds[i]}")
            crop = crop_to_object(image, size, 0.05)
            quaternion = torch.from_numpy(cars.quaternion[i : i + 1]).float()
            photos.append({
                "crop": crop,
                "photo": crop_to_object(image, round(crop.box[2]), 0.05),
                "vertices": torch.from_numpy(cars.vertices[i]),
                "faces": torch.from_numpy(cars.faces).long(),
                "texture": torch.from_numpy(cars.texture[i]).permute(2, 0, 1).float() / 127.5 - 1,
                "scale": float(cars.scale[i]) * PHOTO_SIZE / crop.box[2],
                "rotation": quaternion_matrix(quaternion)[0],
                "azimuth": math.degrees(float(cars.azimuth[i])),
                "elevation": math.degrees(float(cars.elevation[i])),
            })  # fmt: skip
    return photos


def novel_view_iou(predicted: Mesh, scale: float, truth: Mesh, truth_scale: float) -> float:
    """Mean silhouette IoU over the novel views, each mesh mean-centred at its own camera scale."""
    count = len(NOVEL_AZIMUTHS)
    quaternions = view_quaternion(
        torch.tensor(NOVEL_AZIMUTHS).deg2rad(), torch.full((count,), math.radians(NOVEL_ELEVATION))
    )
    masks = []
    for (vertices, faces), s in ((predicted, scale), (truth, truth_scale)):
        centred = (vertices - vertices.mean(dim=0))[None].expand(count, -1, -1)
        camera = WeakPerspective(quaternions, torch.full((count,), s), torch.zeros(count, 2))
        masks.append(silhouettes(centred, faces, camera, 256)[0])
    return float(mask_iou(*masks).mean())


def mesh_chamfer_l2(predicted: Mesh, truth: Mesh) -> float:
    """Symmetric Chamfer-L2 between 5,000 surface points of each mesh (each drawn from seed 0), both
    centred and scaled by ``normalise_scale`` (the canonical frame fixes the orientation)."""
    clouds = [
        normalise_scale(sample_surface(vertices, faces, 5000, torch.Generator().manual_seed(0)))[None]
        for vertices, faces in (predicted, truth)
    ]
    every = torch.ones(1, 5000, dtype=torch.bool)
    forward = one_sided_chamfer(clouds[0], every, clouds[1], every)
    return float(forward + one_sided_chamfer(clouds[1], every, clouds[0], every))


def input_view_appearance(
    model: MeshGAN, result: InversionResult, texture: torch.Tensor, photo: dict
) -> dict:
    """PSNR (dB) and SSIM of the input-view rendering with the exported texture, colours in [0, 1], on
    the pixels both the true mask and the rendering cover."""
    crop = photo["crop"]
    with torch.no_grad():
        size = crop.mask.shape[0]
        rendering = model.render_exported(result.vertices[None], texture[None], result.camera, size)
    predicted = ((rendering.rgb[0] + 1) / 2).permute(1, 2, 0)
    both = rendering.mask[0] & torch.from_numpy(crop.mask >= 0.5)
    truth = torch.from_numpy(crop.rgb)
    return {
        "input_psnr": masked_psnr(predicted, truth, both),
        "input_ssim": masked_ssim(predicted, truth, both),
    }


def novel_view_renders(model: MeshGAN, vertices: torch.Tensor, texture: torch.Tensor, scale: float,
                       exported: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(8, 256, 256, 3) unlit renders on white in [0, 1] and (8, 256, 256) masks from the novel views,
    the mesh mean-centred at its own camera scale (``exported``: the texture is addressed by the
    exported UVs, else the GAN's own convention)."""
    count = len(NOVEL_AZIMUTHS)
    quaternions = view_quaternion(
        torch.tensor(NOVEL_AZIMUTHS).deg2rad(), torch.full((count,), math.radians(NOVEL_ELEVATION))
    )
    centred = (vertices - vertices.mean(dim=0))[None].expand(count, -1, -1)
    camera = WeakPerspective(quaternions, torch.full((count,), scale), torch.zeros(count, 2))
    textures = texture[None].expand(count, -1, -1, -1)
    with torch.no_grad():
        render = model.render_exported if exported else model.render
        rendering = render(centred, textures, camera, 256)
    rgb = torch.where(rendering.mask[:, None], (rendering.rgb + 1) / 2, torch.ones_like(rendering.rgb))
    return rgb.permute(0, 2, 3, 1), rendering.mask


def novel_view_appearance(
    model: MeshGAN, result: InversionResult, texture: torch.Tensor, photo: dict
) -> dict:
    """Novel-view PSNR on the union of the silhouettes and the body colour error (CIEDE2000)."""
    scale = float(result.camera.scale[0])
    predicted, predicted_mask = novel_view_renders(model, result.vertices, texture, scale, exported=True)
    truth_model = template_renderer(int(photo["texture"].shape[-1]))
    truth, truth_mask = novel_view_renders(truth_model, photo["vertices"], photo["texture"], photo["scale"],
                                           exported=False)  # fmt: skip
    union = predicted_mask | truth_mask
    psnr = masked_psnr(predicted.reshape(-1, 256, 3), truth.reshape(-1, 256, 3), union.reshape(-1, 256))
    errors = []
    for view in range(len(NOVEL_AZIMUTHS)):
        if predicted_mask[view].any() and truth_mask[view].any():
            means = [image[view][mask[view]].mean(dim=0) for image, mask in ((predicted, predicted_mask),
                                                                              (truth, truth_mask))]
            errors.append(float(ciede2000(srgb_to_lab(means[0].double()), srgb_to_lab(means[1].double()))))
    return {"novel_psnr": psnr, "body_colour_error": float(np.mean(errors)) if errors else math.nan}


def evaluate(model: MeshGAN, results: list[InversionResult], photos: list[dict],
             textures: list[torch.Tensor]) -> list[dict]:
    """Per-image shape and appearance metrics; ``textures`` are the exported ones (3, N, N) in [-1, 1]."""
    rows = []
    for result, photo, texture in zip(results, photos, textures, strict=True):
        predicted, truth = (result.vertices, model.faces), (photo["vertices"], photo["faces"])
        rows.append({
            "input_iou": result.mask_iou,
            "novel_iou": novel_view_iou(predicted, float(result.camera.scale[0]), truth, photo["scale"]),
            "chamfer_l2": mesh_chamfer_l2(predicted, truth),
            "rotation_error_deg": rotation_error_deg(photo["rotation"], result.camera.rotation()[0].detach()),
            "start": result.start,
            **input_view_appearance(model, result, texture, photo),
            **novel_view_appearance(model, result, texture, photo),
        })  # fmt: skip
    return rows


METRICS = (
    "input_iou", "novel_iou", "chamfer_l2", "input_psnr", "input_ssim", "novel_psnr", "body_colour_error",
)  # fmt: skip


def summary(rows: list[dict], seconds: float) -> dict:
    return {
        **{f"{name}_mean": float(np.mean([r[name] for r in rows])) for name in METRICS},
        "pose_within_20_deg": float(np.mean([r["rotation_error_deg"] <= 20 for r in rows])),
        "seconds_per_image": seconds / len(rows),
        "per_image": rows,
    }


def final_textures(method: MeshInversion, results: list[InversionResult], photos: list[dict],
                   options: Options) -> list[torch.Tensor]:
    """The exported texture of each result under the ``texture`` mode of ``options``."""
    pairs = zip(results, photos, strict=True)
    return [method.final_texture(result, photo["photo"], options)[0] for result, photo in pairs]


def rotation_error_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    """Angle of the rotation between two (3, 3) rotations."""
    cosine = ((a.T @ b).trace() - 1) / 2
    return math.degrees(math.acos(float(cosine.clamp(-1, 1))))


def template_renderer(texture_size: int) -> MeshGAN:
    """A MeshGAN on the 16-ring template of the ground truth; only its renderer is used, so the
    (random) generator weights do not matter."""
    return MeshGAN(Generator(GeneratorConfig(texture_resolution=texture_size, width=1 / 16)))


def oracle_pose(
    settings: InversionSettings, photos: list[dict], seed: int, encoder: PoseLatentEncoder | None = None
) -> dict:
    """The pose start and camera fit alone, given the true mesh and texture: how often is the pose
    (front/back, sides) recovered, independent of the generator's shapes? The start is the camera
    search, or with ``encoder`` (``start=encoder``) its guessed view as the one hypothesis."""
    model = template_renderer(int(photos[0]["texture"].shape[-1]))
    baselines = Baselines(model, settings)
    errors, ious = [], []
    for photo in photos:
        crop, rng = photo["crop"], torch.Generator().manual_seed(seed)
        targets = Targets.from_arrays([crop.rgb], [crop.mask], torch.device("cpu"))
        shape, texture = photo["vertices"][None], photo["texture"][None]
        views = None
        if encoder is not None:
            with torch.no_grad():
                views = encoder.guess(encoder_input(targets.rgb, targets.mask)).view()[:, None]
        start = baselines.place(photo["vertices"], photo["texture"], targets, rng, views)
        camera, _ = baselines.optimise(targets, start, lambda s=shape: s, lambda t=texture: t, [], rng,
                                       lambda *a, **k: None, "oracle")  # fmt: skip
        errors.append(rotation_error_deg(photo["rotation"], camera.rotation()[0]))
        with torch.no_grad():
            ious.append(float(mask_iou(model.silhouette(shape, camera, settings.render_size), targets.mask)))
    return {
        "rotation_error_deg": errors,
        "within_20_deg": float(np.mean([e <= 20 for e in errors])),
        "median_rotation_error_deg": float(np.median(errors)),
        "input_iou_mean": float(np.mean(ious)),
        "azimuths": [p["azimuth"] for p in photos],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="meshinversion weights id (default: the registry's first)")
    parser.add_argument("--weights-dir", help="user weights folder (default: the backend's)")
    parser.add_argument("--preset", default="fast", choices=("fast", "paper"))
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4, help="images in the batch-mode timing run")
    parser.add_argument("--seed", type=int, default=0, help="reconstruction seed (photos are fixed)")
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--skip-oracle", action="store_true")
    parser.add_argument(
        "--oracle-only",
        action="store_true",
        help="only the pose recovery given the true mesh (of the weights only the start encoder is used)",
    )
    parser.add_argument("--split", default="eval", choices=SPLITS,
                        help="cars to run on: the held-out evaluation split, or validation for tuning")
    parser.add_argument("--set", help="JSON object of option overrides on top of the preset (and of the "
                        "research settings flat_weight, restarts)")
    parser.add_argument("--out", help="JSON report (default benchmarks/meshinversion[_oracle].json)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out or ROOT / "benchmarks" / f"meshinversion{'_oracle' if args.oracle_only else ''}.json")
    overrides = dict(json.loads(args.set)) if args.set else {}
    research = {k: overrides.pop(k) for k in list(overrides) if k in RESEARCH}
    texture_options = parse_options(Options, args.preset, overrides)
    settings = InversionSettings.from_options(texture_options, **research)

    registry = Registry(args.weights_dir)
    entry = registry.find(args.weights) if args.weights else default_entry(registry, "meshinversion")
    method: MeshInversion = load_model(registry, entry, "cpu")
    encoder = method.start_encoder() if settings.start in ENCODER_STARTS else None
    if args.oracle_only:
        photos = held_out_photos(args.images, settings.render_size, 256, args.split)
        report = {
            "preset": args.preset,
            "images": args.images,
            "start": settings.start if encoder is not None else "search",
            "oracle_pose": oracle_pose(settings, photos, args.seed, encoder),
        }
        out.write_text(json.dumps(report, indent=1))
        print(
            "oracle pose",
            {k: v for k, v in report["oracle_pose"].items() if not isinstance(v, list)},
            "->",
            out,
        )
        return

    model = method.model
    assert model is not None, f"{entry.id} is not a generator"
    photos = held_out_photos(args.images, settings.render_size, model.config.texture_resolution, args.split)
    rgbs, masks = [p["crop"].rgb for p in photos], [p["crop"].mask for p in photos]

    def quiet(*_a, **_k) -> None:
        """No progress output."""

    report: dict = {"weights": entry.id, "preset": args.preset, "split": args.split, "images": args.images,
                    "settings": dataclasses.asdict(settings), "options": as_dict(texture_options)}
    inverter = method.inverter(settings)
    started = time.perf_counter()
    results = [
        inverter.run([rgb], [mask], args.seed, quiet)[0] for rgb, mask in zip(rgbs, masks, strict=True)
    ]
    textures = final_textures(method, results, photos, texture_options)
    elapsed = time.perf_counter() - started
    report["meshinversion"] = summary(evaluate(model, results, photos, textures), elapsed)
    print("meshinversion", {k: v for k, v in report["meshinversion"].items() if k != "per_image"}, flush=True)

    batch = min(args.batch, args.images)
    if batch > 0:
        started = time.perf_counter()
        inverter.run(rgbs[:batch], masks[:batch], args.seed, quiet)
        report["batch_mode"] = {"images": batch, "seconds_per_image": (time.perf_counter() - started) / batch}
        print("batch", report["batch_mode"], flush=True)

    if not args.skip_oracle:
        report["oracle_pose"] = oracle_pose(settings, photos, args.seed, encoder)
        print(
            "oracle pose",
            {k: report["oracle_pose"][k] for k in ("within_20_deg", "median_rotation_error_deg")},
        )

    if not args.skip_baselines:
        baselines = Baselines(model, settings)
        for name, run in (
            ("baseline_mean_shape", baselines.mean_shape),
            ("baseline_free_form", baselines.free_form),
            ("baseline_category_mean", baselines.category_mean),
        ):
            started = time.perf_counter()
            results = [run([rgb], [mask], args.seed, quiet)[0] for rgb, mask in zip(rgbs, masks, strict=True)]
            elapsed = time.perf_counter() - started
            own = [result.texture for result in results]
            report[name] = summary(evaluate(model, results, photos, own), elapsed)
            print(name, {k: v for k, v in report[name].items() if k != "per_image"}, flush=True)
            if texture_options.texture != "generated":
                textured = final_textures(method, results, photos, texture_options)
                report[f"{name}_textured"] = summary(evaluate(model, results, photos, textured), elapsed)
                shown = {k: v for k, v in report[f"{name}_textured"].items() if k != "per_image"}
                print(f"{name}_textured", shown, flush=True)

    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["machine"] = {
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }
    out.write_text(json.dumps(report, indent=1))
    print("wrote", out, "peak RSS MB", round(report["peak_rss_mb"]))


if __name__ == "__main__":
    main()
