"""Turn a backend result folder into Blender data, fast.

The mesh goes in through the attribute API straight from numpy (one ``foreach_set`` per array;
1 M triangles in about half a second, against seconds with ``from_pydata``), as the polygons of
``mesh.npz`` where it has them (the ``quads`` option) and else its triangles; the texture PNG is
loaded and packed as-is (no re-encode), and the material is a Principled BSDF fed by it. New
data is only ever added: Blender gives clashing names a suffix, nothing existing is renamed. The
folder's files and ``result.json`` schema are the backend's ``result_format``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import bpy
import numpy as np
from mathutils import Matrix, Vector

from . import lighting
from . import mirror as mirror_half
from .polygons import Polygons, from_triangles

try:
    from .backend import result_format
except ImportError:  # source tree: backend/ is the sibling of blender_addon/ (tests put it on sys.path)
    from backend import result_format

PROPERTY_PREFIX = "rfi_"
UV_MAP_NAME = "UVMap"


class UnreadableResult(ValueError):
    """A result folder the importer cannot read; the message says which file and why."""


def load_mesh_arrays(result_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """vertices (V,3) float32, faces (F,3) int32, per-corner uvs (F,3,2) float32, checked."""
    path = result_dir / result_format.MESH_FILE
    if not path.is_file():
        raise UnreadableResult(f"{path} is missing")
    with np.load(path, allow_pickle=False) as data:
        missing = set(result_format.MESH_ARRAYS) - set(data.files)
        if missing:
            raise UnreadableResult(f"{path} lacks {', '.join(sorted(missing))}")
        vertices, faces, uvs = (data[name] for name in result_format.MESH_ARRAYS)
        vertices = np.ascontiguousarray(vertices, dtype=np.float32)
        faces = np.ascontiguousarray(faces, dtype=np.int32)
        uvs = np.ascontiguousarray(uvs, dtype=np.float32)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise UnreadableResult(f"{path}: expected vertices (V,3) and faces (F,3)")
    if uvs.shape != (len(faces), 3, 2):
        raise UnreadableResult(f"{path}: uvs must be (F,3,2) per face corner, got {uvs.shape}")
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise UnreadableResult(f"{path}: face indices outside 0..{len(vertices) - 1}")
    if not (np.isfinite(vertices).all() and np.isfinite(uvs).all()):
        raise UnreadableResult(f"{path}: non-finite coordinates")
    return vertices, faces, uvs


def load_polygons(result_dir: Path, vertex_count: int) -> Polygons | None:
    """The mesh as polygons (``result_format.POLYGON_ARRAYS``, written with the ``quads`` option),
    checked; None when the result has only triangles."""
    path = result_dir / result_format.MESH_FILE
    with np.load(path, allow_pickle=False) as data:
        present = set(result_format.POLYGON_ARRAYS) & set(data.files)
        if not present:
            return None
        if present != set(result_format.POLYGON_ARRAYS):
            raise UnreadableResult(f"{path} has {', '.join(sorted(present))} but not all polygon arrays")
        sizes, corners, uvs = (data[name] for name in result_format.POLYGON_ARRAYS)
    polygons = Polygons(
        np.ascontiguousarray(sizes, np.int32),
        np.ascontiguousarray(corners, np.int32),
        np.ascontiguousarray(uvs, np.float32),
    )
    shapes_ok = polygons.sizes.ndim == polygons.corners.ndim == 1 and polygons.uvs.shape == (len(corners), 2)
    if not shapes_ok or len(sizes) == 0 or sizes.min() < 3 or int(sizes.sum()) != len(corners):
        raise UnreadableResult(f"{path}: polygon sizes, vertices and uvs do not fit together")
    if corners.min() < 0 or corners.max() >= vertex_count or not np.isfinite(polygons.uvs).all():
        raise UnreadableResult(f"{path}: polygon vertices outside 0..{vertex_count - 1} or non-finite uvs")
    return polygons


def build_mesh(name: str, vertices: np.ndarray, polygons: Polygons) -> bpy.types.Mesh:
    """A mesh from numpy through the attribute API (arrays must be contiguous, exact dtypes)."""
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.loops.add(len(polygons.corners))
    mesh.polygons.add(len(polygons.sizes))
    mesh.attributes["position"].data.foreach_set("vector", vertices.ravel())
    corner_vert = mesh.attributes.get(".corner_vert")
    if corner_vert is not None:
        corner_vert.data.foreach_set("value", polygons.corners)
    else:  # the internal attribute may be renamed in a future Blender; this path is slower but public
        mesh.loops.foreach_set("vertex_index", polygons.corners)
    mesh.polygons.foreach_set("loop_start", polygons.starts)
    mesh.update(calc_edges=True)
    mesh.uv_layers.new(name=UV_MAP_NAME)
    mesh.attributes[UV_MAP_NAME].data.foreach_set("vector", polygons.uvs.ravel())
    return mesh


def load_texture(path: Path, name: str, size: int = 0) -> bpy.types.Image:
    """The texture packed into the .blend, so the result folder may be deleted afterwards."""
    if not path.is_file():
        raise UnreadableResult(f"{path} is missing")
    image = bpy.data.images.load(str(path), check_existing=False)
    image.name = name
    if size and tuple(image.size) != (size, size):
        image.scale(size, size)
    image.pack()
    return image


def build_material(name: str, texture: bpy.types.Image) -> bpy.types.Material:
    """Principled BSDF with the texture as base colour; the node tree stays plain for editing."""
    material = bpy.data.materials.new(name)
    if bpy.app.version < (5, 0, 0):
        material.use_nodes = True  # deprecated in 5.0, where every new material has nodes
    nodes = material.node_tree.nodes
    bsdf = next(node for node in nodes if node.type == "BSDF_PRINCIPLED")
    bsdf.inputs["Roughness"].default_value = 0.7
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = texture
    tex.location = (bsdf.location.x - 340, bsdf.location.y)
    material.node_tree.links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    return material


def import_result(
    result_dir: str | Path,
    name: str,
    *,
    context: bpy.types.Context | None = None,
    shade_smooth: bool = True,
    texture_size: int = 0,
    aligned_camera: bool = False,
    mirror: bool = False,
    photo: str | None = None,
    properties: dict[str, Any] | None = None,
) -> bpy.types.Object:
    """Import ``mesh.npz`` + ``texture.png`` (+ ``result.json``) as one selected, active object at the
    3D cursor; optionally a camera that sees it as the photo did, with the photo as background (and
    for a de-lit texture, whose material is then purely diffuse, the light it was recovered under:
    ``lighting``), and (``mirror``) only the X >= 0 half of a symmetric result under a Mirror modifier."""
    context = context or bpy.context
    result_dir = Path(result_dir)
    vertices, faces, uvs = load_mesh_arrays(result_dir)
    polygons = load_polygons(result_dir, len(vertices)) or from_triangles(faces, uvs)
    info = read_result_json(result_dir)
    half = symmetric_half_or_none(name, vertices, polygons) if mirror else None
    mesh = build_mesh(name, *(half or (vertices, polygons)))
    if shade_smooth:
        mesh.shade_smooth()
    else:  # new faces count as smooth in Blender 4.1+ until marked sharp
        mesh.shade_flat()
    texture = load_texture(result_dir / result_format.TEXTURE_FILE, f"{name} texture", texture_size)
    mesh.materials.append(build_material(name, texture))
    light = lighting.recovered_light(info)
    if light is not None:
        lighting.make_lambertian(mesh.materials[0])

    obj = bpy.data.objects.new(name, mesh)
    (context.collection or context.scene.collection).objects.link(obj)
    obj.location = context.scene.cursor.location
    for selected in context.selected_objects:
        selected.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj
    record_properties(obj, info, properties or {})
    if half is not None:
        add_mirror_modifier(obj, mirror_half.mesh_size(vertices))
    if aligned_camera and info.get("camera"):
        context.view_layer.update()
        add_aligned_camera(context, obj, info["camera"], photo)
        if light is not None:
            lighting.add_recovered_light(context, obj, light)
    return obj


def symmetric_half_or_none(name: str, vertices: np.ndarray, polygons: Polygons) -> mirror_half.Half | None:
    """The X >= 0 half, or None (after one line saying why) when the result is not symmetric."""
    try:
        return mirror_half.symmetric_half(vertices, polygons)
    except mirror_half.NotSymmetric as exc:
        print(f"{name}: imported without a Mirror modifier: {exc}")
        return None


def add_mirror_modifier(obj: bpy.types.Object, size: float) -> bpy.types.Modifier:
    """Mirror in X with clipping and merging, the mirrored UVs at u' = 0.5 - u."""
    modifier = obj.modifiers.new("Mirror", "MIRROR")
    modifier.use_axis = (True, False, False)
    modifier.use_clip = True
    modifier.use_mirror_merge = True
    modifier.merge_threshold = 1e-4 * size
    modifier.use_mirror_u = True
    modifier.mirror_offset_u = mirror_half.MIRROR_U_OFFSET
    return modifier


def read_result_json(result_dir: Path) -> result_format.ResultDocument:
    """The folder's ``result.json``; empty when there is none (the mesh and texture still import)."""
    path = result_dir / result_format.RESULT_JSON
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UnreadableResult(f"{path} is not valid JSON: {exc}") from None


def record_properties(
    obj: bpy.types.Object, info: result_format.ResultDocument, extra: dict[str, Any]
) -> None:
    """Custom properties, so a reconstruction can be told apart, repeated and re-projected later
    (``extra`` holds the photo and the result folder, ``rfi_image`` and ``rfi_result``)."""
    weights, source = info.get("weights"), info.get("input")
    fields = {
        "method": info.get("method"),
        "weights": weights.get("id") if isinstance(weights, dict) else weights,
        "mask": source.get("mask_resolved") if isinstance(source, dict) else None,
        "preset": info.get("preset"),
        "seed": info.get("seed"),
        "device": info.get("device"),
        **extra,
    }
    for key, value in fields.items():
        if isinstance(value, str | int | float):
            obj[PROPERTY_PREFIX + key] = value
    timings = info.get("timings")
    if isinstance(timings, dict):
        numbers = {k: float(v) for k, v in timings.items() if isinstance(v, int | float)}
        obj[PROPERTY_PREFIX + "timings"] = numbers
    for kind in ("notes", "warnings"):
        lines = info.get(kind)
        lines = [line for line in lines if isinstance(line, str)] if isinstance(lines, list) else []
        if lines:
            obj[PROPERTY_PREFIX + kind] = "\n".join(lines)


def result_lines(obj: bpy.types.Object, kind: str) -> list[str]:
    """The ``notes`` (what happened) or ``warnings`` (what to check) of the result ``obj`` came from."""
    text = obj.get(PROPERTY_PREFIX + kind)
    return text.split("\n") if isinstance(text, str) else []


def camera_frame(camera: result_format.Camera) -> dict[str, float]:
    """Blender camera settings that frame the whole original photo, given the crop the backend saw.

    The backend's camera looks through the centre of the square ``crop_box`` and spans it with
    ``ortho_scale`` (or ``angle``). With sensor fit AUTO, Blender measures ortho scale, angle and
    lens shift in units of the frame's larger side, so the photo's larger side (in crop units)
    scales the span, and the shift moves the frame centre from the crop centre to the photo centre.
    """
    x0, y0, side = (float(v) for v in camera["crop_box"])
    width, height = (float(v) for v in camera["image_size"])
    larger = max(width, height)
    cx, cy = x0 + side / 2, y0 + side / 2
    frame = {"shift_x": (width / 2 - cx) / larger, "shift_y": (cy - height / 2) / larger}
    if camera["type"] == "ORTHO":
        frame["ortho_scale"] = float(camera["ortho_scale"]) * larger / side
    else:
        half_tan = math.tan(float(camera["angle"]) / 2) * larger / side
        frame["angle"] = 2 * math.atan(half_tan)
    return frame


def add_aligned_camera(
    context: bpy.types.Context, obj: bpy.types.Object, camera: result_format.Camera, photo: str | None
) -> bpy.types.Object:
    """A camera placed as the estimated view relative to ``obj``; it becomes the scene camera and the
    render size becomes the photo's, so looking through it overlays the photo on the mesh."""
    data = bpy.data.cameras.new(f"{obj.name} view")
    data.type = "ORTHO" if camera["type"] == "ORTHO" else "PERSP"
    data.sensor_fit = "AUTO"
    for key, value in camera_frame(camera).items():
        setattr(data, key, value)
    cam = bpy.data.objects.new(f"{obj.name} view", data)
    for collection in obj.users_collection:
        collection.objects.link(cam)
    cam.matrix_world = obj.matrix_world @ Matrix([list(map(float, row)) for row in camera["matrix_world"]])
    _fit_clipping(data, cam, obj)
    scene = context.scene
    scene.camera = cam
    scene.render.resolution_x, scene.render.resolution_y = (int(v) for v in camera["image_size"])
    scene.render.pixel_aspect_x = scene.render.pixel_aspect_y = 1.0
    if photo and Path(photo).is_file():
        background = data.background_images.new()
        background.image = bpy.data.images.load(photo, check_existing=True)
        background.display_depth = "BACK"
        background.frame_method = "FIT"
        data.show_background_images = True
    return cam


def _fit_clipping(data: bpy.types.Camera, cam: bpy.types.Object, obj: bpy.types.Object) -> None:
    """Clip planes around the object so an orthographic camera close to it still sees all of it."""
    centre = obj.matrix_world @ Vector((0.0, 0.0, 0.0))
    distance = (cam.matrix_world.translation - centre).length
    radius = max(obj.dimensions) if max(obj.dimensions) > 0 else 1.0
    data.clip_start = max(1e-3, min(0.1, (distance - radius) * 0.5)) if distance > radius else 1e-3
    data.clip_end = max(100.0, distance + 2 * radius)
