"""The result folder: the one definition of what a job writes and what reads it back.

Standard library only, like ``backend.protocol``: the Blender add-on imports this very module (its
importer and Re-project Photo), ``backend/results.py`` writes by it and ``backend/reproject`` reads by
it, so the file names, the ``result.json`` schema and the camera cannot drift apart.

Files in a result folder:

- ``mesh.npz``: ``vertices`` float32 (V, 3) in Blender's frame, ``faces`` int32 (F, 3) wound
  counter-clockwise seen from outside, ``uvs`` float32 (F, 3, 2) per face corner, v up. With the
  ``quads`` option also the same surface as polygons (``POLYGON_ARRAYS``): ``polygon_sizes`` int32
  (P,) corners per polygon (4 for a quad, 3 for a triangle it cannot pair), ``polygon_vertices``
  int32 (C,) the vertex of each corner, polygon after polygon, counter-clockwise seen from outside,
  ``polygon_uvs`` float32 (C, 2) each corner's UV (C = the sum of the sizes). Each polygon begins at
  an end of its diagonal: its fan from corner 0 ((c0, c1, c2), (c0, c2, c3)) is two triangles of
  ``faces`` with their UVs, and every triangle of ``faces`` is in exactly one polygon (in another
  order), so readers that want triangles keep reading ``faces`` and the Blender importer builds the
  polygons. ``mesh.glb`` stays triangles (glTF has no quads).
- ``texture.png``: the sRGB texture, row 0 at the top (v = 1).
- ``result.json``: ``ResultDocument``: method, weights id and sha256, preset, seed, device, options,
  camera, timings, losses, notes, info, protocol and backend versions, mesh counts and the file list.
- ``mesh.glb``: the same textured mesh for any glTF viewer (glTF is Y up, so Blender's (X, Y, Z) is
  stored as (X, Z, -Y) and Blender's glTF importer restores it).
- ``preview.png``: the method's previews side by side (absent when it gave none).
- ``mask.png``: the object mask the method was given, 8-bit (255 = object) at the photo's size;
  ``result.json["input"]["mask_resolved"]`` names the source that made it.

A mask preview (the ``mask`` job) writes a folder of only ``mask.png`` (the same mask a
reconstruction of the photo with the same mask settings would write) and ``result.json``
(``MaskDocument``, ``kind`` ``"mask"``, no ``method``: it is no reconstruction to import or
re-project).

Camera schema (``result.json["camera"]``, ``Camera``)::

    {"type": "ORTHO" | "PERSP",
     "matrix_world": 4x4 row-major nested list, the Blender camera object's world matrix
                     (the camera looks along its local -Z, local +Y is image up),
     "ortho_scale": float  (ORTHO: world width of the crop square), or
     "angle": float        (PERSP: field of view in radians across the crop square),
     "crop_box": [x0, y0, side]  original-image pixels (top-left origin) the camera frames,
     "image_size": [W, H]        of the original image}
"""

from __future__ import annotations

import math
from typing import Any, TypedDict

MESH_FILE = "mesh.npz"
TEXTURE_FILE = "texture.png"
RESULT_JSON = "result.json"
GLB_FILE = "mesh.glb"
PREVIEW_FILE = "preview.png"
MASK_FILE = "mask.png"
RESULT_FILES = frozenset({MESH_FILE, TEXTURE_FILE, RESULT_JSON, GLB_FILE, PREVIEW_FILE, MASK_FILE})
"""Every file a result may hold."""
MESH_ARRAYS = ("vertices", "faces", "uvs")
"""The arrays of ``mesh.npz``."""
POLYGON_ARRAYS = ("polygon_sizes", "polygon_vertices", "polygon_uvs")
"""The optional arrays of ``mesh.npz``: the mesh as polygons (``quads``); all three or none."""

READABLE_RESULT_VERSIONS = (1, 2, 3, 4)
"""Protocol versions whose ``result.json`` this backend reads back (``reproject``): one schema, since
protocols 2 to 4 only added job types and handshake fields (and results record what they
re-projected under ``info``)."""
MASK_KIND = "mask"
"""``result.json["kind"]`` of a mask preview's folder."""
MAX_RESULT_JSON_BYTES = 64 << 20
"""A larger ``result.json`` is not one this backend wrote, and is never read whole."""


class Camera(TypedDict, total=False):
    """The camera that sees the result as the photo did (schema in this module's docstring)."""

    type: str
    matrix_world: list[list[float]]
    ortho_scale: float
    angle: float
    crop_box: list[float]
    image_size: list[int]


class WeightsRecord(TypedDict):
    """``result.json["weights"]``: the model that made the result."""

    id: str
    sha256: str
    category: str
    source: str


class InputRecord(TypedDict):
    """``result.json["input"]``: the photo and the object mask as asked for and as resolved."""

    image: str
    mask: str
    mask_resolved: str
    box: list[int] | None


class MeshCounts(TypedDict):
    """``result.json["mesh"]``: vertex and face (triangle) counts, the texture's (H, W, 3) shape and
    the polygons an import builds (``faces`` again unless ``mesh.npz`` has polygon arrays)."""

    vertices: int
    faces: int
    texture: list[int]
    polygons: int


class ResultDocument(TypedDict, total=False):
    """``result.json``. ``notes`` say what happened (which mask ran, a loss term left out);
    ``warnings`` what the artist should check, each with its fix (a front and back the photo hardly
    tells apart). A re-projection keeps its source's provenance (``method`` to ``input``, those
    present there) and records under ``info.reprojection`` what it re-projected onto what."""

    protocol_version: int
    backend_version: str
    method: str
    weights: WeightsRecord
    preset: str
    options: dict[str, Any]
    seed: int
    device: str
    input: InputRecord
    notes: list[str]
    warnings: list[str]
    timings: dict[str, float]
    camera: Camera
    losses: dict[str, list[float]]
    info: dict[str, Any]
    mesh: MeshCounts
    files: list[str]


class MaskDocument(TypedDict):
    """``result.json`` of a mask preview: the photo and mask source as asked for and resolved,
    the share of the photo the mask covers, the photo's (W, H), notes and timings."""

    protocol_version: int
    backend_version: str
    kind: str
    input: InputRecord
    coverage: float
    image_size: list[int]
    notes: list[str]
    timings: dict[str, float]
    files: list[str]


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def camera_problem(camera: Any) -> str:
    """What makes ``camera`` not a ``Camera`` of the schema ("" when it is one)."""
    if not isinstance(camera, dict):
        return "camera is not a dict"
    kind = camera.get("type")
    matrix = camera.get("matrix_world")
    matrix_ok = (
        isinstance(matrix, list | tuple)
        and len(matrix) == 4
        and all(
            isinstance(row, list | tuple) and len(row) == 4 and all(map(_finite_number, row))
            for row in matrix
        )
    )
    box, size = camera.get("crop_box"), camera.get("image_size")
    checks = [
        (kind in ("ORTHO", "PERSP"), "camera type must be ORTHO or PERSP"),
        (matrix_ok, "camera matrix_world must be 4x4 finite numbers"),
        (
            kind != "ORTHO" or (_finite_number(camera.get("ortho_scale")) and camera["ortho_scale"] > 0),
            "ORTHO camera needs a positive ortho_scale",
        ),
        (
            kind != "PERSP" or (_finite_number(camera.get("angle")) and 0 < camera["angle"] < math.pi),
            "PERSP camera needs an angle in (0, pi)",
        ),
        (
            isinstance(box, list | tuple) and len(box) == 3 and all(map(_finite_number, box)) and box[2] > 0,
            "camera crop_box must be [x0, y0, side] with side > 0",
        ),
        (
            isinstance(size, list | tuple)
            and len(size) == 2
            and all(isinstance(v, int) and v > 0 for v in size),
            "camera image_size must be [W, H] positive integers",
        ),
    ]
    return next((what for ok, what in checks if not ok), "")
