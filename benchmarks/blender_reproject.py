"""Re-project Photo after an artist's edit, checked through Blender (issue 24).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/blender_reproject.py --out benchmarks/blender_reproject.json

The add-on (the built extension zip, installed as a user would) reconstructs an eval photo with
MeshInversion ``fast``; the mesh is then edited as an artist might (subdivided, displaced a little
along its normals by a noise texture, as modifiers) and **Re-project Photo** bakes the photo onto
the edited mesh (``tests/blender/bpy_scenarios.py::scenario_reproject``). Each stage (the
reconstruction, the reconstruction re-projected without an edit, the edit with its old texture,
the edit re-projected) is rendered through the aligned camera in a fresh bpy process and scored
against the photo on its true mask (``blender_overlay.py``: silhouette IoU, PSNR where both
cover); the unedited re-projection is also scored against the reconstruction's render (it must
look the same). The texels the photo does not see (farther than an eighth of the texture from any
seen texel) must keep the previous texture. The figure (``benchmarks/figures/reproject.png``):
photo | reconstruction, edited, re-projected through the camera, all cropped to the object; below,
the same three from behind on the left (the side the photo does not show).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import blender_overlay  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from backend.inputs import crop_box  # noqa: E402
from backend.render.bake import bake_photo  # noqa: E402
from backend.reproject.camera import renderer_camera  # noqa: E402
from backend.reproject.job import load_photo, read_source  # noqa: E402

SCENARIO = ROOT / "tests" / "blender" / "bpy_scenarios.py"
STAGES = ("before", "edited", "after")
"""The reconstruction, the edited mesh with its old texture, the edited mesh re-projected (drawn)."""
SCORED = ("before", "same", *STAGES[1:])
"""Also scored: the reconstruction re-projected without an edit, which must look as it did."""
DEFAULT_STRENGTH = 0.05
"""Displacement of the edit, in units of the mesh's largest extent: up to ~2.5 %."""


def run_scenario(args: dict[str, Any], python: str, env: dict[str, str]) -> dict[str, Any]:
    """``scenario_reproject`` in a fresh bpy process; what it reports."""
    command = [python, str(SCENARIO), "reproject", json.dumps(args)]
    stdout = blender_overlay.run_logged(command, env, timeout=900)
    line = next(line for line in reversed(stdout.splitlines()) if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def unseen_texels(reprojected: Path, size: int) -> np.ndarray:
    """(N, N) bool: texels of the re-projected mesh farther than N / 8 texels (u wraps) from any texel
    the photo sees; the seam blend fades out well within that distance."""
    source = read_source(reprojected)
    image = load_photo(source)
    with np.load(reprojected / "mesh.npz") as mesh:
        vertices, faces, uvs = (torch.from_numpy(mesh[key]) for key in ("vertices", "faces", "uvs"))
    info = json.loads((reprojected / "result.json").read_text())["info"]["reprojection"]
    crop = crop_box(image, source.camera["crop_box"], info["photo_pixels"])
    photo, mask = torch.from_numpy(crop.rgb).permute(2, 0, 1), torch.from_numpy(crop.mask)
    bake = bake_photo(vertices, faces.long(), uvs, renderer_camera(source.camera), photo, mask, size)
    seen = (bake.weight > 0).float()[None, None]
    radius = size // 8
    near = F.max_pool2d(F.pad(seen, (radius, radius, 0, 0), mode="circular"), 2 * radius + 1, stride=1,
                        padding=(radius, 0))[0, 0] > 0  # fmt: skip
    return (bake.covered & ~near).numpy()


def evaluate(
    zip_path: Path,
    work: Path,
    figures: Path,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
    car: int = 8,
    strength: float = DEFAULT_STRENGTH,
    backend_python: str = sys.executable,
) -> dict[str, Any]:
    """Run the scenario on eval ``car``, render and score each stage, compare the textures, draw.
    ``python`` has bpy (it may be another Blender line's); ``backend_python`` runs the backend."""
    if env is None:
        env = {k: v for k, v in blender_overlay.bench_env().items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    for name in ("arrays", "blends", "user"):
        (work / name).mkdir(parents=True, exist_ok=True)
    photo_path = blender_overlay.eval_photo(car)
    scenario = run_scenario({
        "zip": str(zip_path), "python": backend_python, "weights_dir": "", "image": str(photo_path),
        "user": str(work / "user"), "arrays": str(work / "arrays"), "blends": str(work / "blends"),
        "strength": strength, "settings": {"method": "meshinversion", "preset": "fast", "seed": 0},
    }, python, {**env, "BLENDER_USER_RESOURCES": str(work / "user")})  # fmt: skip
    photo, mask = blender_overlay.load(photo_path, "RGB"), blender_overlay.true_masks()[car]
    scores, renders = {}, {}
    for stage in SCORED:
        png = work / f"{stage}.png"
        blend = work / "blends" / f"{stage}.blend"
        blender_overlay.render_blend(blend, png, photo.shape[1::-1], python, env)
        renders[stage] = blender_overlay.load(png, "RGBA")
        scores[stage] = blender_overlay.score(renders[stage], photo, mask)
    reference = renders["before"]
    identity = blender_overlay.score(renders["same"], reference[..., :3], reference[..., 3] >= 0.5)
    before, after = (np.load(work / "arrays" / f"{name}.npy") for name in ("before", "after"))
    unseen = unseen_texels(Path(scenario["reprojected"][0]), after.shape[0])
    change = np.abs(after - before).max(axis=-1)
    figures.mkdir(parents=True, exist_ok=True)
    camera = json.loads((Path(scenario["reprojected"][0]) / "result.json").read_text())["camera"]
    save_figure(photo, renders, camera["crop_box"], work / "blends", figures / "reproject.png")
    return {
        "car": car,
        "strength": strength,
        "scores": {stage: {k: scores[stage][k] for k in ("iou", "psnr", "pixels")} for stage in SCORED},
        "identity": {"iou": identity["iou"], "psnr": identity["psnr"]},
        "unseen": {
            "fraction_of_texture": float(unseen.mean()),
            "max_change": float(change[unseen].max()) if unseen.any() else None,
            "mean_change": float(change[unseen].mean()) if unseen.any() else None,
        },
        "seen_mean_change": float(change[~unseen].mean()),
        "seen_changed_fraction": float((change[~unseen] > 1 / 255).mean()),
        "scenario": scenario,
    }


def save_figure(
    photo: np.ndarray, renders: dict[str, np.ndarray], box: list[float], blends: Path, path: Path
) -> None:
    """Top: photo | each stage through the aligned camera, all cropped to the object's square ``box``
    (over grey). Bottom: a grey tile | each stage from behind on the left."""
    grey = blender_overlay.GREY
    x0, y0, side = (round(v) for v in box)

    def tile(rgb: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
        if alpha is not None:
            rgb = rgb * alpha[..., None] + grey * (1 - alpha[..., None])
        return np.asarray(Image.fromarray((rgb.clip(0, 1) * 255).round().astype(np.uint8)).resize((256, 256)))

    def cropped(image: np.ndarray) -> np.ndarray:
        padded = np.pad(image, ((side, side), (side, side), (0, 0)), mode="edge")
        return padded[y0 + side : y0 + 2 * side, x0 + side : x0 + 2 * side]

    top = [tile(cropped(photo))]
    top += [tile(cropped(renders[stage])[..., :3], cropped(renders[stage])[..., 3]) for stage in STAGES]
    novel = [blender_overlay.load(blends / f"{stage}_novel.png", "RGBA") for stage in STAGES]
    bottom = [tile(np.full((256, 256, 3), grey))] + [tile(n[..., :3], n[..., 3]) for n in novel]
    image = np.concatenate([np.concatenate(top, axis=1), np.concatenate(bottom, axis=1)], axis=0)
    Image.fromarray(image, "RGB").save(path)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zip", type=Path, help="the extension zip (default: build.py package builds it)")
    parser.add_argument("--car", type=int, default=8)
    parser.add_argument("--strength", type=float, default=DEFAULT_STRENGTH)
    parser.add_argument("--out", type=Path, required=True, help="the report JSON")
    args = parser.parse_args(argv)
    if args.zip is None:
        subprocess.run([sys.executable, str(ROOT / "build.py"), "package"], check=True, cwd=ROOT)
        args.zip = next((ROOT / "dist").glob("reconstruct_from_image-*.zip"))
    figures = ROOT / "benchmarks" / "figures"
    with tempfile.TemporaryDirectory(prefix="blender_reproject_") as tmp:
        report = evaluate(args.zip, Path(tmp), figures, car=args.car, strength=args.strength)
    report.pop("scenario")
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    for stage in SCORED:
        score = report["scores"][stage]
        print(f"{stage:>7}: IoU {score['iou']:.4f}  PSNR {score['psnr']:.2f} dB")
    print(f"re-projected unedited vs the reconstruction, render to render: {report['identity']}")
    print(f"unseen texels: {report['unseen']}")
    print(f"wrote {args.out} and benchmarks/figures/reproject.png")


if __name__ == "__main__":
    main(sys.argv[1:])
