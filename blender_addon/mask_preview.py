"""Preview Mask: the object mask a reconstruction would use, before the long run, as an image to
check, paint over or replace.

The backend's ``mask`` job runs the very mask code a reconstruction runs, for the panel's photo and
mask settings. Its ``mask.png`` comes back into an image datablock named "<photo> mask" (an existing
one of that name gets the new pixels; no image is ever removed), packed so it is saved with the
.blend, and the panel switches to that image as its Mask Image: what the artist paints on it is what
the next reconstruction uses. The Image Editor that showed the photo shows the mask; the mask
remembers its photo (``job_request.PHOTO_PROPERTY``), so Image Editor as image source still means the photo.
Blender's undo restores the panel's settings; an image's pixels changed in place are not undone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import bpy
import numpy as np

from . import job_request
from .client import UserError, protocol
from .importer import result_format

MASK_SUFFIX = " mask"


def mask_name(photo_name: str) -> str:
    return photo_name + MASK_SUFFIX


def build_request(context: bpy.types.Context) -> tuple[protocol.MaskRequest, str]:
    """The mask job for the panel's photo and mask settings, and the photo's name."""
    settings = context.scene.rfi_settings
    photo, name = job_request.source_image(context, settings)
    request = protocol.MaskRequest(
        image=str(photo),
        output_dir=str(job_request.output_dir(mask_name(name))),
        mask=settings.mask_source,
        mask_path=job_request.mask_path(settings),
    )
    return request, name


def photo_image(context: bpy.types.Context) -> bpy.types.Image | None:
    """The photo as an image datablock, when the panel's source is one (not a file on disk)."""
    settings = context.scene.rfi_settings
    if settings.image_source == "EDITOR":
        return job_request.editor_image(context)
    return job_request.object_image(context) if settings.image_source == "OBJECT" else None


def read_mask(folder: Path) -> tuple[np.ndarray, tuple[int, int]]:
    """``mask.png`` of a mask job as Blender RGBA pixels (bottom row first) and its (W, H)."""
    path = folder / result_format.MASK_FILE
    if not path.is_file():
        raise UserError("bad_result", f"{path} is missing", "the backend wrote no mask; see its log")
    loaded = bpy.data.images.load(str(path), check_existing=False)
    try:
        width, height = loaded.size
        pixels = np.empty(width * height * loaded.channels, np.float32)
        loaded.pixels.foreach_get(pixels)
        grey = pixels.reshape(-1, loaded.channels)[:, 0]
    finally:
        bpy.data.images.remove(loaded)
    rgba = np.ones((len(grey), 4), np.float32)
    rgba[:, :3] = (grey >= 0.5)[:, None]
    return rgba.ravel(), (width, height)


def store_mask(name: str, pixels: np.ndarray, size: tuple[int, int]) -> bpy.types.Image:
    """The image ``name`` holding ``pixels``: an existing one gets them (scaled to fit first),
    else a new one; packed, so a painted mask is saved with the .blend."""
    image = bpy.data.images.get(name)
    if image is None or image.library is not None:
        image = bpy.data.images.new(name, *size, alpha=False)
    elif tuple(image.size) != size:
        image.scale(*size)
    image.colorspace_settings.name = "Non-Color"
    image.pixels.foreach_set(pixels)
    image.update()
    image.pack()
    return image


def show_in_editor(
    context: bpy.types.Context, photo: bpy.types.Image | None, path: str, mask: bpy.types.Image
) -> bool:
    """Show ``mask`` in the Image Editors that show the photo (by datablock, else by file path)."""
    shown = False
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            space = area.spaces.active if area.type == "IMAGE_EDITOR" else None
            image = space.image if space is not None else None
            if image is None or image == mask:
                continue
            if image == photo or (image.filepath and Path(bpy.path.abspath(image.filepath)) == Path(path)):
                space.image = mask
                area.tag_redraw()
                shown = True
    return shown


def apply_result(
    context: bpy.types.Context, folder: Path, name: str, photo: bpy.types.Image | None, path: str
) -> bpy.types.Image:
    """Load the job's mask as "<name> mask" and make it the panel's Mask Image. Mask source ``none``
    stays: its all-white mask would be refused as a file mask until something is painted out."""
    pixels, size = read_mask(folder)
    image = store_mask(mask_name(name), pixels, size)
    if photo is not None and photo != image:
        image[job_request.PHOTO_PROPERTY] = photo
    settings = context.scene.rfi_settings
    if settings.mask_source != "none":
        settings.mask_source = "file"
    settings.mask_image = image
    show_in_editor(context, photo, path, image)
    return image


def discard(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
