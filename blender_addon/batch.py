"""Reconstruct many photos headless, one .blend / .glb / preview per photo, and a summary table.

    blender -b -P <addon>/batch.py -- --input DIR_OR_FILES --output DIR [--method ...] [--save-blend]
        [--export glb] [--preview]
    python <addon>/batch.py --input ... --output ...        (with the ``bpy`` module installed)

The exit code is 1 when any photo failed, 2 for bad arguments. The add-on is enabled through
Blender's extension system when this file lives in an installed extension, else (a source
checkout) imported from the folder beside this file.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import shlex
import sys
import time
from pathlib import Path
from types import ModuleType

import bpy

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
PREVIEW_SIZE = 256


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="batch.py", description="Reconstruct photos into textured meshes.")
    parser.add_argument("--input", nargs="+", required=True, help="image files and/or folders of images")
    parser.add_argument("--output", required=True, help="folder for the results (created)")
    parser.add_argument("--method", default="meshinversion", choices=("meshinversion", "gan2shape"))
    parser.add_argument("--weights", default=None, help="weights id (default: the backend's default)")
    parser.add_argument("--preset", default="fast", choices=("fast", "paper"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mask", default="auto", choices=("auto", "alpha", "grabcut", "none"))
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="method option override"
    )
    parser.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"))
    parser.add_argument("--aligned-camera", action="store_true", help="add the estimated camera")
    parser.add_argument("--save-blend", action="store_true", help="save OUTPUT/<name>.blend per photo")
    parser.add_argument("--export", choices=("glb",), action="append", default=[], help="export format")
    parser.add_argument("--preview", action="store_true", help="Cycles render OUTPUT/<name>_preview.png")
    parser.add_argument("--backend-python", default=None, help="Python of the backend environment")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return parser.parse_args(argv)


def script_args() -> list[str]:
    """Blender passes its own arguments too; ours follow ``--`` (the bpy module passes only ours)."""
    return sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]


def collect_images(inputs: list[str]) -> list[Path]:
    images: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            images.extend(sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            images.append(item)
    return images


def load_addon() -> tuple[ModuleType, bool]:
    """The add-on module, and whether this script registered it itself (then it must unregister)."""
    import addon_utils

    here = Path(__file__).resolve().parent
    for repo in bpy.context.preferences.extensions.repos:
        if repo.enabled and Path(repo.directory).resolve() == here.parent:
            name = f"bl_ext.{repo.module}.{here.name}"
            if name not in bpy.context.preferences.addons:
                addon_utils.enable(name, default_set=True)
            return sys.modules[name], False
    if str(here.parent) not in sys.path:  # a source checkout: the add-on and backend/ are siblings
        sys.path.insert(0, str(here.parent))
    module = importlib.import_module(here.name)
    module.register()
    return module, True


def clear_scene() -> None:
    """Each photo's .blend holds only its own reconstruction."""
    scene = bpy.context.scene
    bpy.data.batch_remove([obj for obj in scene.objects])
    for collection in (
        bpy.data.meshes,
        bpy.data.materials,
        bpy.data.images,
        bpy.data.cameras,
        bpy.data.lights,
    ):
        bpy.data.batch_remove([block for block in collection if block.users == 0])


def render_preview(obj: bpy.types.Object, path: Path) -> None:
    """A small Cycles CPU render from the front-left, framed on the object (works without a GPU)."""
    scene = bpy.context.scene
    radius = max(max(obj.dimensions) / 2, 1e-3)
    centre = obj.matrix_world.translation
    cam_data = bpy.data.cameras.new("Preview camera")
    cam_data.lens = 50
    camera = bpy.data.objects.new("Preview camera", cam_data)
    direction = (0.55, -1.0, 0.45)
    norm = math.sqrt(sum(d * d for d in direction))
    distance = radius / math.tan(cam_data.angle / 2) * 1.6
    camera.location = [centre[i] + direction[i] / norm * distance for i in range(3)]
    camera.rotation_euler = (camera.location - centre).to_track_quat("Z", "Y").to_euler()
    light_data = bpy.data.lights.new("Preview light", "SUN")
    light_data.energy = 3.0
    light = bpy.data.objects.new("Preview light", light_data)
    light.rotation_euler = (math.radians(40), 0, math.radians(30))
    for item in (camera, light):
        scene.collection.objects.link(item)
    if scene.world is None:
        scene.world = bpy.data.worlds.new("Preview world")
    scene.world.color = (0.3, 0.3, 0.32)
    previous_camera, scene.camera = scene.camera, camera
    render = scene.render
    saved = (
        render.engine,
        render.resolution_x,
        render.resolution_y,
        render.resolution_percentage,
        render.filepath,
    )
    render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    render.resolution_x = render.resolution_y = PREVIEW_SIZE
    render.resolution_percentage = 100
    render.image_settings.file_format = "PNG"
    render.filepath = str(path)
    try:
        bpy.ops.render.render(write_still=True)
    finally:
        (
            render.engine,
            render.resolution_x,
            render.resolution_y,
            render.resolution_percentage,
            render.filepath,
        ) = saved
        scene.camera = previous_camera or camera


def process(addon: ModuleType, image: Path, args: argparse.Namespace, output: Path) -> dict[str, object]:
    """One photo: reconstruct, then the requested outputs; the row for the summary table."""
    started = time.monotonic()
    clear_scene()
    obj = addon.reconstruct(
        image,
        method=args.method,
        weights=args.weights,
        preset=args.preset,
        seed=args.seed,
        mask=args.mask,
        device=args.device,
        aligned_camera=args.aligned_camera,
        output_dir=output / image.stem,
        backend_python=args.backend_python,
        overwrite=args.overwrite,
        overrides=addon.jobs.parse_overrides(shlex.join(args.set)),
    )
    files = [output / image.stem]
    if args.preview:
        render_preview(obj, output / f"{image.stem}_preview.png")
        files.append(output / f"{image.stem}_preview.png")
    if "glb" in args.export:
        bpy.ops.object.select_all(action="DESELECT")
        obj.select_set(True)
        bpy.ops.export_scene.gltf(
            filepath=str(output / f"{image.stem}.glb"), export_format="GLB", use_selection=True
        )
        files.append(output / f"{image.stem}.glb")
    if args.save_blend:
        bpy.ops.wm.save_as_mainfile(filepath=str(output / f"{image.stem}.blend"), copy=True)
        files.append(output / f"{image.stem}.blend")
    return {
        "image": image.name,
        "status": "ok",
        "vertices": len(obj.data.vertices),
        "faces": len(obj.data.polygons),
        "seconds": time.monotonic() - started,
        "detail": ", ".join(f.name for f in files),
    }


def print_summary(rows: list[dict[str, object]]) -> None:
    print(f"\n{'image':<28} {'status':<7} {'verts':>8} {'faces':>8} {'seconds':>8}  detail")
    for row in rows:
        print(
            f"{row['image']!s:<28} {row['status']!s:<7} {row.get('vertices', '-')!s:>8} "
            f"{row.get('faces', '-')!s:>8} {row.get('seconds', 0):>8.1f}  {row.get('detail', '')}"
        )
    failed = sum(row["status"] != "ok" for row in rows)
    print(
        f"{len(rows) - failed} of {len(rows)} reconstructed" + (f", {failed} failed" if failed else ""),
        flush=True,
    )


def main(argv: list[str]) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code else 0
    images = collect_images(args.input)
    if not images:
        print("batch.py: no images found in --input", file=sys.stderr)
        return 2
    output = Path(args.output).resolve()
    output.mkdir(parents=True, exist_ok=True)
    addon, registered_here = load_addon()
    client_error = addon.client.BackendError
    rows: list[dict[str, object]] = []
    try:
        for image in images:
            started = time.monotonic()
            try:
                rows.append(process(addon, image, args, output))
            except client_error as error:
                rows.append(
                    {
                        "image": image.name,
                        "status": "failed",
                        "seconds": time.monotonic() - started,
                        "detail": error.one_line(),
                    }
                )
    finally:
        addon.session.shutdown()
        if registered_here:
            addon.unregister()
    print_summary(rows)
    return int(any(row["status"] != "ok" for row in rows))


if __name__ == "__main__":
    code = main(script_args())
    sys.stdout.flush()
    sys.stderr.flush()
    if bpy.app.binary_path:  # inside Blender: let it exit normally with our code
        sys.exit(code)
    os._exit(code)  # the bpy module can hang or crash at interpreter exit (see research notes)
