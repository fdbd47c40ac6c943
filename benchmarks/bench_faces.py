#!/usr/bin/env python3
"""The ``faces`` option (issue 24): face counts, input-view fit, look and cost of a dense export.

MeshInversion, on the example photos: one inversion per photo (``--preset``), then the export
(``to_mesh_result``, previews included, as a job does) at the template's density and at each
requested count. Per count: the triangles written and their error against the request; the mask IoU
of the exported mesh through the aligned (fitted) camera against the photo's mask at the photo
crop's resolution; the PSNR of the textured render through that camera against the template
density's render (pixels both cover: the texture's look); the seconds of the export step and of
the upsampling alone.
Whole jobs: ``run_job`` on the first photo at the template's density and at the largest count
(same seed, the model loaded once), the difference being what the dense export adds. GAN2Shape:
the relief of a short run exported at each count (its face count is set by the grid resolution).
Writes benchmarks/faces.json and the figure benchmarks/faces.png (flat-shaded dense meshes).

    .venv/bin/python benchmarks/bench_faces.py
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from backend.categories import UNIT_BOX  # noqa: E402
from backend.inputs import MIN_SIDE, crop_to_object, load_input, photo_side  # noqa: E402
from backend.jobs import ModelCache, run_job  # noqa: E402
from backend.methods.base import MeshResult  # noqa: E402
from backend.methods.gan2shape.export import relief_with_faces  # noqa: E402
from backend.methods.meshinversion.camera_search import WeakPerspective, view_quaternion  # noqa: E402
from backend.methods.meshinversion.dense import dense_sphere, sphere_size  # noqa: E402
from backend.methods.meshinversion.export import exported_mesh, to_mesh_result  # noqa: E402
from backend.methods.meshinversion.invert import InversionSettings  # noqa: E402
from backend.methods.meshinversion.mesh_gan import exported_uvs  # noqa: E402
from backend.methods.meshinversion.options import Options  # noqa: E402
from backend.methods.meshinversion.template import quad_pairs  # noqa: E402
from backend.models import default_entry, load_model  # noqa: E402
from backend.options import preset_options  # noqa: E402
from backend.polygons import pair_quads  # noqa: E402
from backend.protocol import JobRequest  # noqa: E402
from backend.render.rasterize import rasterize  # noqa: E402
from backend.results import validate_polygons, write_result  # noqa: E402
from backend.weights import Registry  # noqa: E402

COUNTS = (1_000, 20_000, 200_000)
PHOTOS = ("car_01.png", "car_02.png", "car_03.png", "car_04_alpha.png")
VARIANTS = [("template", None, 0.0), *((str(n), n, 0.0) for n in COUNTS),
            *((f"{n} spline", n, 1.0) for n in COUNTS[1:])]  # fmt: skip
"""(name, faces, faces_smoothing) exported per photo; on the 16-ring demo template 1,000 faces is the
template's own vertices with the dense sphere's mirrored diagonals."""
FIGURE_VIEWS = {"top": (0.0, 89.0), "left (-x, seam)": (-90.0, 15.0), "right (+x)": (90.0, 15.0)}
"""Extra views of the figure (azimuth, elevation in degrees; object frame, ``view_quaternion``)."""


def quiet(*_args: object, **_kwargs: object) -> None:
    """No progress output."""


def flat_shaded(
    vertices: torch.Tensor, faces: torch.Tensor, camera: WeakPerspective, size: int
) -> np.ndarray:
    """(S, S) grey image: each face lit by its view-space normal (seams and dents show as steps)."""
    screen = camera.camera().project(vertices[None])
    fragments = rasterize(screen, faces, size, cull_backfaces=True)
    corners = screen[0][faces]
    normals = F.normalize(
        torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), dim=1
    )
    light = F.normalize(torch.tensor([-0.4, -0.5, -1.0]), dim=0)
    shade = 0.25 + 0.75 * (normals @ light).abs()
    face = fragments.pix_to_face[0]
    image = torch.where(face >= 0, shade[face.clamp(min=0)], torch.ones_like(face, dtype=torch.float32))
    return (image.numpy() * 255).astype(np.uint8)


def fitted_view(vertices: torch.Tensor, azimuth: float, elevation: float) -> WeakPerspective:
    """A camera that frames the mean-centred mesh from (azimuth, elevation)."""
    radius = float((vertices - vertices.mean(0)).norm(dim=1).max())
    angles = torch.tensor([[azimuth, elevation]]).deg2rad()
    quaternion = view_quaternion(angles[:, 0], angles[:, 1])
    centre = vertices.mean(0)
    probe = WeakPerspective(quaternion, torch.tensor([0.95 / radius]), torch.zeros(1, 2))
    shift = probe.camera().project(centre[None, None])[0, 0, :2]
    return WeakPerspective(quaternion, torch.tensor([0.95 / radius]), -shift[None])


def meshinversion(photos: list[Path], preset: str, figure: Path) -> dict[str, object]:
    registry = Registry()
    method = load_model(registry, default_entry(registry, "meshinversion"), "cpu")
    options = preset_options(Options, preset)
    settings = InversionSettings.from_options(options)
    model = method.model
    rows, panels = [], []
    for index, path in enumerate(photos):
        image = load_input(path)
        crop = crop_to_object(image, settings.render_size, options.crop_margin)
        photo = crop_to_object(image, photo_side(image, crop.box[2], MIN_SIDE), options.crop_margin)
        result = method.inverter(settings).run([crop.rgb], [crop.mask], 0, quiet)[0]
        texture, _ = method.final_texture(result, photo, options)
        size = photo.mask.shape[0]
        target = torch.from_numpy(photo.mask) > 0.5
        reference = None
        row: dict[str, object] = {"photo": path.name, "photo_pixels": size}
        for key, count, smoothing in VARIANTS:
            started = time.perf_counter()
            to_mesh_result(model, result, crop, {}, texture, True, UNIT_BOX, count, smoothing)
            export_seconds = time.perf_counter() - started
            started = time.perf_counter()
            mesh = exported_mesh(model, result, count, smoothing)
            upsample_seconds = time.perf_counter() - started
            with torch.no_grad():
                render = model.render_exported(
                    mesh.vertices[None], texture[None], result.camera, size, (mesh.faces, mesh.uvs)
                )
            covered = render.mask[0]
            iou = float((covered & target).sum() / (covered | target).sum())
            if reference is None:
                reference = render
            both = covered & reference.mask[0]
            mse = float(((render.rgb[0] - reference.rgb[0]) / 2).pow(2).mean(0)[both].mean())
            faces = len(mesh.faces)
            row[key] = {
                "faces": faces,
                "faces_error": None if count is None else round(abs(faces - count) / count, 4),
                "iou_aligned_camera": round(iou, 4),
                "psnr_vs_template_db": None
                if count is None
                else round(10 * math.log10(1 / max(mse, 1e-12)), 2),
                "export_seconds": round(export_seconds, 3),
                "upsample_seconds": round(upsample_seconds, 3),
            }
            if index == 0 and key == "20000":
                panels.append(
                    ((render.rgb[0].permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).astype(np.uint8)
                )
            if index == 0 and key == "200000 spline":
                panels.append(
                    np.repeat(flat_shaded(mesh.vertices, mesh.faces, result.camera, size)[..., None], 3, 2)
                )
            if index == 0 and key == "200000":
                panels.append(
                    np.repeat(flat_shaded(mesh.vertices, mesh.faces, result.camera, size)[..., None], 3, 2)
                )
                for azimuth, elevation in FIGURE_VIEWS.values():
                    view = fitted_view(mesh.vertices, azimuth, elevation)
                    panels.append(
                        np.repeat(flat_shaded(mesh.vertices, mesh.faces, view, size)[..., None], 3, 2)
                    )
        rows.append(row)
        print(json.dumps(row), flush=True)
    side = min(p.shape[0] for p in panels)
    tiles = [np.asarray(Image.fromarray(p).resize((side, side))) for p in panels]
    Image.fromarray(np.concatenate(tiles, axis=1)).save(figure)
    return {"preset": preset, "photos": rows, "figure_panels": ["20k textured, aligned camera",
            "200k flat, aligned camera", *(f"200k flat, {name}" for name in FIGURE_VIEWS),
            "200k faces_smoothing=1 flat, aligned camera"]}  # fmt: skip


def whole_jobs(photo: Path, preset: str, repeats: int = 2) -> dict[str, object]:
    """Seconds of full jobs at the template's density and at the largest count, alternated ``repeats``
    times after a warm-up (model loaded once); the fastest of each is compared (shared machine)."""
    cache, registry = ModelCache(), Registry()
    seconds: dict[str, list[float]] = {"template": [], str(COUNTS[-1]): []}
    runs = [("warm-up", {})] + [(name, {} if name == "template" else {"faces": COUNTS[-1]})
                                for _ in range(repeats) for name in seconds]  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        for number, (name, overrides) in enumerate(runs):
            out = str(Path(folder) / f"{number}")
            request = JobRequest(str(photo), out, preset=preset, overrides=overrides, id=name)
            outcome = run_job(request, quiet, registry=registry, cache=cache)
            if name in seconds:
                seconds[name].append(round(outcome.summary["seconds"], 2))
    fastest = {name: min(values) for name, values in seconds.items()}
    return {"photo": photo.name, "job_seconds": seconds,
            "added_seconds_fastest": round(fastest[str(COUNTS[-1])] - fastest["template"], 2)}  # fmt: skip


def write_seconds() -> dict[str, float]:
    """Seconds ``write_result`` takes (mesh.npz, mesh.glb, texture, result.json) for a 1024 px texture
    and the template's 960 faces vs 200k faces (the part of a job's extra time outside the export)."""
    texture = np.random.default_rng(0).integers(0, 256, (1024, 1024, 3), dtype=np.uint8)
    camera = {"type": "ORTHO", "matrix_world": np.eye(4).tolist(), "ortho_scale": 1.0,
              "crop_box": [0, 0, 1], "image_size": [1, 1]}  # fmt: skip
    timings = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, (rings, segments) in (("template", (16, 32)), (str(COUNTS[-1]), sphere_size(COUNTS[-1]))):
            sphere = dense_sphere(rings, segments)
            uvs = exported_uvs(sphere.corner_uvs, 256).numpy()
            mesh = MeshResult(
                sphere.vertices.float().numpy(), sphere.faces.int().numpy(), uvs, texture, camera, {}, {}
            )
            started = time.perf_counter()
            write_result(mesh, Path(folder) / name, {"method": "meshinversion"})
            timings[name] = round(time.perf_counter() - started, 3)
    return timings


def best_of(run: Callable[[], object], repeats: int = 3) -> float:
    """The fastest of ``repeats`` runs, in seconds (the machine is shared)."""
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return round(min(seconds), 4)


def npz_write(folder: Path, arrays: dict[str, np.ndarray]) -> tuple[float, int]:
    """Seconds and bytes of ``mesh.npz`` written as ``results.py`` writes it."""
    path = folder / "mesh.npz"
    return best_of(lambda: np.savez_compressed(path, **arrays)), path.stat().st_size


def quads_seconds() -> dict[str, object]:
    """What the ``quads`` option adds to an export: the polygons built (``pair_quads``) and checked
    (``validate_polygons``) and the larger mesh.npz, on the spheres MeshInversion writes (topology
    only: the unit sphere's vertices stand in for a fitted shape) and on a GAN2Shape relief (a
    synthetic dome in a disc mask covering about half the photo, 256 px)."""
    rows: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, (rings, segments) in (("template", (16, 32)), *((str(n), sphere_size(n)) for n in COUNTS)):
            sphere = dense_sphere(rings, segments)
            faces, uvs = sphere.faces.int().numpy(), exported_uvs(sphere.corner_uvs, 256).numpy()
            pairs = quad_pairs(rings, segments).numpy()
            polygons = pair_quads(faces, uvs, pairs)
            arrays = {"vertices": sphere.vertices.float().numpy(), "faces": faces, "uvs": uvs}
            plain_seconds, plain_bytes = npz_write(Path(folder), arrays)
            arrays.update(polygon_sizes=polygons.sizes, polygon_vertices=polygons.vertices,
                          polygon_uvs=polygons.uvs)  # fmt: skip
            quads_npz_seconds, quads_bytes = npz_write(Path(folder), arrays)
            rows[name] = {
                "faces": len(faces), "polygons": len(polygons.sizes),
                "quads": int((polygons.sizes == 4).sum()),
                "build_seconds": best_of(lambda f=faces, u=uvs, p=pairs: pair_quads(f, u, p)),
                "check_seconds": best_of(lambda p=polygons, f=faces, u=uvs: validate_polygons(p, f, u)),
                "npz_seconds": [plain_seconds, quads_npz_seconds], "npz_bytes": [plain_bytes, quads_bytes],
            }  # fmt: skip
    rows_, cols = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
    mask = (((rows_ - 128) / 100) ** 2 + ((cols - 120) / 80) ** 2 <= 1).float()
    depth, view = 1.0 - 0.05 * mask, torch.zeros(6)
    relief = {}
    for count in COUNTS[1:]:

        def export(quads: bool, n: int = count) -> object:
            return relief_with_faces(depth, view, mask, n, view_uvs=True, quads=quads)[0]

        plain, quads = export(False), export(True)
        relief[str(count)] = {
            "faces": [len(plain.faces), len(quads.faces)], "polygons": len(quads.polygons.sizes),
            "seconds": [best_of(lambda: export(False)), best_of(lambda: export(True))],
        }  # fmt: skip
    return {"meshinversion": rows, "gan2shape_relief": relief}


def gan2shape(photo: Path) -> dict[str, object]:
    """Relief face counts for each request, from one short fast run."""
    from backend.methods.gan2shape.options import Options as G2SOptions

    registry = Registry()
    method = load_model(registry, default_entry(registry, "gan2shape"), "cpu")
    options = preset_options(G2SOptions, "fast")
    outcome = method.reconstruct(load_input(photo), options, 0, quiet)
    counts = {}
    for count in COUNTS:
        outcome.options = preset_options(G2SOptions, "fast", faces=count, previews=False)
        started = time.perf_counter()
        result = method.export(outcome)
        faces = len(result.faces)
        counts[str(count)] = {"faces": faces, "faces_error": round(abs(faces - count) / count, 4),
                              "resolution": result.info["mesh"]["resolution"],
                              "export_seconds": round(time.perf_counter() - started, 3)}  # fmt: skip
    return {"photo": photo.name, "counts": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--photos", type=int, default=len(PHOTOS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "faces.json"))
    parser.add_argument("--figure", default=str(ROOT / "benchmarks" / "faces.png"))
    parser.add_argument("--skip-gan2shape", action="store_true")
    parser.add_argument("--jobs-only", action="store_true", help="only the job and write timings, into --out")
    parser.add_argument("--quads-only", action="store_true", help="only the quads option's costs, into --out")
    args = parser.parse_args()
    torch.manual_seed(0)
    photos = [ROOT / "examples" / name for name in PHOTOS[: args.photos]]
    if args.quads_only:
        report = json.loads(Path(args.out).read_text())
        report["quads"] = quads_seconds()
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["quads"], indent=2))
        return
    if args.jobs_only:
        report = json.loads(Path(args.out).read_text())
        report["meshinversion_jobs"] = whole_jobs(photos[0], args.preset)
        report["write_result_seconds"] = write_seconds()
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(json.dumps(report["meshinversion_jobs"], indent=2))
        return
    report = {
        "device": "cpu",
        "threads": torch.get_num_threads(),
        "meshinversion": meshinversion(photos, args.preset, Path(args.figure)),
        "meshinversion_jobs": whole_jobs(photos[0], args.preset),
        "write_result_seconds": write_seconds(),
        "quads": quads_seconds(),
    }
    if not args.skip_gan2shape:
        report["gan2shape"] = gan2shape(photos[0])
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
