"""Render one saved batch ``.blend`` through its aligned camera; the bpy half of ``blender_overlay.py``.

    python blender_overlay_render.py SCENE.blend OUT.png WIDTH HEIGHT [flat|lit|default]

Runs in a fresh bpy process (bpy can be imported once per process and may hang at exit), so it
needs nothing but bpy and the standard library: the Python may be another Blender's. ``flat``
(default): Workbench, flat light, texture colour, Standard view and a transparent film make the
pixels the texture's own sRGB colours and alpha the silhouette. ``lit``: Cycles with the scene's own
light and world (what the importer added: the recovered light of a de-lit texture). ``default``:
Cycles under the light and world of Blender's factory startup file instead. Prints ``RESULT <json>``
(what the scene held) and leaves with ``os._exit``.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

import bpy


def reconstruction() -> bpy.types.Object:
    """The imported object: the one mesh the importer tagged with its ``rfi_`` properties."""
    found = [obj for obj in bpy.context.scene.objects if obj.type == "MESH" and "rfi_method" in obj]
    assert len(found) == 1, f"expected one reconstruction, found {[obj.name for obj in found]}"
    return found[0]


def aligned_camera(obj: bpy.types.Object) -> bpy.types.Object:
    """The importer names the aligned camera ``<object> view``; found by name, not trusted from the scene."""
    camera = bpy.data.objects.get(f"{obj.name} view")
    assert camera is not None and camera.type == "CAMERA", f"no camera named '{obj.name} view'"
    return camera


def setup_render(obj: bpy.types.Object, camera: bpy.types.Object, width: int, height: int) -> None:
    """Only the object, seen through ``camera`` at the photo's size, with untouched texture colours."""
    scene = bpy.context.scene
    for other in scene.objects:
        other.hide_render = other is not obj and other.type != "CAMERA"
    scene.camera = camera
    render = scene.render
    render.engine = "BLENDER_WORKBENCH"
    render.resolution_x, render.resolution_y, render.resolution_percentage = width, height, 100
    render.pixel_aspect_x = render.pixel_aspect_y = 1.0
    render.film_transparent = True
    render.dither_intensity = 0.0
    render.image_settings.file_format = "PNG"
    render.image_settings.color_mode = "RGBA"
    render.image_settings.color_depth = "8"
    shading = scene.display.shading
    shading.light, shading.color_type = "FLAT", "TEXTURE"
    shading.show_cavity = shading.show_shadows = shading.show_object_outline = False
    shading.show_specular_highlight = shading.show_xray = shading.show_backface_culling = False
    scene.view_settings.view_transform, scene.view_settings.look = "Standard", "None"
    scene.view_settings.exposure, scene.view_settings.gamma = 0.0, 1.0
    scene.display_settings.display_device = "sRGB"


FACTORY_LIGHT = {"location": (4.076245, 1.005454, 5.903862), "energy": 1000.0}
"""The point light of Blender's factory startup scene ("Light")."""
FACTORY_WORLD = 0.050876
"""The grey of the factory startup scene's world."""
CYCLES_SAMPLES = 64


def light_with_cycles(obj: bpy.types.Object, shading: str) -> list[str]:
    """Cycles with the reconstruction's own light (``<object> light``) and the scene's world, or
    (``default``) the factory startup's light and world instead; returns the lights that shine."""
    scene = bpy.context.scene
    own = bpy.data.objects.get(f"{obj.name} light")
    if shading == "lit" and own is not None:
        own.hide_render = False
    if shading == "default":
        data = bpy.data.lights.new("factory light", "POINT")
        data.energy = FACTORY_LIGHT["energy"]
        light = bpy.data.objects.new("factory light", data)
        light.location = FACTORY_LIGHT["location"]
        scene.collection.objects.link(light)
        scene.world = bpy.data.worlds.new("factory world")
        scene.world.color = (FACTORY_WORLD,) * 3
        if bpy.app.version < (5, 0, 0):
            scene.world.use_nodes = True
        background = next(n for n in scene.world.node_tree.nodes if n.type == "BACKGROUND")
        background.inputs["Color"].default_value = (FACTORY_WORLD,) * 3 + (1.0,)
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples, scene.cycles.use_denoising = "CPU", CYCLES_SAMPLES, False
    scene.render.threads_mode, scene.render.threads = "FIXED", 2
    return [o.name for o in scene.objects if o.type == "LIGHT" and not o.hide_render]


def main(blend: str, png: str, width: int, height: int, shading: str = "flat") -> dict[str, Any]:
    bpy.ops.wm.open_mainfile(filepath=blend, load_ui=False)
    scene = bpy.context.scene
    obj = reconstruction()
    camera = aligned_camera(obj)
    saved = {
        "scene_camera": scene.camera.name if scene.camera else None,
        "saved_resolution": [scene.render.resolution_x, scene.render.resolution_y],
        "saved_percentage": scene.render.resolution_percentage,
    }
    setup_render(obj, camera, width, height)
    lights = light_with_cycles(obj, shading) if shading != "flat" else []
    scene.render.filepath = png
    bpy.ops.render.render(write_still=True)
    data = camera.data
    return {
        "object": obj.name,
        "camera": camera.name,
        "camera_type": data.type,
        "shift": [data.shift_x, data.shift_y],
        "ortho_scale": data.ortho_scale,
        "angle": data.angle,
        "backgrounds": len(data.background_images),
        "blender": bpy.app.version_string,
        "shading": shading,
        "lights": lights,
        "world": scene.world.name if scene.world else None,
        **saved,
    }


if __name__ == "__main__":
    code = 1
    try:
        blend_path, png_path, size_x, size_y, *mode = sys.argv[1:6]
        result = main(blend_path, png_path, int(size_x), int(size_y), *mode)
        print("RESULT " + json.dumps(result), flush=True)
        code = 0
    except Exception:
        traceback.print_exc()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
