"""Reconstruct many photos headless, one .blend / .glb / preview per photo, and a summary table.

    blender -b -P <addon>/batch.py -- --input DIR_OR_FILES --output DIR [--method ...] [--save-blend]
        [--export glb] [--preview]
    python <addon>/batch.py --input ... --output ...        (with the ``bpy`` module installed)

The exit code is 1 when any photo failed, 2 for bad arguments. The add-on is enabled through
Blender's extension system when this file lives in an installed extension, else (a source
checkout) imported from the folder beside this file.

Outputs follow the backend's rules: ``--output`` through a link writes into the link's target; an
existing ``.blend``/``.glb``/preview is only replaced with ``--overwrite`` (a link or folder of that
name never is); each file is written under a short hidden temporary name beside it and renamed into
place, so a failed or killed run never leaves half a file under the real name.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import bpy

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")
PREVIEW_SIZE = 256


def build_parser(catalogue: ModuleType) -> argparse.ArgumentParser:
    """``catalogue``: the add-on's ``catalogue`` module (methods, presets and defaults of the backend)."""
    defaults = catalogue.JOB_DEFAULTS
    parser = argparse.ArgumentParser(prog="batch.py", description="Reconstruct photos into textured meshes.")
    parser.add_argument("--input", nargs="+", required=True, help="image files and/or folders of images")
    parser.add_argument("--output", required=True, help="folder for the results (created)")
    parser.add_argument("--method", default=defaults["method"], choices=catalogue.METHODS)
    parser.add_argument("--weights", default=None, help="weights id (default: the backend's default)")
    parser.add_argument("--preset", default=defaults["preset"], choices=catalogue.PRESETS)
    parser.add_argument("--seed", type=int, default=defaults["seed"])
    masks = tuple(m for m in catalogue.MASK_SOURCES if m != "file")  # a mask file per photo has no flag
    parser.add_argument("--mask", default=defaults["mask"], choices=masks)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="method option override"
    )
    low, high = catalogue.FACES_RANGE
    parser.add_argument(
        "--faces", type=int, default=None, metavar="N",
        help=f"about N triangles per mesh, {low}-{high} (default: the method's own mesh)",
    )  # fmt: skip
    parser.add_argument(
        "--quads", action="store_true", help="import quads where the mesh has them (--faces counts triangles)"
    )
    parser.add_argument(
        "--scale", default=None, choices=catalogue.SCALE_MODES,
        help="metres (default): the category's typical size on the ground; unit: largest extent 1",
    )  # fmt: skip
    parser.add_argument(
        "--size-m", type=float, default=None, metavar="METRES", help="the length instead of the typical one"
    )
    parser.add_argument("--device", default=None, choices=catalogue.DEVICES, help="default: the add-on's")
    parser.add_argument("--aligned-camera", action="store_true", help="add the estimated camera")
    parser.add_argument("--mirror", action="store_true", help="symmetric results: one half + Mirror modifier")
    parser.add_argument("--save-blend", action="store_true", help="save OUTPUT/<name>.blend per photo")
    parser.add_argument("--export", choices=("glb",), action="append", default=[], help="export format")
    parser.add_argument("--preview", action="store_true", help="Cycles render OUTPUT/<name>_preview.png")
    parser.add_argument("--backend-python", default=None, help="Python of the backend environment")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace earlier results and existing .blend/.glb/previews"
    )
    return parser


def script_args() -> list[str]:
    """Blender passes its own arguments too; ours follow ``--`` (the bpy module passes only ours)."""
    return sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]


class OutputError(Exception):
    """``--output`` cannot be used as given; the script says why and exits 2."""


def output_folder(arg: str) -> Path:
    """The real folder behind ``--output``, created if missing: a link is followed (it stays a link);
    a link to nothing, a file, or a path through either is refused, never replaced."""
    path = Path(arg).absolute()
    try:
        if path.is_symlink() and not path.exists():
            raise OutputError(f"--output {path} is a link to {os.readlink(path)}, which is missing or loops")
        if path.exists() and not path.is_dir():
            raise OutputError(f"--output {path} is a file, not a folder")
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot use --output {path}: {exc.strerror or exc}") from None
    return Path(os.path.realpath(path))


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


def side_files(args: argparse.Namespace, output: Path, stem: str) -> dict[str, Path]:
    """The files a photo adds beside its result folder, by kind, as the arguments ask."""
    wanted = {
        "preview": (args.preview, f"{stem}_preview.png"),
        "glb": ("glb" in args.export, f"{stem}.glb"),
        "blend": (args.save_blend, f"{stem}.blend"),
    }
    return {kind: output / name for kind, (asked, name) in wanted.items() if asked}


def check_free(addon: ModuleType, path: Path, overwrite: bool) -> None:
    """Refuse, before the reconstruction, a name the folder cannot hold and a file that is there
    already (unless ``--overwrite``); a link or a folder of that name is never replaced."""
    error = addon.client.UserError
    if len(os.fsencode(path.name)) > addon.client.protocol.name_max(path.parent):
        raise error("bad_output", f"{path.name[:24]!r}... is too long a file name here", "rename the photo")
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise error("output_exists", f"{path} is a link or a folder, never replaced", "pick another --output")
    if path.exists() and not overwrite:
        raise error(
            "output_exists", f"{path} exists", "pass --overwrite to replace it, or pick another --output"
        )


def write_atomically(addon: ModuleType, path: Path, write: Callable[[Path], None]) -> None:
    """``write`` to a short hidden name beside ``path``, then rename it into place, so no failure or
    kill leaves half a file under ``path``; temporary files a killed earlier run left for ``path``
    go first (ours only: the hashed name of ``path``, and Blender's ``NAME@`` while it saves)."""
    protocol = addon.client.protocol
    kind = "tmp" + path.suffix  # Blender's writers keep a file's suffix, or add their own
    for name in os.listdir(path.parent):
        debris = path.parent / name
        if protocol.is_staging_name(name.removesuffix("@"), path.name, kind) and not debris.is_symlink():
            debris.unlink(missing_ok=True)
    temp = path.with_name(protocol.staging_name(path.name, kind))
    try:
        write(temp)
        os.replace(temp, path)
    finally:
        for leftover in (temp, temp.with_name(temp.name + "@")):
            leftover.unlink(missing_ok=True)


def export_glb(obj: bpy.types.Object, path: Path) -> None:
    bpy.ops.object.select_all(action="DESELECT")
    obj.select_set(True)
    bpy.ops.export_scene.gltf(filepath=str(path), export_format="GLB", use_selection=True)


def save_blend(path: Path) -> None:
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)


def process(addon: ModuleType, image: Path, args: argparse.Namespace, output: Path) -> dict[str, object]:
    """One photo: reconstruct, then the requested outputs; the row for the summary table."""
    started = time.monotonic()
    extra = side_files(args, output, image.stem)
    for path in extra.values():
        check_free(addon, path, args.overwrite)
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
        mirror=args.mirror,
        output_dir=output / image.stem,
        backend_python=args.backend_python,
        overwrite=args.overwrite,
        overrides=addon.job_request.parse_overrides(shlex.join(args.set), args.method),
        faces=args.faces,
        quads=args.quads,
        scale=args.scale,
        size_m=args.size_m,
    )
    writers: dict[str, Callable[[Path], None]] = {
        "preview": lambda path: render_preview(obj, path),
        "glb": lambda path: export_glb(obj, path),
        "blend": save_blend,
    }
    for kind, path in extra.items():
        write_atomically(addon, path, writers[kind])
    files = [output / image.stem, *extra.values()]
    return {
        "image": image.name,
        "status": "ok",
        "vertices": len(obj.data.vertices),
        "faces": len(obj.data.polygons),
        "seconds": time.monotonic() - started,
        "detail": ", ".join(f.name for f in files),
        "warnings": addon.importer.result_lines(obj, "warnings"),
        "notes": addon.importer.result_lines(obj, "notes"),
    }


def print_summary(rows: list[dict[str, object]]) -> None:
    print(f"\n{'image':<28} {'status':<7} {'verts':>8} {'faces':>8} {'seconds':>8}  detail")
    for row in rows:
        print(
            f"{row['image']!s:<28} {row['status']!s:<7} {row.get('vertices', '-')!s:>8} "
            f"{row.get('faces', '-')!s:>8} {row.get('seconds', 0):>8.1f}  {row.get('detail', '')}"
        )
    for kind in ("warnings", "notes"):  # from each result.json: what to check, then what happened
        lines = [(row["image"], line) for row in rows for line in row.get(kind) or []]
        if lines:
            print(f"\n{kind}:")
            for image, line in lines:
                print(f"{image}: {line}")
    failed = sum(row["status"] != "ok" for row in rows)
    print(
        f"{len(rows) - failed} of {len(rows)} reconstructed" + (f", {failed} failed" if failed else ""),
        flush=True,
    )


def main(argv: list[str]) -> int:
    """Load the add-on first: its ``catalogue`` gives the arguments' choices and defaults."""
    addon, registered_here = load_addon()
    try:
        return run(addon, argv)
    finally:
        addon.session.shutdown()
        if registered_here:
            addon.unregister()


def run(addon: ModuleType, argv: list[str]) -> int:
    try:
        args = build_parser(importlib.import_module(f"{addon.__name__}.catalogue")).parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code else 0
    images = collect_images(args.input)
    if not images:
        print("batch.py: no images found in --input", file=sys.stderr)
        return 2
    try:
        output = output_folder(args.output)
    except OutputError as exc:
        print(f"batch.py: {exc}", file=sys.stderr)
        return 2
    client_error = addon.client.UserError
    rows: list[dict[str, object]] = []
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
    print_summary(rows)
    return int(any(row["status"] != "ok" for row in rows))


if __name__ == "__main__":
    code = main(script_args())
    sys.stdout.flush()
    sys.stderr.flush()
    if bpy.app.binary_path:  # inside Blender: let it exit normally with our code
        sys.exit(code)
    os._exit(code)  # the bpy module can hang or crash at interpreter exit (see research notes)
