"""Validate a ``MeshResult`` and write it to an output directory, all or nothing.

The folder's files, ``result.json`` schema and camera are defined in ``backend/result_format.py``
(shared with the add-on's importer); ``mesh.glb`` is written by trimesh.

Everything is written to a staging folder next to ``OUTDIR`` (``.rfi-<hash of the name>-<token>.tmp``,
short whatever the name's length) and renamed into place, so a failed job never leaves half a
result. An existing non-empty ``OUTDIR`` is only replaced with ``overwrite=True``, and only when it
is an earlier result, recognised by content: a ``result.json`` of this backend listing exactly
the files present. The earlier result is renamed aside (``....old``) until the new one is in
place, then removed. ``OUTDIR`` given as a link is written at the link's target, so the link stays
a link. A run killed mid-write leaves only those hashed folders; the next run for the same
``OUTDIR`` removes them (or restores the earlier result when the kill fell between the renames).
A mask preview's folder (``write_mask_result``) follows the same rules and counts as an earlier result.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image

from backend import __version__
from backend.methods.base import MeshResult
from backend.polygons import Polygons, fan_triangles, same_triangles
from backend.protocol import PROTOCOL_VERSION, UserError, is_staging_name, name_max, staging_name
from backend.result_format import (
    GLB_FILE,
    MASK_FILE,
    MASK_KIND,
    MAX_RESULT_JSON_BYTES,
    MESH_ARRAYS,
    MESH_FILE,
    POLYGON_ARRAYS,
    PREVIEW_FILE,
    RESULT_FILES,
    RESULT_JSON,
    TEXTURE_FILE,
    MeshCounts,
    ResultDocument,
    camera_problem,
)

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _invalid(what: str) -> UserError:
    return UserError(
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


def validate_camera(camera: Any) -> None:
    """Check ``camera`` against the schema (``result_format.Camera``)."""
    problem = camera_problem(camera)
    if problem:
        raise _invalid(problem)


def validate(result: MeshResult) -> MeshResult:
    """Return ``result`` with canonical dtypes, or raise ``UserError`` if anything is broken."""
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
    faces = np.ascontiguousarray(faces, np.int32)
    uvs = np.ascontiguousarray(uvs, np.float32)
    return MeshResult(
        vertices=np.ascontiguousarray(vertices, np.float32),
        faces=faces,
        uvs=uvs,
        texture=np.ascontiguousarray(texture),
        camera=result.camera,
        info=result.info,
        previews=result.previews,
        polygons=None if result.polygons is None else validate_polygons(result.polygons, faces, uvs),
    )


def validate_polygons(polygons: Polygons, faces: np.ndarray, uvs: np.ndarray) -> Polygons:
    """``polygons`` with canonical dtypes when their fans are exactly ``faces`` and ``uvs`` (the
    contract of ``result_format.POLYGON_ARRAYS``), else ``UserError``."""
    sizes = _check_array("polygon_sizes", polygons.sizes, 1, ())
    corners = _check_array("polygon_vertices", polygons.vertices, 1, ())
    corner_uvs = _check_array("polygon_uvs", polygons.uvs, 2, (2,))
    if not (np.issubdtype(sizes.dtype, np.integer) and np.issubdtype(corners.dtype, np.integer)):
        raise _invalid("polygon sizes and vertices must be integers")
    counted = len(sizes) > 0 and sizes.min() >= 3 and int(sizes.sum()) == len(corners) == len(corner_uvs)
    if not counted:
        raise _invalid(f"{len(sizes)} polygons of {sizes.sum()} corners for {len(corners)} vertices and uvs")
    checked = Polygons(
        np.ascontiguousarray(sizes, np.int32),
        np.ascontiguousarray(corners, np.int32),
        np.ascontiguousarray(corner_uvs, np.float32),
    )
    if not same_triangles(*fan_triangles(checked), faces, uvs):
        raise _invalid("the polygons are not the surface of the faces")
    return checked


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


def _write_files(
    result: MeshResult, folder: Path, metadata: dict[str, Any], mask: np.ndarray | None
) -> list[str]:
    arrays = dict(zip(MESH_ARRAYS, (result.vertices, result.faces, result.uvs), strict=True))
    polygons = result.polygons
    if polygons is not None:
        arrays.update(zip(POLYGON_ARRAYS, (polygons.sizes, polygons.vertices, polygons.uvs), strict=True))
    np.savez_compressed(folder / MESH_FILE, **arrays)
    Image.fromarray(result.texture, "RGB").save(folder / TEXTURE_FILE)
    glb_scene(result).export(folder / GLB_FILE, file_type="glb")
    files = [MESH_FILE, TEXTURE_FILE, GLB_FILE]
    if result.previews:
        Image.fromarray(preview_image(result.previews), "RGB").save(folder / PREVIEW_FILE)
        files.append(PREVIEW_FILE)
    if mask is not None:
        Image.fromarray(np.ascontiguousarray(mask, np.uint8), "L").save(folder / MASK_FILE)
        files.append(MASK_FILE)
    files.append(RESULT_JSON)
    info = dict(result.info)
    document: ResultDocument = {
        "protocol_version": PROTOCOL_VERSION,
        "backend_version": __version__,
        **metadata,
        "camera": result.camera,
        "losses": info.pop("losses", {}),
        "notes": [*metadata.get("notes", []), *info.pop("notes", [])],
        "warnings": info.pop("warnings", []),
        "info": info,
        "mesh": mesh_counts(result),
        "files": files,
    }
    text = json.dumps(_json_ready(document), indent=2, allow_nan=False)
    (folder / RESULT_JSON).write_text(text + "\n", encoding="utf-8")
    return files


def mesh_counts(result: MeshResult) -> MeshCounts:
    """``result.json["mesh"]``; without polygon arrays an import builds the triangles."""
    polygons = result.faces if result.polygons is None else result.polygons.sizes
    return MeshCounts(
        vertices=len(result.vertices),
        faces=len(result.faces),
        texture=list(result.texture.shape),
        polygons=len(polygons),
    )


def _disk_error(exc: OSError, out_dir: Path) -> UserError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(
            "disk_full", f"no space left to write {out_dir}", "free disk space or pick another -o"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return UserError(
            "not_writable",
            f"cannot write {out_dir}: {exc.strerror}",
            "pick an output folder you can write to",
        )
    return UserError("write_failed", f"cannot write {out_dir}: {exc}", "check the output folder")


NOT_OURS_HINT = "pick another folder; --overwrite only replaces an earlier result"


def _bad_output(message: str, hint: str = "pick another -o") -> UserError:
    return UserError("bad_output", message, hint)


def _names(names: Iterable[str]) -> str:
    """Up to three names for a one-line message (``repr`` keeps a newline in a name out of it)."""
    ordered = sorted(names)
    more = f" and {len(ordered) - 3} more" if len(ordered) > 3 else ""
    return ", ".join(map(repr, ordered[:3])) + more


def _first_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (a link counts, even a dangling one)."""
    while not os.path.lexists(path):
        path = path.parent
    return path


def _is_plain_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()


def _listed_files(path: Path) -> set[str] | None:
    """The ``files`` of ``path`` when it is a result.json this backend wrote, else ``None``."""
    try:
        if not _is_plain_file(path) or path.stat().st_size > MAX_RESULT_JSON_BYTES:
            return None
        document = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(document, dict):
        return None
    version, files = document.get("protocol_version"), document.get("files")
    ours = (
        isinstance(version, int)
        and not isinstance(version, bool)
        and (isinstance(document.get("method"), str) or document.get("kind") == MASK_KIND)
        and isinstance(files, list)
        and all(isinstance(name, str) for name in files)
    )
    return set(files) if ours else None


def _why_not_a_result(folder: Path) -> str:
    """Why ``folder`` is not an earlier result ("" when it is one). Judged by content, not names:
    an artist's own ``result.json`` or ``texture.png`` must never pass for ours."""
    present = set(os.listdir(folder))
    odd = {name for name in present if name not in RESULT_FILES or not _is_plain_file(folder / name)}
    if odd:
        return f"holds files that are not a result ({_names(odd)})"
    listed = _listed_files(folder / RESULT_JSON)
    if listed is None:
        what = "its result.json is not one" if RESULT_JSON in present else "it has no result.json"
        return f"is not an earlier result: {what} this backend wrote (it holds {_names(present)})"
    if listed - present:
        return f"is not an earlier result: {_names(listed - present)}, listed in its result.json, is missing"
    if present - listed:
        return f"is not an earlier result: its result.json does not list {_names(present - listed)}"
    return ""


def _holds_only_result_files(folder: Path) -> bool:
    if not folder.is_dir() or folder.is_symlink():
        return False
    try:
        names = os.listdir(folder)
    except OSError:
        return False
    return all(name in RESULT_FILES and _is_plain_file(folder / name) for name in names)


def _tidy(target: Path) -> None:
    """Clear what a killed run of ours left beside ``target``, and only that: folders with this
    output's hashed staging names holding nothing but result files. A retired earlier result comes
    back when ``target`` is missing (a kill between the two renames of ``_swap``)."""
    try:
        entries = sorted(os.listdir(target.parent))
    except OSError:
        return  # nothing there to tidy; an unusable location is reported by the checks that follow
    for name in entries:
        path = target.parent / name
        old = is_staging_name(name, target.name, "old")
        if not (old or is_staging_name(name, target.name, "tmp")) or not _holds_only_result_files(path):
            continue
        if old and not os.path.lexists(target) and not _why_not_a_result(path):
            with contextlib.suppress(OSError):  # left in place, never deleted, if it cannot go back
                path.rename(target)
            continue
        shutil.rmtree(path, ignore_errors=True)


def _check_name_length(out_dir: Path) -> None:
    """Refuse a folder name the file system cannot hold, before any other look at the path (a
    lookup of such a name fails with "File name too long")."""
    existing = _first_existing(out_dir)
    limit = name_max(existing)
    for part in out_dir.relative_to(existing).parts:
        size = len(os.fsencode(part))
        if size > limit:
            raise _bad_output(
                f"output folder name {part[:24]!r}... is {size} bytes; this file system allows {limit}",
                "pick a shorter name for -o",
            )


def _check_path(out_dir: Path, target: Path) -> None:
    """Refuse up front an output no folder can be written at: a link to nothing or to itself, an
    existing file, a path through a file (or through a link to nothing)."""
    if out_dir.is_symlink() and not out_dir.exists():
        raise _bad_output(
            f"output folder {out_dir} is a link to {os.readlink(out_dir)}, which is missing or loops",
            "point the link at a folder, or pick another -o",
        )
    if target.exists() and not target.is_dir():
        raise UserError(
            "output_exists", f"{out_dir} exists and is not a folder", "pick another output folder"
        )
    existing = _first_existing(out_dir)
    if existing != out_dir and not existing.is_dir():
        raise _bad_output(f"cannot create output folder {out_dir}: {existing} is not a folder")


def check_output_dir(out_dir: Path, overwrite: bool) -> Path:
    """Refuse an output the result may not or cannot go to, before any work (jobs call this before
    they start, so a long optimisation never ends in a refusal); returns the folder the result goes
    to (a link's target). Also clears debris an earlier killed run left for this output."""
    out_dir = Path(out_dir).absolute()
    _check_name_length(out_dir)
    target = Path(os.path.realpath(out_dir))
    _tidy(target)
    _check_path(out_dir, target)
    try:
        existing = target.is_dir() and any(target.iterdir())
        reason = _why_not_a_result(target) if existing and overwrite else ""
    except OSError as exc:
        raise _disk_error(exc, out_dir) from None
    if existing and not overwrite:
        raise UserError(
            "output_exists",
            f"output folder {out_dir} is not empty",
            "pick another folder or pass --overwrite",
        )
    if reason:  # --overwrite replaces an earlier result, never a folder of the artist's own files
        raise UserError(
            "output_exists", f"output folder {out_dir} {reason}; nothing was changed", NOT_OURS_HINT
        )
    _probe_writable(target)
    return target


def _probe_writable(target: Path) -> None:
    """Create and remove a folder where the result's staging folder will go, so a read-only or
    otherwise unusable output location fails before the optimisation, not after it."""
    probe = _first_existing(target.parent) / staging_name(target.name, "tmp")
    try:
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise _disk_error(exc, target) from None


def _swap(staging: Path, target: Path, retired: Path) -> None:
    """Rename the complete new result into place. An earlier result is renamed aside first and
    renamed back if the new one cannot take its place, so it is only ever removed after that."""
    if target.exists():
        target.rename(retired)
    try:
        staging.rename(target)
    except OSError:
        if retired.exists():
            retired.rename(target)
        raise


def write_result(
    result: MeshResult,
    out_dir: str | Path,
    metadata: dict[str, Any],
    overwrite: bool = False,
    mask: np.ndarray | None = None,
) -> dict[str, str]:
    """Validate and write ``result``; returns file name -> absolute path (through ``out_dir`` as given).

    ``metadata`` goes into ``result.json`` (method, weights, preset, seed, device, timings, ...);
    ``mask`` (H, W) uint8, the input's object mask, into ``mask.png``.
    """
    result = validate(result)
    return _write_folder(out_dir, overwrite, lambda folder: _write_files(result, folder, metadata, mask))


def write_mask_result(
    mask: np.ndarray, out_dir: str | Path, metadata: dict[str, Any], overwrite: bool = False
) -> dict[str, str]:
    """Write a mask preview (``mask.png`` and its ``result_format.MaskDocument``) with the same
    all-or-nothing rules as a reconstruction; ``metadata``: the document's fields but versions,
    kind and files."""

    def write(folder: Path) -> list[str]:
        Image.fromarray(np.ascontiguousarray(mask, np.uint8), "L").save(folder / MASK_FILE)
        files = [MASK_FILE, RESULT_JSON]
        document: dict[str, Any] = {
            "protocol_version": PROTOCOL_VERSION,
            "backend_version": __version__,
            "kind": MASK_KIND,
            **metadata,
            "files": files,
        }
        text = json.dumps(_json_ready(document), indent=2, allow_nan=False)
        (folder / RESULT_JSON).write_text(text + "\n", encoding="utf-8")
        return files

    return _write_folder(out_dir, overwrite, write)


def _write_folder(out_dir: str | Path, overwrite: bool, write: Callable[[Path], list[str]]) -> dict[str, str]:
    """Run ``write`` (which fills a folder and returns its file names) in a staging folder and
    rename it into place at ``out_dir``; file name -> absolute path (through ``out_dir`` as given)."""
    out_dir = Path(out_dir).absolute()
    target = check_output_dir(out_dir, overwrite)
    staging = target.with_name(staging_name(target.name, "tmp"))
    retired = target.with_name(staging_name(target.name, "old"))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging.mkdir()
        files = write(staging)
        _swap(staging, target, retired)
    except OSError as exc:
        raise _disk_error(exc, out_dir) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(retired, ignore_errors=True)
    return {name: str(out_dir / name) for name in files}
