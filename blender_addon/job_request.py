"""From Blender's state (panel settings, images, objects) to a backend job request.

The backend reads files, so an image that exists only inside Blender (packed, generated or
edited) is first written to the add-on's user folder; images on disk are passed by path.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from . import catalogue, session
from .client import UserError, protocol

PHOTO_PROPERTY = "rfi_photo"
"""On a mask image Preview Mask made: the photo image it is the mask of."""


@dataclass
class ImportOptions:
    """What the importer needs besides the result folder."""

    name: str
    photo: str
    shade_smooth: bool = True
    texture_size: int = 0
    aligned_camera: bool = False
    mirror: bool = False


def image_file(image: bpy.types.Image, folder: Path | None = None) -> Path:
    """A file holding ``image``'s pixels: its own file when it has one, else a copy written to
    ``folder`` (default: the add-on's inputs folder)."""
    if image.source == "FILE" and not image.packed_file and not image.is_dirty:
        path = Path(bpy.path.abspath(image.filepath, library=image.library))
        if path.is_file():
            return path
    folder = folder or session.user_dir("inputs")
    if image.packed_file is not None and not image.is_dirty:
        suffix = Path(image.filepath).suffix.lower() or ".png"
        path = folder / f"{safe_name(image.name)}-{time.time_ns()}{suffix}"
        path.write_bytes(image.packed_file.data)
        return path
    path = folder / f"{safe_name(image.name)}-{time.time_ns()}.png"
    if image.type in ("RENDER_RESULT", "COMPOSITING"):
        image.save_render(str(path))
    else:
        write_pixels(image, path)
    if not path.is_file():
        raise UserError(
            "bad_image",
            f"image '{image.name}' has no pixels to reconstruct from",
            "open or render an image first",
        )
    return path


def write_pixels(image: bpy.types.Image, path: Path) -> None:
    """Save an image that has no file (generated or painted) through a temporary copy of its pixels;
    ``Image.copy`` would regenerate a generated image and lose the painting."""
    width, height = image.size
    if width == 0 or height == 0:
        return
    pixels = np.empty(width * height * image.channels, np.float32)
    image.pixels.foreach_get(pixels)
    values = pixels.reshape(-1, image.channels)
    rgba = np.ones((len(values), 4), np.float32)
    rgba[:, :3] = values[:, :3] if image.channels >= 3 else values[:, :1]
    if image.channels in (2, 4):
        rgba[:, 3] = values[:, -1]
    temporary = bpy.data.images.new("rfi export", width, height, alpha=True, float_buffer=image.is_float)
    try:
        temporary.pixels.foreach_set(rgba.ravel())
        temporary.filepath_raw = str(path)
        temporary.file_format = "PNG"
        temporary.save()
    finally:
        bpy.data.images.remove(temporary)


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "image"


def editor_image(context: bpy.types.Context) -> bpy.types.Image | None:
    """The Image Editor's photo: this editor's image when run from one, else any open one in the
    window; for a mask Preview Mask made (shown there to be painted), the photo it is the mask of."""
    space = context.space_data
    image = None
    if space is not None and space.type == "IMAGE_EDITOR" and space.image is not None:
        image = space.image
    screen = context.window.screen if context.window else None
    for area in screen.areas if screen and image is None else ():
        if area.type == "IMAGE_EDITOR" and area.spaces.active.image is not None:
            image = area.spaces.active.image
            break
    photo = image.get(PHOTO_PROPERTY) if image is not None else None
    return photo if isinstance(photo, bpy.types.Image) else image


def object_image(context: bpy.types.Context) -> bpy.types.Image | None:
    """The image of the active image empty (reference and background images are image empties)."""
    obj = context.active_object
    if obj is not None and obj.type == "EMPTY" and obj.empty_display_type == "IMAGE" and obj.data is not None:
        return obj.data
    return None


def source_image(context: bpy.types.Context, settings: Any, filepath: str = "") -> tuple[Path, str]:
    """The photo to reconstruct and the name for the new object, per the panel's image source."""
    if filepath or settings.image_source == "FILE":
        path = Path(bpy.path.abspath(filepath or settings.filepath))
        if not path.is_file():
            raise UserError("bad_image", f"image file not found: {path}", "choose an existing image file")
        return path, path.stem
    image = editor_image(context) if settings.image_source == "EDITOR" else object_image(context)
    if image is None:
        where = "an Image Editor" if settings.image_source == "EDITOR" else "the active object"
        raise UserError(
            "no_image", f"no image in {where}", "open a photo there, or switch the image source to File"
        )
    return image_file(image), Path(image.name).stem or image.name


def parse_overrides(text: str, method: str) -> dict[str, str]:
    """The panel's ``key=value`` pairs separated by spaces, parsed as the protocol defines them and
    checked against the options ``method`` declares, so a typo fails before a job is sent."""
    try:
        overrides = protocol.parse_overrides(shlex.split(text))
    except protocol.ProtocolError as exc:
        raise UserError(exc.code, str(exc), "e.g. num_stages=1 invert_steps=100") from None
    check_option_names(method, overrides)
    return overrides


def check_option_names(method: str, overrides: dict[str, Any]) -> None:
    """Refuse option names ``method`` does not declare, with the ones it does in the hint."""
    unknown = catalogue.unknown_options(method, overrides) if method in catalogue.METHODS else []
    if unknown:
        raise UserError(
            "bad_option",
            f"{method} has no option(s) {', '.join(unknown)}",
            f"known options: {', '.join(sorted(catalogue.option_names(method)))}",
        )


def output_dir(name: str) -> Path:
    """A new, not yet existing result folder (the backend never overwrites one)."""
    return (
        session.user_dir("results")
        / f"{time.strftime('%Y%m%d-%H%M%S')}-{safe_name(name)}-{time.time_ns() % 10**6}"
    )


def mask_path(settings: Any) -> str | None:
    """The file of the panel's Mask Image for mask source ``file`` (written out when it has none)."""
    if settings.mask_source != "file":
        return None
    if settings.mask_image is None:
        raise UserError(
            "no_mask",
            "mask source is 'Mask Image' but no mask image is chosen",
            "pick a mask image in the panel, press Preview Mask, or use another mask source",
        )
    return str(image_file(settings.mask_image))


def build_request(
    context: bpy.types.Context, filepath: str = ""
) -> tuple[protocol.JobRequest, ImportOptions]:
    """The job and import options for the scene's current panel settings."""
    settings = context.scene.rfi_settings
    photo, name = source_image(context, settings, filepath)
    weights = None if settings.weights in ("", "DEFAULT") else settings.weights
    request = protocol.JobRequest(
        image=str(photo),
        output_dir=str(output_dir(name)),
        method=settings.method,
        weights=weights,
        preset=settings.preset,
        device=session.backend_settings().device,
        seed=settings.seed,
        mask=settings.mask_source,
        mask_path=mask_path(settings),
        overrides=catalogue.with_mesh_options(
            parse_overrides(settings.overrides, settings.method),
            faces=settings.faces,
            quads=settings.quads,
            scale=settings.scale,
            size_m=settings.size_m if settings.scale == "metres" else None,
        ),
    )
    options = ImportOptions(
        name=name,
        photo=str(photo),
        shade_smooth=settings.shade_smooth,
        texture_size=int(settings.texture_size),
        aligned_camera=settings.aligned_camera,
        mirror=settings.mirror,
    )
    return request, options
