"""The light a de-lit texture was recovered under, as a Sun and a world colour, so that a GAN2Shape
``albedo`` (or ``net``) result seen through its aligned camera looks like the photo again.

GAN2Shape explains the photo's sRGB values as albedo x (ambient + diffuse x max(0, n . l)). Blender
shades linear values: a world colour W lights an unoccluded diffuse surface as albedo x W, a Sun of
strength E as albedo x E / pi x cos. Through the sRGB curve (about a power of 2.2) the photo's
shading s is about s ** 2.2 in linear values, so W + (E / pi) c is fitted to (ambient + diffuse c)
** 2.2 for c in [0, 1] (least squares): the Sun carries the direction and the part that varies with
it, the world colour the rest. A texture that holds the albedo divided by ``exposure`` in linear
light (``info.light.exposure``: 8 bits hold no albedo above 1) gets ``exposure`` times that light.
The model has no highlights, so the material of a de-lit texture is made purely diffuse (the
Principled BSDF's specular layer would add about 5 % on top).
"""

from __future__ import annotations

import math
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix, Vector

DELIT_TEXTURES = ("albedo", "net")
"""GAN2Shape textures without the recovered shading (``backend/methods/gan2shape/options.py``)."""
SRGB_GAMMA = 2.2


def recovered_light(document: dict[str, Any]) -> dict[str, Any] | None:
    """``result.json``'s recovered light when its texture is de-lit and the light has a direction in the
    mesh's frame (``info.light.towards``), else None."""
    info = document.get("info")
    if not isinstance(info, dict):
        return None
    mesh, light = info.get("mesh"), info.get("light")
    if not (isinstance(mesh, dict) and mesh.get("texture") in DELIT_TEXTURES and isinstance(light, dict)):
        return None
    towards = light.get("towards")
    numbers = [light.get("ambient"), light.get("diffuse"), *(towards if isinstance(towards, list) else [])]
    if len(numbers) != 5 or not all(isinstance(v, int | float) and math.isfinite(v) for v in numbers):
        return None
    exposure = light.get("exposure", 1.0)
    if isinstance(exposure, bool) or not isinstance(exposure, int | float):
        return None
    return light if math.isfinite(exposure) and exposure > 0 else None


def linear_light(ambient: float, diffuse: float) -> tuple[float, float]:
    """World colour W and Sun strength E (W/m^2) whose linear shading best matches the sRGB one."""
    cosines = np.linspace(0.0, 1.0, 101)
    slope, intercept = np.polyfit(cosines, (ambient + diffuse * cosines) ** SRGB_GAMMA, 1)
    return max(float(intercept), 0.0), max(float(slope), 0.0) * math.pi


def make_lambertian(material: bpy.types.Material) -> None:
    """No specular layer on the Principled BSDF: the look the de-lit texture was recovered with."""
    for node in material.node_tree.nodes:
        if node.type == "BSDF_PRINCIPLED":
            node.inputs["Specular IOR Level"].default_value = 0.0


def add_recovered_light(
    context: bpy.types.Context, obj: bpy.types.Object, light: dict[str, Any]
) -> bpy.types.Object:
    """A Sun named ``<object> light`` shining from the recovered direction, and a new world of the
    ambient colour for the scene (the previous world is kept with a fake user, to switch back)."""
    world_colour, strength = linear_light(float(light["ambient"]), float(light["diffuse"]))
    exposure = float(light.get("exposure", 1.0))  # the texture holds the linear albedo / exposure
    world_colour, strength = exposure * world_colour, exposure * strength
    data = bpy.data.lights.new(f"{obj.name} light", "SUN")
    data.energy = strength
    sun = bpy.data.objects.new(f"{obj.name} light", data)
    for collection in obj.users_collection:
        collection.objects.link(sun)
    towards = (obj.matrix_world.to_3x3() @ Vector(light["towards"])).normalized()
    location = obj.matrix_world.translation + towards * 2 * max(max(obj.dimensions), 0.1)
    rotation = towards.to_track_quat("Z", "Y")  # a Sun shines along its -Z
    sun.matrix_world = Matrix.LocRotScale(location, rotation, None)
    scene = context.scene
    if scene.world is not None:
        scene.world.use_fake_user = True
    world = bpy.data.worlds.new(f"{obj.name} light")
    world.color = (world_colour,) * 3
    if bpy.app.version < (5, 0, 0):
        world.use_nodes = True  # deprecated in 5.0, where every new world has nodes
    background = next(node for node in world.node_tree.nodes if node.type == "BACKGROUND")
    background.inputs["Color"].default_value = (world_colour, world_colour, world_colour, 1.0)
    background.inputs["Strength"].default_value = 1.0
    scene.world = world
    return sun
