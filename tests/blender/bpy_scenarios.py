"""Scenarios that run inside the bpy module, one per subprocess (see ``helpers.run_scenario``).

bpy can be imported once per process and may hang at interpreter exit, so each scenario runs in
a fresh Python with an isolated Blender user folder, installs the real extension zip through
Blender's extension system, does its work with real assertions, prints ``RESULT <json>`` and
leaves with ``os._exit``. Usage: ``python bpy_scenarios.py NAME JSON_ARGS``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import bpy
import numpy as np
from mathutils import Vector

ADDON_ID = "reconstruct_from_image"
MODULE = f"bl_ext.user_default.{ADDON_ID}"


def install(zip_path: str, backend_python: str = "", weights_dir: str = "", empty: bool = True) -> Any:
    """A fresh scene (empty, or the default cube, camera and light), then install and enable the built
    zip as a user would and point it at the backend."""
    bpy.ops.wm.read_homefile(use_empty=empty, use_factory_startup=True)
    result = bpy.ops.extensions.package_install_files(
        filepath=zip_path, repo="user_default", enable_on_install=True
    )
    assert result == {"FINISHED"}, result
    assert MODULE in bpy.context.preferences.addons, list(bpy.context.preferences.addons.keys())
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.backend_python = backend_python
    prefs.weights_dir = weights_dir
    prefs.keep_results = True
    return sys.modules[MODULE]


def image_pixels(image: bpy.types.Image) -> np.ndarray:
    """(H, W, 4) float32 with row 0 at the top, as the PNG stores it."""
    width, height = image.size
    pixels = np.empty(width * height * 4, np.float32)
    image.pixels.foreach_get(pixels)
    return pixels.reshape(height, width, 4)[::-1]


def describe_object(obj: bpy.types.Object) -> dict[str, Any]:
    mesh = obj.data
    uvs = np.empty(len(mesh.loops) * 2, np.float32)
    mesh.uv_layers["UVMap"].data.foreach_get("uv", uvs)
    material = mesh.materials[0]
    nodes = material.node_tree.nodes
    tex = next(n for n in nodes if n.type == "TEX_IMAGE")
    bsdf = next(n for n in nodes if n.type == "BSDF_PRINCIPLED")
    linked = any(
        link.from_node == tex and link.to_socket == bsdf.inputs["Base Color"]
        for link in material.node_tree.links
    )
    return {
        "name": obj.name,
        "vertices": len(mesh.vertices),
        "faces": len(mesh.polygons),
        "uv_layers": [layer.name for layer in mesh.uv_layers],
        "uvs": uvs.reshape(-1, 3, 2).tolist(),
        "texture_linked": linked,
        "texture_packed": tex.image.packed_file is not None,
        "texture_size": list(tex.image.size),
        "location": list(obj.location),
        "selected": obj.select_get(),
        "active": bpy.context.view_layer.objects.active == obj,
        "properties": {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in obj.items()},
        "texture": image_pixels(tex.image)[..., :3].round(4).tolist(),
    }


def render_png(path: str) -> None:
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 8
    scene.render.resolution_x = scene.render.resolution_y = 256
    scene.render.resolution_percentage = 100
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)


class CheckedLayout:
    """Stands in for ``UILayout`` (there is no UI in background mode): every property and operator the
    draw code names must exist, which Blender itself would only print as a warning."""

    def __init__(self, drawn: list[str], enabled: bool = True) -> None:
        self.drawn = drawn
        self.enabled = enabled

    def __getattr__(self, name: str) -> Any:
        if name in ("use_property_split", "use_property_decorate"):
            return True
        raise AttributeError(name)

    def column(self, **_kwargs: Any) -> CheckedLayout:
        """A sub-layout: disabled when this one is (as Blender greys out what a disabled layout holds)."""
        return CheckedLayout(self.drawn, self.enabled)

    row = box = column

    def prop(self, data: Any, name: str, **_kwargs: Any) -> None:
        assert name in data.bl_rna.properties, f"{data} has no property {name}"
        self.drawn.append(f"prop:{name}")

    template_ID = prop

    def operator(self, idname: str, **_kwargs: Any) -> CheckedOperator:
        category, name = idname.split(".")
        assert hasattr(getattr(bpy.ops, category), name), idname
        self.drawn.append(f"op:{idname}" + ("" if self.enabled else " (disabled)"))
        return CheckedOperator(getattr(getattr(bpy.ops, category), name).get_rna_type())

    def template_icon(self, icon_value: int, **_kwargs: Any) -> None:
        self.drawn.append(f"icon:{icon_value}")

    def progress(self, factor: float, type: str, text: str) -> None:
        assert 0.0 <= factor <= 1.0 and type == "BAR"
        self.drawn.append(f"progress:{text}")

    def label(self, text: str = "", **_kwargs: Any) -> None:
        self.drawn.append(f"label:{text}")

    def separator(self, **_kwargs: Any) -> None:
        pass


class CheckedOperator:
    """Stands in for the operator properties ``UILayout.operator`` returns: only declared ones are set."""

    def __init__(self, rna: Any) -> None:
        object.__setattr__(self, "rna", rna)

    def __setattr__(self, name: str, value: Any) -> None:
        assert name in self.rna.properties, f"{self.rna.identifier} has no property {name}"


class WithLayout:
    """The preferences as ``draw`` sees them, with a checked layout (``layout`` is read-only in bpy)."""

    def __init__(self, target: Any, layout: CheckedLayout) -> None:
        self.target, self.layout = target, layout

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


def scenario_install(args: dict[str, Any]) -> dict[str, Any]:
    """Install the zip into the isolated user folder (for later runs of its batch script) and check
    what registration added and what the panel and preferences draw; setup must refuse without online
    access."""
    addon = install(args["zip"])
    drawn: list[str] = []
    settings, runtime = bpy.context.scene.rfi_settings, bpy.context.window_manager.rfi_runtime
    settings.image_source, settings.mask_source = "FILE", "file"
    addon.panels.draw_panel(CheckedLayout(drawn), bpy.context)
    runtime.running, runtime.progress, runtime.status = True, 0.5, "optimise 5/10"
    addon.panels.draw_panel(CheckedLayout(drawn), bpy.context)
    runtime.running = False
    prefs = bpy.context.preferences.addons[MODULE].preferences
    type(prefs).draw(WithLayout(prefs, CheckedLayout(drawn)), bpy.context)
    return {
        "drawn": drawn,
        "panels": [hasattr(bpy.types, name) for name in ("RFI_PT_view3d", "RFI_PT_image_editor")],
        "setup_allowed": bpy.ops.rfi.setup_backend.poll(),
        "online_access": bpy.app.online_access,
        "batch": str(Path(sys.modules[MODULE].__file__).with_name("batch.py")),
    }


def scenario_front_ends(args: dict[str, Any]) -> dict[str, Any]:
    """What the installed add-on's panel, Python API and batch script offer (methods, presets, job
    defaults), read from the backend it bundles without torch, and its check of option names."""
    import importlib
    import inspect

    addon = install(args["zip"])
    catalogue = importlib.import_module(f"{MODULE}.catalogue")
    batch = importlib.import_module(f"{MODULE}.batch")
    api = importlib.import_module(f"{MODULE}.api")
    parser = {a.dest: a for a in batch.build_parser(catalogue)._actions}
    signature = inspect.signature(api.reconstruct).parameters
    rna = addon.properties.RFI_Settings.bl_rna.properties
    try:
        addon.job_request.parse_overrides("invert_steps=3 no_such_option=1", "gan2shape")
        refused = ""
    except addon.client.UserError as error:
        refused = error.one_line()
    return {
        "torch_imported": "torch" in sys.modules,
        "catalogue": {"methods": list(catalogue.METHODS), "presets": list(catalogue.PRESETS),
                      "options": {m: list(catalogue.option_names(m)) for m in catalogue.METHODS},
                      "turnable": {m: catalogue.turnable(m) for m in catalogue.METHODS},
                      "turned": [catalogue.turned("meshinversion", "fast", o) for o in (
                          {}, {"turn_start": "false"}, {"turn_start": "true", "z_candidates": 8})]},
        "panel": {name: {"items": [item.identifier for item in rna[name].enum_items],
                         "default": rna[name].default} for name in ("method", "preset")},
        "panel_defaults": {"seed": rna["seed"].default, "mask": rna["mask_source"].default},
        "api": {name: signature[name].default for name in ("method", "preset", "seed", "mask")},
        "batch": {name: {"choices": list(parser[name].choices or []), "default": parser[name].default}
                  for name in ("method", "preset", "mask", "seed")},
        "refused": refused,
    }  # fmt: skip


def scenario_sources(args: dict[str, Any]) -> dict[str, Any]:
    """Image sources other than a file: an image empty showing a file, a packed image, a generated one;
    each becomes a file the backend can read with the same pixels."""
    addon = install(args["zip"])
    context = bpy.context
    settings = context.scene.rfi_settings
    photo = bpy.data.images.load(args["photo"])
    empty = bpy.data.objects.new("reference", None)
    empty.empty_display_type = "IMAGE"
    empty.data = photo
    context.scene.collection.objects.link(empty)
    context.view_layer.objects.active = empty
    settings.image_source = "OBJECT"
    out: dict[str, Any] = {}
    request, options = addon.job_request.build_request(context)
    out["file"] = {"image": request.image, "name": options.name}
    photo.pack()
    request, options = addon.job_request.build_request(context)
    out["packed"] = {"image": request.image, "name": options.name}
    generated = bpy.data.images.new("painted", 32, 16)
    generated.pixels.foreach_set(np.tile(np.array([1.0, 0.5, 0.0, 1.0], np.float32), 32 * 16))
    empty.data = generated
    request, options = addon.job_request.build_request(context)
    out["generated"] = {"image": request.image, "name": options.name}
    settings.image_source = "EDITOR"
    try:
        addon.job_request.build_request(context)
    except addon.client.UserError as error:
        out["no_editor"] = error.one_line()
    settings.image_source, settings.mask_source = "FILE", "file"
    settings.filepath = args["photo"]
    try:
        addon.job_request.build_request(context)
    except addon.client.UserError as error:
        out["no_mask"] = error.one_line()
    settings.mask_image = generated
    request, _ = addon.job_request.build_request(context)
    out["mask"] = {"mask": request.mask, "mask_path": request.mask_path}
    return out


def scenario_import(args: dict[str, Any]) -> dict[str, Any]:
    """The importer alone on a prepared result folder: data, naming, placement, camera geometry."""
    from bpy_extras.object_utils import world_to_camera_view

    addon = install(args["zip"])
    existing = bpy.data.objects.new("photo", None)
    bpy.context.scene.collection.objects.link(existing)
    bpy.context.scene.cursor.location = (1.0, 2.0, 3.0)
    obj = addon.importer.import_result(args["result"], "photo", aligned_camera=True, photo=args.get("photo"))
    out = describe_object(obj)
    out["notes"] = addon.importer.result_lines(obj, "notes")
    out["warnings"] = addon.importer.result_lines(obj, "warnings")
    out["existing_name"] = existing.name
    resized = addon.importer.import_result(args["result"], "resized", texture_size=32, shade_smooth=False)
    image = resized.data.materials[0].node_tree.nodes["Image Texture"].image
    out["resized"] = {"size": list(image.size), "packed": image.packed_file is not None,
                      "smooth": any(p.use_smooth for p in resized.data.polygons)}  # fmt: skip
    cam = bpy.context.scene.camera
    scene = bpy.context.scene
    out["camera"] = {
        "type": cam.data.type,
        "resolution": [scene.render.resolution_x, scene.render.resolution_y],
        "background": [bg.image.name for bg in cam.data.background_images if bg.image],
        "projected": [
            list(world_to_camera_view(scene, cam, obj.matrix_world @ Vector(p)))[:2]
            for p in args["probe_points"]
        ],
    }
    return out


def principled_specular(obj: bpy.types.Object) -> float:
    bsdf = next(n for n in obj.active_material.node_tree.nodes if n.type == "BSDF_PRINCIPLED")
    return bsdf.inputs["Specular IOR Level"].default_value


def scenario_delit_import(args: dict[str, Any]) -> dict[str, Any]:
    """A de-lit (``albedo``) result and a ``photo`` one imported with the aligned camera: only the first
    gets the recovered light (a Sun, a world colour) and a purely diffuse material."""
    addon = install(args["zip"])
    scene = bpy.context.scene
    scene.world = bpy.data.worlds.new("mine")
    previous = scene.world.name
    bpy.context.scene.cursor.location = (1.0, 2.0, 3.0)
    delit = addon.importer.import_result(args["delit"], "delit", aligned_camera=True)
    sun = bpy.data.objects["delit light"]
    background = next(n for n in scene.world.node_tree.nodes if n.type == "BACKGROUND")
    out = {
        "sun": sun.data.type,
        "shines_along": list(sun.matrix_world.to_3x3() @ Vector((0.0, 0.0, -1.0))),
        "energy": sun.data.energy,
        "world": scene.world.name,
        "world_colour": list(background.inputs["Color"].default_value)[:3],
        "previous_kept": bpy.data.worlds[previous].use_fake_user,
        "specular": principled_specular(delit),
        "collections": [c.name for c in sun.users_collection] == [c.name for c in delit.users_collection],
    }
    plain = addon.importer.import_result(args["photo"], "plain", aligned_camera=True)
    out["plain"] = {"light": "plain light" in bpy.data.objects, "world": scene.world.name,
                    "specular": principled_specular(plain)}  # fmt: skip
    return out


def scenario_reconstruct(args: dict[str, Any]) -> dict[str, Any]:
    """The operator (blocking in background mode) on a real image through the real backend, then a
    Cycles render of the result."""
    addon = install(args["zip"], args["python"], args.get("weights_dir", ""), empty=False)  # camera, light
    for obj in [o for o in bpy.context.scene.objects if o.type == "MESH"]:
        bpy.data.objects.remove(obj)
    settings = bpy.context.scene.rfi_settings
    settings.image_source = "FILE"
    settings.filepath = args["image"]
    settings.aligned_camera = True
    for key, value in args.get("settings", {}).items():
        setattr(settings, key, value)
    started = time.monotonic()
    assert bpy.ops.rfi.reconstruct() == {"FINISHED"}
    obj = bpy.context.view_layer.objects.active
    out = describe_object(obj)
    out["seconds"] = time.monotonic() - started
    out["weights_items"] = [item[1] for item in addon.properties.weights_items(settings, bpy.context)]
    drawn: list[str] = []
    addon.panels.draw_panel(CheckedLayout(drawn), bpy.context)
    out["drawn"] = drawn
    out["result_dir"] = next(Path(args["user"]).rglob("result.json")).parent.as_posix()
    cam = bpy.context.scene.camera
    out["camera"] = {"name": cam.name, "type": cam.data.type, "backgrounds": len(cam.data.background_images)}
    out["overlay_iou"] = overlay_iou(args["image"], args["render"] + ".overlay.png")
    render_png(args["render"])  # through the aligned camera, which frames the object by construction
    return out


def scenario_mask_preview(args: dict[str, Any]) -> dict[str, Any]:
    """Preview Mask on a photo through the real backend (twice: the second replaces the pixels of the
    same datablock), a part of the object painted out through the pixels API, then Reconstruct: the
    result's mask.png must be the painted one. Then source ``none`` (kept), and a photo datablock: an
    Image Editor showing its mask stands for the photo."""
    addon = install(args["zip"], args["python"], args.get("weights_dir", ""))
    settings = bpy.context.scene.rfi_settings
    settings.image_source, settings.filepath, settings.mask_source = "FILE", args["image"], "auto"
    for key, value in args.get("settings", {}).items():
        setattr(settings, key, value)
    mine = bpy.data.images.new("my own image", 4, 4)
    drawn: list[str] = []
    addon.panels.draw_panel(CheckedLayout(drawn), bpy.context)
    assert bpy.ops.rfi.preview_mask() == {"FINISHED"}
    name = f"{Path(args['image']).stem} mask"
    image = bpy.data.images[name]
    first = {"size": list(image.size), "source": settings.mask_source, "mask_image": settings.mask_image.name,
             "packed": image.packed_file is not None, "colorspace": image.colorspace_settings.name}
    previewed = image_pixels(image)[..., 0] >= 0.5
    settings.mask_source = "auto"
    assert bpy.ops.rfi.preview_mask() == {"FINISHED"}
    again = {"same_datablock": bpy.data.images[name] == image and settings.mask_image == image,
             "images": sorted(i.name for i in bpy.data.images)}
    painted = image_pixels(image).copy()
    height = painted.shape[0]
    painted[: height // 2, ..., :3] = 0.0  # the artist paints the top half out
    image.pixels.foreach_set(np.ascontiguousarray(painted[::-1]).ravel())
    assert bpy.ops.rfi.reconstruct() == {"FINISHED"}
    results = [path.parent for path in Path(args["user"]).rglob("result.json")
               if "method" in json.loads(path.read_text())]
    np.save(args["painted"], painted[..., 0] >= 0.5)
    np.save(args["previewed"], previewed)
    settings.mask_source = "none"  # the whole image: an all-white mask, which stays source "none"
    assert bpy.ops.rfi.preview_mask() == {"FINISHED"}
    whole = {"source": settings.mask_source, "white": bool((image_pixels(image)[..., :3] == 1).all())}
    photo = bpy.data.images.load(args["image"])  # the photo as an image datablock (an image empty's)
    empty = bpy.data.objects.new("reference", None)
    empty.empty_display_type, empty.data = "IMAGE", photo
    bpy.context.scene.collection.objects.link(empty)
    bpy.context.view_layer.objects.active = empty
    settings.image_source, settings.mask_source = "OBJECT", "auto"
    assert bpy.ops.rfi.preview_mask() == {"FINISHED"}
    shown = settings.mask_image  # "<photo> mask" of this photo datablock (the camera's copy came first)
    editor = SimpleNamespace(space_data=SimpleNamespace(type="IMAGE_EDITOR", image=shown), window=None)
    settings.image_source = "EDITOR"  # an Image Editor showing the mask stands for its photo
    path, photo_name = addon.job_request.source_image(editor, settings)
    behind = {"mask": shown.name == f"{Path(photo.name).stem} mask", "photo": shown.get("rfi_photo") == photo,
              "editor_image": addon.job_request.editor_image(editor) == photo,
              "path": str(path) == args["image"], "name": photo_name == Path(photo.name).stem}
    return {"behind": behind, "name": name, "first": first, "again": again, "drawn": drawn, "whole": whole,
            "mine_kept": "my own image" in bpy.data.images and mine.size[0] == 4,
            "result_dir": str(results[0]) if len(results) == 1 else str(results)}  # fmt: skip


def overlay_iou(photo: str, path: str) -> float:
    """Render the object alone through the aligned camera at the photo's size: its silhouette should
    cover the photo's object mask (alpha) if the camera was imported right."""
    scene = bpy.context.scene
    for obj in scene.objects:
        obj.hide_render = obj.type == "MESH" and obj != bpy.context.view_layer.objects.active
    scene.render.film_transparent = True
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 1
    scene.render.resolution_percentage = 100
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    scene.render.film_transparent = False
    rendered = bpy.data.images.load(path)
    silhouette = image_pixels(rendered)[..., 3] > 0.5
    target = image_pixels(bpy.data.images.load(photo))[..., 3] > 0.5
    return float((silhouette & target).sum() / max((silhouette | target).sum(), 1))


def scenario_interrupt(args: dict[str, Any]) -> dict[str, Any]:
    """Cancel midway, then kill the backend midway, then a normal job: the session must recover."""
    addon = install(args["zip"], args["python"], args.get("weights_dir", ""))
    session, job_request = addon.session, addon.job_request
    settings = bpy.context.scene.rfi_settings
    settings.image_source, settings.filepath = "FILE", args["image"]
    for key, value in args.get("settings", {}).items():
        setattr(settings, key, value)
    out: dict[str, Any] = {}

    def run_until_progress(action: str) -> Any:
        request, _ = job_request.build_request(bpy.context)
        client = session.client()
        job = client.submit(request)
        deadline = time.monotonic() + 120
        while job.step < 1 and not job.finished and time.monotonic() < deadline:
            client.poll(0.1)
        assert job.state == "running", (job.state, job.error)
        pid = client.pid
        if action == "cancel":
            started = time.monotonic()
            client.cancel()
        else:
            started = time.monotonic()
            os.killpg(pid, signal.SIGKILL)
        client.wait()
        return job, pid, time.monotonic() - started

    job, pid, seconds = run_until_progress("cancel")
    out["cancel"] = {"state": job.state, "seconds": seconds, "same_process": session.client().pid == pid}
    job, pid, seconds = run_until_progress("kill")
    out["kill"] = {
        "state": job.state,
        "code": job.error.code if job.error else None,
        "line": job.error.one_line() if job.error else "",
        "old_pid": pid,
    }
    assert bpy.ops.rfi.reconstruct() == {"FINISHED"}
    pid = session.client().pid
    out["after"] = {"object": bpy.context.view_layer.objects.active.name, "new_pid": pid}
    import addon_utils

    addon_utils.disable(MODULE)  # disabling the add-on must not leave the backend running
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    out["after"]["stopped_on_disable"] = not Path(f"/proc/{pid}").exists()
    return out


def scenario_bad_image(args: dict[str, Any]) -> dict[str, Any]:
    """A corrupt file: the operator fails with one line and a hint; nothing is added."""
    install(args["zip"], args["python"], args.get("weights_dir", ""))
    settings = bpy.context.scene.rfi_settings
    settings.image_source, settings.filepath = "FILE", args["image"]
    for key, value in args.get("settings", {}).items():
        setattr(settings, key, value)
    messages = []
    for python in (args["python"], "/nonexistent/python"):
        bpy.context.preferences.addons[MODULE].preferences.backend_python = python
        try:
            bpy.ops.rfi.reconstruct()
        except RuntimeError as exc:  # background mode turns the ERROR report into an exception
            messages.append(str(exc))
    return {"message": messages[0], "no_python": messages[1], "objects": len(bpy.data.objects)}


def texture_image(obj: bpy.types.Object) -> bpy.types.Image:
    return next(n for n in obj.active_material.node_tree.nodes if n.type == "TEX_IMAGE").image


def save_copy(path: str) -> None:
    bpy.ops.wm.save_as_mainfile(filepath=path, copy=True)


def artist_edit(obj: bpy.types.Object, strength: float) -> None:
    """What an artist might do to the reconstruction: subdivide it (shape kept) and displace the surface
    a little along its normals with a noise texture, as modifiers (the evaluated mesh is re-projected).
    ``strength`` and the noise's scale are in object extents (results are in metres)."""
    size = max(obj.dimensions)
    subdivide = obj.modifiers.new("Subdivide", "SUBSURF")
    subdivide.subdivision_type, subdivide.levels, subdivide.render_levels = "SIMPLE", 2, 2
    bumps = bpy.data.textures.new("bumps", "CLOUDS")
    bumps.noise_scale = 0.15 * size
    displace = obj.modifiers.new("Displace", "DISPLACE")
    displace.texture, displace.strength = bumps, strength * size


def render_novel_view(obj: bpy.types.Object, path: str) -> None:
    """The object alone from behind on its left (the side the photo did not see), with the flat
    texture-colour Workbench settings of ``benchmarks/blender_overlay_render.py``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from blender_overlay_render import setup_render

    data = bpy.data.cameras.new("novel view")
    data.type, data.ortho_scale = "ORTHO", 1.4 * max(obj.dimensions)
    camera = bpy.data.objects.new("novel view", data)
    bpy.context.scene.collection.objects.link(camera)
    centre = obj.matrix_world @ (sum((Vector(c) for c in obj.bound_box), Vector()) / 8)
    camera.location = centre + Vector((-2.0, 2.0, 1.2)) * max(obj.dimensions)
    camera.rotation_euler = (camera.location - centre).to_track_quat("Z", "Y").to_euler()
    scene, previous = bpy.context.scene, bpy.context.scene.camera
    setup_render(obj, camera, 256, 256)
    scene.render.filepath = path
    bpy.ops.render.render(write_still=True)
    scene.camera = previous
    bpy.data.objects.remove(camera)
    bpy.data.cameras.remove(data)


def reproject_error(name: str) -> str:
    """Re-project Photo on the object ``name``, expected to fail: its one-line report."""
    bpy.context.view_layer.objects.active = bpy.data.objects[name]
    try:
        bpy.ops.rfi.reproject_photo("EXEC_DEFAULT", True)
    except RuntimeError as exc:  # background mode turns the ERROR report into an exception
        return str(exc).strip()
    raise AssertionError("re-projection did not fail")


def scenario_reproject(args: dict[str, Any]) -> dict[str, Any]:
    """Reconstruct a photo (result files not kept: the default), save it, re-project it unedited, save
    that and undo it; edit the mesh, re-project (with results kept, to inspect them), save it, undo;
    then inputs that must fail leave it as it is.
    Textures go to ``args["arrays"]`` as .npy files (row 0 at the top)."""
    addon = install(args["zip"], args["python"], args.get("weights_dir", ""))
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.keep_results = False
    settings = bpy.context.scene.rfi_settings
    settings.image_source, settings.filepath, settings.aligned_camera = "FILE", args["image"], True
    for key, value in args.get("settings", {}).items():
        setattr(settings, key, value)
    assert not bpy.ops.rfi.reproject_photo.poll()  # nothing reconstructed yet
    assert bpy.ops.rfi.reconstruct() == {"FINISHED"}
    obj = bpy.context.view_layer.objects.active
    name, result = obj.name, Path(obj["rfi_result"])
    out: dict[str, Any] = {"kept_files": sorted(p.name for p in result.iterdir())}
    arrays = Path(args["arrays"])
    before = texture_image(obj)
    out["image_before"] = before.name
    np.save(arrays / "before.npy", image_pixels(before)[..., :3])
    save_copy(args["blends"] + "/before.blend")
    render_novel_view(obj, args["blends"] + "/before_novel.png")
    bpy.ops.ed.undo_push(message="reconstructed")  # the UI pushes one after every operator
    assert bpy.ops.rfi.reproject_photo("EXEC_DEFAULT", True) == {"FINISHED"}  # no edit: the same look
    save_copy(args["blends"] + "/same.blend")
    bpy.ops.ed.undo()
    obj = bpy.data.objects[name]
    artist_edit(obj, args["strength"])
    save_copy(args["blends"] + "/edited.blend")
    render_novel_view(obj, args["blends"] + "/edited_novel.png")
    bpy.ops.ed.undo_push(message="edit")  # the UI pushes one after every edit
    prefs.keep_results = True
    drawn: list[str] = []
    addon.panels.draw_panel(CheckedLayout(drawn), bpy.context)
    out["drawn"] = drawn
    assert bpy.ops.rfi.reproject_photo("EXEC_DEFAULT", True) == {"FINISHED"}  # True: an undo step, as the UI
    after = texture_image(bpy.data.objects[name])
    out["image_after"] = {"name": after.name, "packed": bool(after.packed_file), "size": list(after.size)}
    np.save(arrays / "after.npy", image_pixels(after)[..., :3])
    save_copy(args["blends"] + "/after.blend")
    render_novel_view(bpy.data.objects[name], args["blends"] + "/after_novel.png")
    out["reprojected"] = [p.parent.as_posix() for p in Path(args["user"]).rglob("result.json")
                          if "reprojected" in p.parent.name]  # fmt: skip
    staging = addon.session.user_dir("reproject")
    out["staging_left"] = [p.name for p in staging.iterdir()]
    bpy.ops.ed.undo()
    restored = texture_image(bpy.data.objects[name])
    out["image_undone"] = restored.name
    np.save(arrays / "undone.npy", image_pixels(restored)[..., :3])
    bpy.ops.ed.redo()
    out["image_redone"] = texture_image(bpy.data.objects[name]).name

    errors: dict[str, str] = {}
    document = json.loads((result / "result.json").read_text())
    for case, changed in (
        ("older_protocol", {**document, "protocol_version": 0}),
        ("no_camera", {k: v for k, v in document.items() if k != "camera"}),
        ("photo_missing", {**document, "input": {**document["input"], "image": args["image"] + ".gone"}}),
    ):
        (result / "result.json").write_text(json.dumps(changed))
        errors[case] = reproject_error(name)
    (result / "result.json").write_text(json.dumps(document))
    result.rename(result.with_name(result.name + "-moved"))
    errors["result_gone"] = reproject_error(name)
    result.with_name(result.name + "-moved").rename(result)
    mesh = bpy.data.objects[name].data
    mesh.uv_layers.remove(mesh.uv_layers[0])
    mesh.update()  # as the UI tags it
    errors["no_uvs"] = reproject_error(name)
    out["errors"] = errors
    out["image_after_errors"] = texture_image(bpy.data.objects[name]).name
    out["staging_left_after_errors"] = [p.name for p in staging.iterdir()]
    return out


def evaluated_mesh(obj: bpy.types.Object) -> dict[str, Any]:
    """Vertex positions, triangles and per-corner UVs of ``obj`` with its modifiers applied."""
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    mesh = evaluated.to_mesh()
    positions = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", positions)
    corners = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", corners)
    uvs = np.empty(len(mesh.loops) * 2, np.float32)
    mesh.uv_layers.active.data.foreach_get("uv", uvs)
    sizes = np.empty(len(mesh.polygons), np.int32)
    mesh.polygons.foreach_get("loop_total", sizes)
    out = {"vertices": positions.reshape(-1, 3).tolist(), "corners": corners.tolist(),
           "uvs": uvs.reshape(-1, 2).tolist(), "sizes": sizes.tolist(),
           "modifiers": [m.type for m in obj.modifiers]}  # fmt: skip
    evaluated.to_mesh_clear()
    return out


def scenario_mirror_import(args: dict[str, Any]) -> dict[str, Any]:
    """A result imported whole and as a half under the Mirror modifier, both evaluated."""
    addon = install(args["zip"])
    whole = addon.importer.import_result(args["result"], "whole")
    half = addon.importer.import_result(args["result"], "half", mirror=True)
    return {"whole": evaluated_mesh(whole), "half": evaluated_mesh(half),
            "half_vertices": len(half.data.vertices)}  # fmt: skip


def panel_reconstruction(args: dict[str, Any], **fields: Any) -> tuple[Any, bpy.types.Object]:
    """Install, set the panel (``args["settings"]``, then ``fields``) on ``args["image"]`` and press
    Reconstruct through the real backend: the add-on module and the new object."""
    addon = install(args["zip"], args["python"], args.get("weights_dir", ""))
    settings = bpy.context.scene.rfi_settings
    settings.image_source = "FILE"
    settings.filepath = args["image"]
    for key, value in {**args["settings"], **fields}.items():
        setattr(settings, key, value)
    assert bpy.ops.rfi.reconstruct() == {"FINISHED"}
    return addon, bpy.context.view_layer.objects.active


def api_reconstruction(addon: Any, args: dict[str, Any], **options: Any) -> bpy.types.Object:
    """The Python API's ``reconstruct`` on ``args["image"]`` with the panel's method, seed and
    overrides, plus ``options``."""
    chosen = args["settings"]
    overrides = addon.job_request.parse_overrides(chosen["overrides"], chosen["method"])
    return addon.api.reconstruct(args["image"], method=chosen["method"], seed=chosen["seed"],
                                 overrides=overrides, **options)  # fmt: skip


def scenario_faces(args: dict[str, Any]) -> dict[str, Any]:
    """The panel's Faces and Length fields and the Python API's ``faces`` and ``size_m`` through the real
    backend; the API's object imported as a half under the Mirror modifier."""
    mesh_options = {"faces": args["faces"], "scale": "metres", "size_m": args["size_m"]}
    addon, panel = panel_reconstruction(args, **mesh_options)
    api = api_reconstruction(addon, args, **mesh_options, mirror=True)
    return {"panel_faces": len(panel.data.polygons), "api_stored_faces": len(api.data.polygons),
            "whole": evaluated_mesh(panel), "half": evaluated_mesh(api)}  # fmt: skip


def scenario_quads(args: dict[str, Any]) -> dict[str, Any]:
    """The panel's Quads checkbox and the Python API's ``quads`` through the real backend (the API's
    object as a half under the Mirror modifier), a GAN2Shape ``--quads`` result imported, and the
    batch script's ``--quads``."""
    import importlib

    addon, panel = panel_reconstruction(args, faces=args["faces"], quads=True)
    api = api_reconstruction(addon, args, faces=args["faces"], quads=True, mirror=True)
    relief = addon.importer.import_result(args["relief"], "relief")
    try:
        addon.importer.import_result(args["broken"], "broken")
        broken = ""
    except addon.importer.UnreadableResult as error:
        broken = str(error)
    if args.get("render"):
        render_wireframe(panel, args["render"])
    batch = importlib.import_module(f"{MODULE}.batch")
    parse = batch.build_parser(importlib.import_module(f"{MODULE}.catalogue")).parse_args
    flags = [parse(["--input", "a.png", "--output", "o", *extra]).quads for extra in ([], ["--quads"])]
    stored = np.empty(len(api.data.polygons), np.int32)
    api.data.polygons.foreach_get("loop_total", stored)
    split = {name: blender_splits_as_faces(addon, obj, folder) for name, obj, folder in
             (("sphere", panel, panel["rfi_result"]), ("relief", relief, args["relief"]))}  # fmt: skip
    return {"whole": evaluated_mesh(panel), "half": evaluated_mesh(api), "relief": evaluated_mesh(relief),
            "half_stored_sizes": stored.tolist(), "batch_quads": flags, "broken": broken,
            "blender_splits_as_faces": split}  # fmt: skip


def blender_splits_as_faces(addon: Any, obj: bpy.types.Object, folder: str) -> bool:
    """Whether Blender's own triangulation of the imported polygons (what it renders and Re-project
    Photo bakes) is the result's ``faces`` with their UVs."""
    import importlib

    polygons = importlib.import_module(f"{addon.__name__}.backend.polygons")
    mesh = obj.data
    mesh.calc_loop_triangles()
    loops = np.empty(len(mesh.loop_triangles) * 3, np.int32)
    mesh.loop_triangles.foreach_get("loops", loops)
    corners = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", corners)
    uvs = np.empty(len(mesh.loops) * 2, np.float32)
    mesh.uv_layers["UVMap"].data.foreach_get("uv", uvs)
    with np.load(Path(folder) / "mesh.npz") as result:
        faces, face_uvs = result["faces"], result["uvs"]
    split_uvs = uvs.reshape(-1, 2)[loops].reshape(-1, 3, 2)
    return polygons.same_triangles(corners[loops].reshape(-1, 3), split_uvs, faces, face_uvs)


def render_wireframe(obj: bpy.types.Object, path: str) -> None:
    """A Cycles render of ``obj`` with its edges as dark wires, from the front left (to look at the
    polygons); the wires are a linked copy under a Wireframe modifier, ``obj`` itself is unchanged."""
    scene = bpy.context.scene
    for other in scene.objects:
        other.hide_render = other != obj
    wires = obj.copy()
    scene.collection.objects.link(wires)
    size = max(obj.dimensions)
    modifier = wires.modifiers.new("wires", "WIREFRAME")
    modifier.thickness, modifier.use_even_offset = 0.003 * size, False
    dark = bpy.data.materials.new("wire")
    if bpy.app.version < (5, 0, 0):
        dark.use_nodes = True
    bsdf = next(node for node in dark.node_tree.nodes if node.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Base Color"].default_value = (0.02, 0.02, 0.02, 1)
    wires.material_slots[0].link = "OBJECT"
    wires.material_slots[0].material = dark
    camera = bpy.data.objects.new("look", bpy.data.cameras.new("look"))
    scene.collection.objects.link(camera)
    centre = sum((obj.matrix_world @ Vector(c) for c in obj.bound_box), Vector()) / 8
    camera.location = centre + Vector((-1.0, -1.4, 0.8)) * size
    camera.rotation_euler = (centre - camera.location).to_track_quat("-Z", "Y").to_euler()
    scene.camera = camera
    light = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    scene.collection.objects.link(light)
    light.rotation_euler = (0.6, 0.2, -0.5)
    render_png(path)  # 256 px, 8 samples: enough to count the polygons of a 5,000-triangle sphere


def object_state(obj: bpy.types.Object) -> dict[str, Any]:
    """What Reconstruct Again must leave as it was: name, properties, mesh, material and texture."""
    positions = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", positions)
    properties = {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in obj.items()}
    return {"name": obj.name, "properties": properties,
            "positions": float(np.abs(positions).sum()), "vertices": len(positions) // 3,
            "material": obj.active_material.name, "texture": texture_image(obj).name}  # fmt: skip


def scenario_results_list(args: dict[str, Any]) -> dict[str, Any]:
    """Reconstruct (result files not kept), Reconstruct Again from the session's list, draw the list with
    an object renamed and one deleted, Show, then load another file and disable the add-on."""
    addon = install(args["zip"], args["python"], args.get("weights_dir", ""))
    history = addon.history
    bpy.context.preferences.addons[MODULE].preferences.keep_results = False
    settings = bpy.context.scene.rfi_settings
    settings.image_source, settings.filepath = "FILE", args["image"]
    for key, value in args.get("settings", {}).items():
        setattr(settings, key, value)
    assert bpy.ops.rfi.reconstruct() == {"FINISHED"}
    first = bpy.context.view_layer.objects.active
    entry = history.entries[0]
    thumbnail = history._previews[entry.result]
    out: dict[str, Any] = {
        "first": object_state(first),
        "entry": {"result": entry.result, "object": entry.object_name, "seconds": entry.seconds,
                  "method": entry.request.method, "preset": entry.request.preset, "seed": entry.request.seed,
                  "thumbnail_size": list(thumbnail.image_size), "next_seed": history.next_seed(entry),
                  "result_files": sorted(p.name for p in Path(entry.result).iterdir())},
        "image_files": sorted(Path(i.filepath).name for i in bpy.data.images),
    }  # fmt: skip
    pixels = np.empty(thumbnail.image_size[0] * thumbnail.image_size[1] * 4, np.float32)
    thumbnail.image_pixels_float.foreach_get(pixels)
    out["thumbnail_spread"] = float(pixels.reshape(-1, 4)[:, :3].std(0).max())
    drawn: list[str] = []
    addon.panels.draw_results(CheckedLayout(drawn), bpy.context)
    out["drawn_one"] = drawn
    assert bpy.ops.rfi.reconstruct_again(result=entry.result, turn=True) == {"FINISHED"}
    second = bpy.context.view_layer.objects.active
    out["overrides"] = [e.request.overrides for e in history.entries]  # newest first
    out["second"] = object_state(second)
    out["first_after"] = object_state(bpy.data.objects[out["first"]["name"]])
    out["entries"] = [(e.object_name, e.request.seed, e.request.preset) for e in history.entries]
    second.name = "renamed"
    bpy.data.objects.remove(first)
    drawn = []
    addon.panels.draw_results(CheckedLayout(drawn), bpy.context)
    out["drawn_deleted"] = drawn
    out["show"] = bpy.ops.rfi.show_result(result=history.entries[0].result) == {"FINISHED"}
    out["active"] = bpy.context.view_layer.objects.active.name
    out["poll"] = addon.panels.RFI_PT_view3d_results.poll(bpy.context)
    bpy.ops.wm.read_homefile(use_empty=True)
    out["after_load"] = {"entries": len(history.entries), "thumbnails": len(history._previews),
                         "poll": addon.panels.RFI_PT_view3d_results.poll(bpy.context)}  # fmt: skip
    import addon_utils

    previews = history._previews
    addon_utils.disable(MODULE)
    out["after_disable"] = {"collection": history._previews is None, "thumbnails": len(previews),
                            "closed": previews._uuid not in bpy.utils.previews._uuid_open}  # fmt: skip
    return out


def scenario_results_cap(args: dict[str, Any]) -> dict[str, Any]:
    """Ten imports listed (no backend): the list keeps the newest eight and frees the others' thumbnails;
    a result folder imported twice (overwritten) is listed once."""
    addon = install(args["zip"])
    history = addon.history
    for index in range(10):
        obj = addon.importer.import_result(args["result"], f"r{index}")
        folder = args["result"] if index == 9 else f"{args['result']}-{index}"
        request = addon.client.protocol.JobRequest(image=args["photo"], output_dir=folder, seed=index)
        history.add(obj, request, addon.job_request.ImportOptions(name=f"r{index}", photo=args["photo"]))
    again = addon.importer.import_result(args["result"], "again")
    history.add(again, history.entries[0].request, history.entries[0].options)
    return {"names": [entry.object_name for entry in history.entries],
            "thumbnails": sorted(history._previews), "results": [entry.result for entry in history.entries],
            "next_seed": history.next_seed(history.entries[-1])}  # fmt: skip


def main() -> None:
    name, args = sys.argv[1], json.loads(sys.argv[2])
    try:
        result = globals()[f"scenario_{name}"](args)
        print("RESULT " + json.dumps(result), flush=True)
        code = 0
    except Exception:
        traceback.print_exc()
        code = 1
    finally:
        addon = sys.modules.get(MODULE)
        if addon is not None and hasattr(addon, "session"):
            addon.session.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
