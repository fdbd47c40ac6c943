"""The reconstructions of this Blender session, newest first: the panel's Results list and what
Reconstruct Again repeats.

Module state, like the backend client (``session``): it lives as long as the add-on is enabled, is
never saved with the .blend and is emptied when another file is loaded. An entry keeps the job
request that made it (Reconstruct Again sends it again with another seed or preset) and finds its
object through the result folder the importer records on it (``rfi_result``), so a renamed object
is still found and a deleted one shows as gone. Thumbnails live in one preview collection, made from
pixels (the result files may be discarded right after import) and freed on unregister.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import bpy.utils.previews
import numpy as np

from . import catalogue, job_request
from .client import UserError, protocol
from .importer import PROPERTY_PREFIX, result_format

MAX_ENTRIES = 8
"""Older results drop off the list (their objects stay in the scene)."""
THUMBNAIL_SIDE = 96
RESULT_PROPERTY = PROPERTY_PREFIX + "result"


@dataclass
class Entry:
    """One reconstruction: its request and import options as sent, its object and wall time."""

    request: protocol.JobRequest
    options: job_request.ImportOptions
    object_name: str
    seconds: float

    @property
    def result(self) -> str:
        """The result folder, as the object records it: the entry's identity."""
        return str(Path(self.request.output_dir).absolute())


entries: list[Entry] = []
_previews: Any = None


def add(obj: bpy.types.Object, request: protocol.JobRequest, options: job_request.ImportOptions) -> Entry:
    """Record a just imported reconstruction (its result files still there) at the top of the list."""
    timings = obj.get(PROPERTY_PREFIX + "timings")
    seconds = float(timings.get("total_s", 0.0)) if timings is not None else 0.0
    entry = Entry(request, options, obj.name, seconds)
    if _previews is not None:
        thumbnail = _previews.new(entry.result) if entry.result not in _previews else _previews[entry.result]
        thumbnail.image_size, pixels = thumbnail_pixels(Path(entry.result))
        thumbnail.image_pixels_float.foreach_set(pixels)
    entries[:] = [entry, *(other for other in entries if other.result != entry.result)]  # overwritten: once
    for dropped in entries[MAX_ENTRIES:]:
        _forget_thumbnail(dropped)
    del entries[MAX_ENTRIES:]
    return entry


def thumbnail_pixels(result: Path) -> tuple[tuple[int, int], np.ndarray]:
    """(width, height) and RGBA floats, bottom row first: the first picture of the result's
    ``preview.png`` (previews are square pictures side by side), else its texture, at most
    ``THUMBNAIL_SIDE`` a side; a grey square when neither file is readable."""
    for name in (result_format.PREVIEW_FILE, result_format.TEXTURE_FILE):
        path = result / name
        if not path.is_file():
            continue
        try:
            image = bpy.data.images.load(str(path), check_existing=False)
        except RuntimeError:  # not an image Blender can read
            continue
        try:
            width, height = image.size
            pixels = np.empty(width * height * 4, np.float32)
            image.pixels.foreach_get(pixels)
        finally:
            bpy.data.images.remove(image)
        picture = pixels.reshape(height, width, 4)[:, : min(width, height)]
        step = max(1, -(-max(picture.shape[:2]) // THUMBNAIL_SIDE))
        picture = np.ascontiguousarray(picture[::step, ::step])
        return (picture.shape[1], picture.shape[0]), picture.ravel()
    return (1, 1), np.array([0.5, 0.5, 0.5, 1.0], np.float32)


def icon_id(entry: Entry) -> int:
    """The thumbnail's icon (0 when there is none)."""
    return _previews[entry.result].icon_id if _previews is not None and entry.result in _previews else 0


def listed(result: str) -> Entry | None:
    """The entry of result folder ``result``, or None once it has left the list."""
    return next((entry for entry in entries if entry.result == result), None)


def find(result: str) -> Entry:
    """The entry of result folder ``result``."""
    entry = listed(result)
    if entry is None:
        raise UserError("no_entry", "that result is no longer in this session's list", "reconstruct it anew")
    return entry


def entry_object(entry: Entry) -> bpy.types.Object | None:
    """The entry's object, renamed or not; None once deleted."""
    obj = bpy.data.objects.get(entry.object_name)
    if obj is not None and obj.get(RESULT_PROPERTY) == entry.result:
        return obj
    for obj in bpy.data.objects:
        if obj.get(RESULT_PROPERTY) == entry.result:
            entry.object_name = obj.name
            return obj
    return None


def next_seed(entry: Entry) -> int:
    """One above every seed this session used on the entry's photo with its method."""
    used = [
        other.request.seed
        for other in entries
        if other.request.image == entry.request.image and other.request.method == entry.request.method
    ]
    return max(used, default=entry.request.seed) + 1


def again_request(entry: Entry, preset: str, seed: int, turn: bool = False) -> protocol.JobRequest:
    """The entry's job with another preset or seed, into a new result folder; with ``turn`` (a method
    that can, ``catalogue.turnable``), started from the other side of the object."""
    inputs = (entry.request.image, entry.request.mask_path)
    missing = [path for path in inputs if path and not Path(path).is_file()]
    if missing:
        raise UserError(
            "bad_image",
            f"the photo or mask of '{entry.options.name}' is gone: {missing[0]}",
            "reconstruct it from the panel",
        )
    return dataclasses.replace(
        entry.request,
        preset=preset,
        seed=seed,
        overrides=(
            catalogue.turned(entry.request.method, entry.request.preset, entry.request.overrides)
            if turn else dict(entry.request.overrides)
        ),
        output_dir=str(job_request.output_dir(entry.options.name)),
        overwrite=False,
    )


def _forget_thumbnail(entry: Entry) -> None:
    if _previews is not None and entry.result in _previews:
        del _previews[entry.result]


def clear() -> None:
    """Empty the list (another file was loaded: its objects are not this list's)."""
    entries.clear()
    if _previews is not None:
        _previews.clear()


@bpy.app.handlers.persistent
def _on_load_post(*_args: Any) -> None:
    clear()


def register() -> None:
    global _previews
    _previews = bpy.utils.previews.new()
    bpy.app.handlers.load_post.append(_on_load_post)


def unregister() -> None:
    global _previews
    if _on_load_post in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_on_load_post)
    entries.clear()
    if _previews is not None:
        bpy.utils.previews.remove(_previews)
        _previews = None
