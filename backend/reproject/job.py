"""``run_reproject``: a result's photo baked onto an edited mesh, written as a new result.

Everything that can be wrong with the request (the result folder, its camera, its photo, the mesh
file, the texture) is checked before the bake, and the output is written with the same atomic
rules as ``reconstruct`` (``results.write_result``), so a failed job changes nothing on disk. The
new ``result.json`` has the source result's schema and provenance (method, weights, preset, input,
camera) and says under ``info.reprojection`` what was re-projected onto what.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from backend.devices import resolve_device
from backend.inputs import MIN_SIDE, InputImage, crop_box, load_input, photo_side
from backend.jobs import JobOutcome, ProgressReporter
from backend.methods.base import JobCancelled, MeshResult
from backend.protocol import MASK_SOURCES, REPROJECT_SIZES, ReprojectRequest, ReprojectSummary, UserError
from backend.render import render_mesh
from backend.render.bake import Bake, bake_photo
from backend.reproject.camera import renderer_camera
from backend.reproject.meshfile import EditedMesh, load_mesh
from backend.reproject.texture import Reprojection, compose, is_mirror_symmetric, mirror_x
from backend.reproject.unwrap import face_charts, smallest_size
from backend.result_format import (
    MASK_FILE,
    MAX_RESULT_JSON_BYTES,
    READABLE_RESULT_VERSIONS,
    RESULT_JSON,
    TEXTURE_FILE,
    ResultDocument,
    camera_problem,
)
from backend.results import check_output_dir, write_result

DEFAULT_SIZE = 1024
"""Texture side when neither the request nor a previous texture says."""
PREVIEW_SIDE = 256
RESULT_HINT = "pass a folder that `reconstruct` wrote (its -o), with result.json"


@dataclass
class Source:
    """The result re-projected from: its folder, ``result.json`` and the photo it records."""

    folder: Path
    document: ResultDocument
    photo: Path

    @property
    def camera(self) -> dict[str, Any]:
        return self.document["camera"]


def read_source(folder: Path) -> Source:
    """The result in ``folder``, refused with one line when it is not one this backend can re-project."""
    path = folder / RESULT_JSON
    if not path.is_file():
        raise UserError("not_a_result", f"{folder} holds no result.json of a reconstruction", RESULT_HINT)
    try:
        if path.stat().st_size > MAX_RESULT_JSON_BYTES:
            raise ValueError("too large")
        document = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        raise UserError("not_a_result", f"{path} is not a readable result.json", RESULT_HINT) from None
    if not isinstance(document, dict) or not isinstance(document.get("method"), str):
        raise UserError("not_a_result", f"{path} is not the result.json of a reconstruction", RESULT_HINT)
    version = document.get("protocol_version")
    if version not in READABLE_RESULT_VERSIONS or isinstance(version, bool):
        raise UserError(
            "result_version",
            f"{folder} was written by protocol {version!r}; this backend reads protocol "
            f"{', '.join(map(str, READABLE_RESULT_VERSIONS))}",
            "reconstruct the photo again with this version of the add-on",
        )
    problem = camera_problem(document.get("camera"))
    if problem:
        raise UserError(
            "no_camera",
            f"{folder} has no usable camera ({problem})",
            "re-projection needs the photo's camera: reconstruct again with this version",
        )
    photo = (document.get("input") or {}).get("image") if isinstance(document.get("input"), dict) else None
    if not isinstance(photo, str) or not Path(photo).is_file():
        raise UserError(
            "photo_missing",
            f"the photo of {folder} is missing: {photo}",
            "put the photo back where it was reconstructed from (result.json input.image)",
        )
    return Source(folder, document, Path(photo))


def load_photo(source: Source) -> InputImage:
    """The photo with the object mask the reconstruction used (``mask.png``, else the same source)."""
    recorded = source.document.get("input", {})
    resolved = recorded.get("mask_resolved")
    mask_file = source.folder / MASK_FILE
    if resolved == "none":
        return load_input(source.photo, "none")
    if mask_file.is_file():
        return load_input(source.photo, "file", str(mask_file))
    if resolved in MASK_SOURCES and resolved != "file":
        return load_input(source.photo, resolved, box=recorded.get("box"))
    raise UserError(
        "no_mask", f"{source.folder} has no mask.png and its mask cannot be made again", RESULT_HINT
    )


def previous_texture(
    request: ReprojectRequest, mesh: EditedMesh, source: Source
) -> tuple[np.ndarray | None, str]:
    """The texture the mesh's UVs address now and where it came from: the request's file, the mesh
    file's own, the result's ``texture.png``; none for a mesh without UVs."""
    if mesh.uvs is None:
        return None, "none"
    if request.texture:
        return _read_texture(Path(request.texture)), "request"
    if mesh.texture is not None:
        return mesh.texture, "mesh"
    result_texture = source.folder / TEXTURE_FILE
    return (_read_texture(result_texture), "result") if result_texture.is_file() else (None, "none")


def _read_texture(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"), np.uint8)
    except (OSError, ValueError) as exc:
        raise UserError(
            "bad_texture", f"cannot read texture {path}: {str(exc).splitlines()[0][:120]}",
            "pass a PNG or JPEG texture, or none to keep the result's",
        ) from None  # fmt: skip


def texture_side(request: ReprojectRequest, mesh: EditedMesh, previous: np.ndarray | None) -> int:
    """The new texture's side: asked for, else the previous texture's, else ``DEFAULT_SIZE``; a fresh
    unwrap needs room for its cells."""
    low, high = REPROJECT_SIZES
    kept = DEFAULT_SIZE if previous is None else min(max(max(previous.shape[:2]), low), high)
    size = request.size or kept
    if mesh.uvs is not None:
        return size
    needed = smallest_size(len(mesh.faces))
    if needed > high or (request.size and request.size < needed):
        raise UserError(
            "too_many_faces",
            f"{len(mesh.faces)} faces without UVs need a texture of {needed} px for one chart each",
            "give the mesh a UV map (e.g. Smart UV Project), or ask for a larger --size",
        )
    return max(size, needed)


def run_reproject(
    request: ReprojectRequest, emit: Callable[[dict[str, Any]], None], cancel: threading.Event | None = None
) -> JobOutcome:
    """Re-project end to end; raises a user error, ``JobCancelled`` or a bug."""
    cancel = cancel or threading.Event()
    start = time.perf_counter()
    request.validate()
    device = resolve_device(request.device)
    source = read_source(Path(request.result_dir))
    check_output_dir(Path(request.output_dir), request.overwrite)
    reporter = ProgressReporter(request.id, emit, cancel, previews=False)
    reporter("prepare", 0, 2)
    mesh = load_mesh(request.mesh)
    previous, previous_from = previous_texture(request, mesh, source)
    size = texture_side(request, mesh, previous)
    reporter("prepare", 1, 2)
    image = load_photo(source)
    reporter("prepare", 2, 2)
    timings = {"load": time.perf_counter() - start}

    mark = time.perf_counter()
    uvs = mesh.uvs if mesh.uvs is not None else face_charts(len(mesh.faces), size)
    vertices = torch.from_numpy(mesh.vertices).to(device)
    faces = torch.from_numpy(mesh.faces).to(device)
    corner_uvs = torch.from_numpy(uvs).to(device)
    camera = renderer_camera(source.camera, device)
    side = photo_side(image, source.camera["crop_box"][2], MIN_SIDE)
    crop = crop_box(image, source.camera["crop_box"], side)
    photo = torch.from_numpy(crop.rgb).to(device).permute(2, 0, 1)
    mask = torch.from_numpy(crop.mask).to(device)
    with torch.no_grad():
        reporter("bake", 0, 2)
        bake = bake_photo(vertices, faces, corner_uvs, camera, photo, mask, size)
        if not bool((bake.weight > 0).any()):
            raise UserError(
                "not_seen",
                f"the photo's camera sees none of {Path(request.mesh).name}",
                "keep the mesh where the reconstruction was (its object space, at the same scale)",
            )
        symmetric = previous is None and is_mirror_symmetric(vertices, faces)
        reporter("bake", 1, 2)
        mirrored: Bake | None = None
        if symmetric:
            mirrored = bake_photo(mirror_x(vertices), faces, corner_uvs, camera, photo, mask, size)
        before = None if previous is None else _texture_tensor(previous, size, device)
        reprojection = compose(bake, before, mirrored)
        reporter("bake", 2, 2)
        timings["bake"] = time.perf_counter() - mark
        reporter("export", 0, 1)
        shown = previews(vertices, faces, corner_uvs, camera, reprojection.texture, image, source)
    if cancel.is_set():
        raise JobCancelled()
    result = MeshResult(
        vertices=mesh.vertices,
        faces=mesh.faces.astype(np.int32),
        uvs=uvs,
        texture=_uint8(reprojection.texture),
        camera=source.camera,
        info={"reprojection": _facts(request, mesh, previous_from, size, side, symmetric, reprojection)},
        previews=shown,
    )
    timings["total"] = time.perf_counter() - start
    metadata = _metadata(source, device, timings)
    files = write_result(
        result, request.output_dir, metadata, overwrite=request.overwrite, mask=image.mask_at_original_size()
    )  # no progress call after this: a cancel arriving now must not disown a written result
    summary = ReprojectSummary(
        kind="reproject",
        source=str(source.folder.absolute()),
        seconds=round(time.perf_counter() - start, 2),
        vertices=len(mesh.vertices),
        faces=len(mesh.faces),
        seen_fraction=round(reprojection.seen, 4),
        output_dir=str(Path(request.output_dir).absolute()),
    )
    return JobOutcome(files, summary)


def previews(
    vertices: torch.Tensor, faces: torch.Tensor, uvs: torch.Tensor, camera: Any, texture: torch.Tensor,
    image: InputImage, source: Source,
) -> dict[str, np.ndarray]:
    """The photo crop, the re-projected mesh seen through its camera (on white), and the texture."""
    side = PREVIEW_SIDE
    photo = torch.from_numpy(crop_box(image, source.camera["crop_box"], side).rgb).permute(2, 0, 1)
    seen = render_mesh(vertices[None], faces, camera, side, texture=texture[None], uvs=uvs, background=1.0,
                       antialiased=False).rgb[0].permute(2, 0, 1)  # fmt: skip
    flat = torch.nn.functional.interpolate(texture[None], size=(side, side), mode="area")[0]
    return {"input": _uint8(photo), "reprojected": _uint8(seen), "texture": _uint8(flat)}


def _texture_tensor(texture: np.ndarray, size: int, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, size, size) float in [0, 1]; resampling keeps what each UV reads."""
    values = torch.from_numpy(texture).to(device).permute(2, 0, 1).float() / 255
    if values.shape[-2:] == (size, size):
        return values
    return torch.nn.functional.interpolate(values[None], size=(size, size), mode="bilinear", antialias=True,
                                           align_corners=False)[0].clamp(0, 1)  # fmt: skip


def _uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8."""
    return (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _facts(
    request: ReprojectRequest, mesh: EditedMesh, previous_from: str, size: int, photo_side: int,
    symmetric: bool, reprojection: Reprojection,
) -> dict[str, Any]:
    """What ``result.json`` records under ``info.reprojection``."""
    return {
        "source": str(Path(request.result_dir).absolute()),
        "mesh": str(Path(request.mesh).absolute()),
        "uvs": "mesh" if mesh.uvs is not None else "face_charts",
        "previous_texture": previous_from,
        "mirror_symmetric": symmetric,
        "size": size,
        "photo_pixels": photo_side,
        "seen_fraction": round(reprojection.seen, 4),
        "mirrored_fraction": round(reprojection.mirrored, 4),
        "kept_fraction": round(reprojection.kept, 4),
        "filled_fraction": round(reprojection.filled, 4),
    }


def _metadata(source: Source, device: torch.device, timings: dict[str, float]) -> dict[str, Any]:
    """The source result's provenance (what made the photo's camera), with this job's device and times."""
    document = source.document
    kept = {key: document[key] for key in ("method", "weights", "preset", "options", "seed", "input")
            if key in document}  # fmt: skip
    notes = [note for note in document.get("notes", []) if isinstance(note, str)]
    return {**kept, "device": str(device), "notes": notes, "timings": timings}
