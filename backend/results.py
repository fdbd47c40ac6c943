"""Validate a ``MeshResult`` and write it to an output directory, all or nothing.

Files in ``OUTDIR``:

- ``mesh.npz``: ``vertices`` float32 (V, 3) in Blender's frame, ``faces`` int32 (F, 3) wound
  counter-clockwise seen from outside, ``uvs`` float32 (F, 3, 2) per face corner, v up.
- ``texture.png``: the sRGB texture, row 0 at the top (v = 1).
- ``result.json``: method, weights id and sha256, preset, seed, device, options, camera, timings,
  losses, notes, info, protocol and backend versions, mesh counts and the file list.
- ``mesh.glb``: the same textured mesh for any glTF viewer (written by trimesh; glTF is Y up, so
  Blender's (X, Y, Z) is stored as (X, Z, -Y) and Blender's glTF importer restores it).
- ``preview.png``: the method's previews side by side (absent when it gave none).

Camera schema (``result.json["camera"]`` and ``MeshResult.camera``)::

    {"type": "ORTHO" | "PERSP",
     "matrix_world": 4x4 row-major nested list, the Blender camera object's world matrix
                     (the camera looks along its local -Z, local +Y is image up),
     "ortho_scale": float  (ORTHO: world width of the crop square), or
     "angle": float        (PERSP: field of view in radians across the crop square),
     "crop_box": [x0, y0, side]  original-image pixels (top-left origin) the camera frames,
     "image_size": [W, H]        of the original image}

Everything is written to a temporary directory next to ``OUTDIR`` and renamed into place, so a
failed job never leaves half a result; an existing non-empty ``OUTDIR`` is only replaced with
``overwrite=True``, and only when it holds nothing but an earlier result.
"""

from __future__ import annotations

import errno
import json
import math
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image

from backend import __version__
from backend.methods.base import MeshResult
from backend.protocol import PROTOCOL_VERSION

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ResultError(Exception):
    """The result cannot be written (broken mesh, existing output, disk problem)."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint


def _invalid(what: str) -> ResultError:
    return ResultError(
        "invalid_result",
        f"the method produced an invalid mesh: {what}",
        "report this with the image and settings",
    )


def _check_array(name: str, value: Any, ndim: int, last: tuple[int, ...]) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise _invalid(f"{name} is a {type(value).__name__}, not a numpy array")
    if value.ndim != ndim or value.shape[ndim - len(last) :] != last:
        raise _invalid(f"{name} has shape {value.shape}, expected (..., {', '.join(map(str, last))})")
    return value


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_camera(camera: Any) -> None:
    """Check ``camera`` against the schema in this module's docstring."""
    if not isinstance(camera, dict):
        raise _invalid("camera is not a dict")
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
    for ok, what in checks:
        if not ok:
            raise _invalid(what)


def validate(result: MeshResult) -> MeshResult:
    """Return ``result`` with canonical dtypes, or raise ``ResultError`` if anything is broken."""
    vertices = _check_array("vertices", result.vertices, 2, (3,))
    faces = _check_array("faces", result.faces, 2, (3,))
    uvs = _check_array("uvs", result.uvs, 3, (3, 2))
    texture = _check_array("texture", result.texture, 3, (3,))
    if len(vertices) < 3 or len(faces) < 1:
        raise _invalid(f"{len(vertices)} vertices and {len(faces)} faces is not a mesh")
    if not np.issubdtype(faces.dtype, np.integer):
        raise _invalid(f"faces have dtype {faces.dtype}, expected integers")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise _invalid(f"face indices span {faces.min()}..{faces.max()} for {len(vertices)} vertices")
    if len(uvs) != len(faces):
        raise _invalid(f"{len(uvs)} uv triangles for {len(faces)} faces")
    for name, values in (("vertices", vertices), ("uvs", uvs)):
        if not np.issubdtype(values.dtype, np.floating) or not np.isfinite(values).all():
            raise _invalid(f"{name} contain NaN/Inf or are not floating point")
    if texture.dtype != np.uint8 or min(texture.shape[:2]) < 1:
        raise _invalid(f"texture must be (H, W, 3) uint8, got {texture.shape} {texture.dtype}")
    validate_camera(result.camera)
    for name, image in result.previews.items():
        if not NAME_PATTERN.match(str(name)):
            raise _invalid(f"preview name {name!r} is not a plain name")
        _check_array(f"preview {name}", image, 3, (3,))
        if image.dtype != np.uint8:
            raise _invalid(f"preview {name} must be uint8")
    return MeshResult(
        vertices=np.ascontiguousarray(vertices, np.float32),
        faces=np.ascontiguousarray(faces, np.int32),
        uvs=np.ascontiguousarray(uvs, np.float32),
        texture=np.ascontiguousarray(texture),
        camera=result.camera,
        info=result.info,
        previews=result.previews,
    )


def _json_ready(value: Any) -> Any:
    """numpy scalars/arrays -> Python; non-finite floats -> None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, np.generic):
        return _json_ready(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def glb_scene(result: MeshResult) -> trimesh.Trimesh:
    """A textured trimesh in glTF's Y-up frame; corners are split only where UVs differ."""
    corners = result.vertices[result.faces].reshape(-1, 3)
    keys = np.concatenate([corners, result.uvs.reshape(-1, 2)], axis=1)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    x, y, z = unique[:, 0], unique[:, 1], unique[:, 2]
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=Image.fromarray(result.texture, "RGB"), metallicFactor=0.0, roughnessFactor=1.0
    )
    visual = trimesh.visual.TextureVisuals(uv=unique[:, 3:5], material=material)
    return trimesh.Trimesh(
        vertices=np.stack([x, z, -y], axis=1),
        faces=inverse.reshape(-1, 3),
        visual=visual,
        process=False,
    )


def preview_image(previews: dict[str, np.ndarray]) -> np.ndarray:
    """All previews side by side at the tallest one's height (nearest-neighbour, keeps pixels crisp)."""
    height = max(p.shape[0] for p in previews.values())
    scaled = []
    for image in previews.values():
        width = max(1, round(image.shape[1] * height / image.shape[0]))
        scaled.append(np.asarray(Image.fromarray(image, "RGB").resize((width, height), Image.NEAREST)))
    return np.concatenate(scaled, axis=1)


def _write_files(result: MeshResult, folder: Path, metadata: dict[str, Any]) -> list[str]:
    np.savez_compressed(folder / "mesh.npz", vertices=result.vertices, faces=result.faces, uvs=result.uvs)
    Image.fromarray(result.texture, "RGB").save(folder / "texture.png")
    glb_scene(result).export(folder / "mesh.glb", file_type="glb")
    files = ["mesh.npz", "texture.png", "mesh.glb"]
    if result.previews:
        Image.fromarray(preview_image(result.previews), "RGB").save(folder / "preview.png")
        files.append("preview.png")
    files.append("result.json")
    info = dict(result.info)
    document = {
        "protocol_version": PROTOCOL_VERSION,
        "backend_version": __version__,
        **metadata,
        "camera": result.camera,
        "losses": info.pop("losses", {}),
        "notes": [*metadata.get("notes", []), *info.pop("notes", [])],
        "info": info,
        "mesh": {
            "vertices": len(result.vertices),
            "faces": len(result.faces),
            "texture": list(result.texture.shape),
        },
        "files": files,
    }
    text = json.dumps(_json_ready(document), indent=2, allow_nan=False)
    (folder / "result.json").write_text(text + "\n", encoding="utf-8")
    return files


def _disk_error(exc: OSError, out_dir: Path) -> ResultError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return ResultError(
            "disk_full", f"no space left to write {out_dir}", "free disk space or pick another -o"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ResultError(
            "not_writable",
            f"cannot write {out_dir}: {exc.strerror}",
            "pick an output folder you can write to",
        )
    return ResultError("write_failed", f"cannot write {out_dir}: {exc}", "check the output folder")


RESULT_FILES = frozenset({"mesh.npz", "texture.png", "result.json", "mesh.glb", "preview.png"})
"""Every file a result may hold; a folder with anything else is not ours to replace."""


def check_output_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse an existing non-empty ``out_dir`` (or a file there) unless ``overwrite``; jobs call this
    before they start, so a long optimisation never ends in a refusal."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ResultError(
            "output_exists", f"{out_dir} exists and is not a folder", "pick another output folder"
        )
    existing = {p.name for p in out_dir.iterdir()} if out_dir.is_dir() else set()
    if existing and not overwrite:
        raise ResultError(
            "output_exists",
            f"output folder {out_dir} is not empty",
            "pick another folder or pass --overwrite",
        )
    foreign = sorted(existing - RESULT_FILES)
    if foreign:
        # --overwrite replaces an earlier result, never a folder of the artist's own files.
        raise ResultError(
            "output_exists",
            f"output folder {out_dir} holds files that are not a result ({', '.join(foreign[:3])})",
            "pick another folder; --overwrite only replaces an earlier result",
        )
    _probe_writable(out_dir.absolute())


def _probe_writable(out_dir: Path) -> None:
    """Create and remove a folder where the result's staging folder will go, so a read-only or
    otherwise unusable output location fails before the optimisation, not after it."""
    try:
        parent = out_dir.parent
        while not parent.exists():
            parent = parent.parent
        tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.probe-", dir=parent).cleanup()
    except OSError as exc:
        raise _disk_error(exc, out_dir) from None


def write_result(
    result: MeshResult, out_dir: str | Path, metadata: dict[str, Any], overwrite: bool = False
) -> dict[str, str]:
    """Validate and write ``result``; returns file name -> absolute path.

    ``metadata`` goes into ``result.json`` (method, weights, preset, seed, device, timings, ...).
    """
    result = validate(result)
    out_dir = Path(out_dir).absolute()
    check_output_dir(out_dir, overwrite)
    token = uuid.uuid4().hex[:8]
    staging = out_dir.with_name(f".{out_dir.name}.tmp-{token}")
    retired = out_dir.with_name(f".{out_dir.name}.old-{token}")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        files = _write_files(result, staging, metadata)
        if out_dir.exists():
            out_dir.rename(retired)
        try:
            staging.rename(out_dir)
        except OSError:
            if retired.exists():
                retired.rename(out_dir)
            raise
    except OSError as exc:
        raise _disk_error(exc, out_dir) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)
    return {name: str(out_dir / name) for name in files}
