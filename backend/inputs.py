"""Image loading, object masks and the square object crop every method starts from.

Pipeline: ``load_input(path, mask=...)`` -> ``InputImage`` (original photo as float RGB plus a
boolean object mask) -> ``crop_to_object(image, size, margin)`` -> ``Crop`` at the method's own
resolution. The crop records its box in *original file* pixels, so a result's camera can be laid
over the untouched photo in Blender even when the image was downscaled on load.

Every failure a user can cause raises ``UserError`` with a machine-readable ``code``, a one-line
``message`` and a ``hint`` saying what to do.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from backend import salient_mask
from backend.protocol import UserError

SUPPORTED_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP", "TIFF", "BMP", "GIF"})
MAX_PIXELS = 150_000_000
"""Declared pixel counts above this are refused before decoding (decompression-bomb guard)."""
MAX_SIDE = 4096
"""Longer sides are downscaled on load: no method works above ~1k pixels and memory matters."""
GRABCUT_SIDE = 512
"""GrabCut runs on a copy with this long side; the mask is scaled back (it is O(pixels) per pass)."""
GRABCUT_ITERATIONS = 5
DEFAULT_BOX_MARGIN = 0.1
"""Default GrabCut rectangle: the centred box leaving this fraction of each side as background."""
MIN_SIDE = 16
"""Shorter sides are refused: no object outline can be found in a handful of pixels."""
MASK_ASPECT_TOLERANCE = 0.02
"""A mask file may be a scaled copy of the photo's size (rounding allowed), never a stretched one."""
MIN_MASK_FRACTION = 1e-3
MAX_MASK_FRACTION = 0.999


@dataclass
class InputImage:
    """The photo as loaded: ``rgb`` (H, W, 3) float32 sRGB in [0, 1], ``mask`` (H, W) bool.

    ``original_size`` is the file's (W, H) after EXIF rotation; it differs from the array size
    only when a huge image was downscaled on load. ``notes`` tell the user what was converted.
    ``mask_source`` is the source that made ``mask`` (``auto`` resolved: ``alpha``, ``salient``...).
    """

    rgb: np.ndarray
    mask: np.ndarray
    path: str
    notes: list[str] = field(default_factory=list)
    original_size: tuple[int, int] | None = None
    mask_source: str = "given"

    @property
    def size(self) -> tuple[int, int]:
        """(W, H) of the arrays."""
        return self.rgb.shape[1], self.rgb.shape[0]

    @property
    def scale_to_original(self) -> float:
        """Factor from array pixels to original file pixels (1.0 unless downscaled on load)."""
        if self.original_size is None:
            return 1.0
        return self.original_size[0] / self.rgb.shape[1]

    def mask_at_original_size(self) -> np.ndarray:
        """The mask as 8-bit 0/255 at the file's size (``mask.png`` of a result)."""
        values = self.mask.astype(np.uint8) * 255
        size = self.original_size or self.size
        if size == self.size:
            return values
        resized = cv2.resize(values, size, interpolation=cv2.INTER_LINEAR)
        return np.where(resized >= 128, 255, 0).astype(np.uint8)


@dataclass
class Crop:
    """A square crop around the object at a method's resolution.

    ``rgb`` (S, S, 3) float32 in [0, 1]; ``mask`` (S, S) float32 coverage in [0, 1] (threshold at
    0.5 for a hard mask). ``box`` = [x0, y0, side] of the square in original-image pixels
    (top-left origin; it may reach outside the image, where ``rgb`` was padded). Crop pixel
    (col, row) covers original pixels x0 + col * side / S ... x0 + (col + 1) * side / S.
    ``image_size`` = [W, H] of the original image.
    """

    rgb: np.ndarray
    mask: np.ndarray
    box: list[float]
    image_size: list[int]


@dataclass
class _Decoded:
    rgb: np.ndarray
    alpha: np.ndarray | None
    original_size: tuple[int, int]
    notes: list[str]


def _check_file(path: Path, what: str = "image") -> None:
    """Exists, is a file, has bytes and can be opened; ``what`` ("image"/"mask") names it in messages."""
    try:
        if not path.exists():
            raise UserError("not_found", f"{what} file not found: {path}", "check the path")
        if not path.is_file():
            raise UserError("not_a_file", f"not a regular file: {path}", f"give the path of the {what} file")
        if path.stat().st_size == 0:
            raise UserError("empty_file", f"{what} file is empty (0 bytes): {path}", "re-export it")
        with path.open("rb"):
            pass
    except PermissionError:
        raise _not_readable(path, what) from None


def _not_readable(path: Path, what: str) -> UserError:
    return UserError(
        "not_readable", f"no permission to read the {what} file {path}", "check the file's permissions"
    )


def _open(path: Path, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse bombs before any pixel is decoded."""
    too_large = UserError(
        "too_large",
        f"image declares more than {max_pixels:,} pixels (decompression bomb guard): {path.name}",
        "resize the image below that size in an image editor",
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
    except Image.DecompressionBombError:
        raise too_large from None
    except PermissionError:
        raise _not_readable(path, "image") from None
    except UnidentifiedImageError:
        raise UserError(
            "not_an_image",
            f"not a readable image: {path.name}",
            "use a PNG, JPEG, WebP, TIFF or BMP file",
        ) from None
    except OSError as exc:
        raise UserError("corrupt", f"cannot read image {path.name}: {exc}", "re-export the image") from None
    if img.format not in SUPPORTED_FORMATS:
        raise UserError(
            "unsupported_format",
            f"unsupported image format {img.format}: {path.name}",
            "convert it to PNG or JPEG",
        )
    if img.width * img.height > max_pixels:
        raise too_large
    return img


def _decode(path: Path, max_side: int, max_pixels: int) -> _Decoded:
    """Decode the first frame, apply EXIF orientation, normalise the mode, cap the size.

    Large images are reduced before the float conversion (JPEGs already while decoding), so
    memory stays near the size of the compressed-domain image, not four times its pixels.
    """
    notes: list[str] = []
    img = _open(path, max_pixels)
    if getattr(img, "n_frames", 1) > 1:
        notes.append(f"animated image with {img.n_frames} frames: the first frame is used")
        img.seek(0)
    declared = img.size
    if img.format == "JPEG" and max(img.size) > 2 * max_side:
        img.draft("RGB", (max_side, max_side))  # decode at a reduced DCT scale: far less memory
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img.load()
            orientation = img.getexif().get(0x0112, 1)
            img = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError) as exc:
        raise UserError(
            "corrupt", f"image data is corrupt or truncated: {path.name} ({exc})", "re-export the image"
        ) from None
    if orientation not in (1, None):
        notes.append(f"EXIF orientation {orientation} applied")
    w, h = declared
    original_size = (h, w) if orientation in (5, 6, 7, 8) else (w, h)  # these rotate by 90 degrees
    img = _normalise_mode(img, notes)
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    if img.size != original_size:
        notes.append(f"downscaled from {original_size[0]}x{original_size[1]} to {img.width}x{img.height}")
    rgb, alpha = _to_arrays(img)
    return _Decoded(rgb, alpha, original_size, notes)


def _normalise_mode(img: Image.Image, notes: list[str]) -> Image.Image:
    """Any Pillow mode -> ``RGB``, ``RGBA`` (alpha kept), ``I`` (16/32-bit grey) or ``F``."""
    mode = img.mode
    if mode.startswith("I"):
        notes.append(f"{'16' if mode.startswith('I;16') else '32'}-bit greyscale converted")
        return img if mode == "I" else img.convert("I")
    if mode == "F":
        return img
    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        mode in ("P", "L", "RGB") and "transparency" in img.info
    )
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
    elif mode in ("L", "LA", "1"):
        notes.append("greyscale converted to RGB")
    elif mode in ("P", "PA"):
        notes.append("palette image converted to RGB" + (" with transparency" if has_alpha else ""))
    target = "RGBA" if has_alpha else "RGB"
    return img if mode == target else img.convert(target)


def _to_arrays(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """A normalised image -> float32 RGB in [0, 1] (H, W, 3) and alpha (H, W) or None."""
    if img.mode in ("I", "F"):
        grey = np.asarray(img, dtype=np.float32) / (65535.0 if img.mode == "I" else 1.0)
        return np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2), None
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if img.mode == "RGBA":
        return np.ascontiguousarray(arr[..., :3]), np.ascontiguousarray(arr[..., 3])
    return arr, None


def _alpha_is_informative(alpha: np.ndarray | None) -> bool:
    """True when the alpha channel separates an object from a background."""
    if alpha is None:
        return False
    fraction = float((alpha >= 0.5).mean())
    return MIN_MASK_FRACTION <= fraction <= MAX_MASK_FRACTION


def _mask_from_file(mask_path: str, size: tuple[int, int], notes: list[str], max_side: int) -> np.ndarray:
    """A separate mask image: its alpha if informative, else luminance; resized if needed."""
    _check_file(Path(mask_path), "mask")
    decoded = _decode(Path(mask_path), max_side, MAX_PIXELS)
    mask_w, mask_h = decoded.original_size
    image_w, image_h = size
    if abs(mask_w * image_h - mask_h * image_w) > MASK_ASPECT_TOLERANCE * mask_h * image_w:
        raise UserError(
            "mask_size",
            f"mask {mask_w}x{mask_h} does not have the shape of the {image_w}x{image_h} image",
            "export the mask from the same photo (any scale of it works)",
        )
    if _alpha_is_informative(decoded.alpha):
        values = decoded.alpha
    else:
        values = decoded.rgb @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    if (values.shape[1], values.shape[0]) != size:
        notes.append(f"mask {values.shape[1]}x{values.shape[0]} resized to the image's {size[0]}x{size[1]}")
        values = cv2.resize(values, size, interpolation=cv2.INTER_LINEAR)
    return values >= 0.5


def _clip_box(box: tuple[int, int, int, int], w: int, h: int) -> tuple[int, int, int, int]:
    """``box`` = (x0, y0, x1, y1) clipped to the image; one that lies (almost) outside is an error."""
    x0, y0 = max(0, box[0]), max(0, box[1])
    x1, y1 = min(w, box[2]), min(h, box[3])
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise UserError(
            "bad_box", f"box {list(box)} lies outside the {w}x{h} image", "draw it on the object"
        )
    return x0, y0, x1, y1


def grabcut_mask(rgb: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Foreground by OpenCV GrabCut seeded with ``box`` = (x0, y0, x1, y1) in ``rgb`` pixels.

    Outside the box is certain background. Without a box, a centred box leaving
    ``DEFAULT_BOX_MARGIN`` of each side. Runs on a downscaled copy for speed and keeps the
    largest connected component, since the methods reconstruct exactly one object.
    """
    h, w = rgb.shape[:2]
    if box is None:
        box = (
            round(w * DEFAULT_BOX_MARGIN),
            round(h * DEFAULT_BOX_MARGIN),
            round(w * (1 - DEFAULT_BOX_MARGIN)),
            round(h * (1 - DEFAULT_BOX_MARGIN)),
        )
    x0, y0, x1, y1 = _clip_box(box, w, h)
    scale = min(1.0, GRABCUT_SIDE / max(h, w))
    small_size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(rgb, small_size, interpolation=cv2.INTER_AREA) if scale < 1 else rgb
    bgr = cv2.cvtColor(np.clip(small * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    rect = (
        int(x0 * scale),
        int(y0 * scale),
        max(1, int((x1 - x0) * scale)),
        max(1, int((y1 - y0) * scale)),
    )
    labels = np.zeros(bgr.shape[:2], np.uint8)
    cv2.setRNGSeed(0)  # GrabCut's GMM initialisation uses OpenCV's global RNG: keep it reproducible
    try:
        cv2.grabCut(bgr, labels, rect, None, None, GRABCUT_ITERATIONS, cv2.GC_INIT_WITH_RECT)
    except cv2.error as exc:
        raise UserError(
            "grabcut_failed", f"automatic foreground extraction failed: {exc.msg}", "use a mask file or a box"
        ) from None
    fg = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)
    count, components, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    if count > 2:
        largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        fg = (components == largest).astype(np.uint8)
    if scale < 1:
        fg = cv2.resize(fg.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) >= 0.5
    return fg.astype(bool)


def _check_mask(mask: np.ndarray, source: str) -> None:
    fraction = float(mask.mean())
    if fraction < MIN_MASK_FRACTION:
        raise UserError(
            "empty_mask",
            f"the {source} mask selects no object ({fraction:.2%} of the image)",
            "use another mask source (grabcut, a mask file) or draw a box around the object",
        )
    if fraction > MAX_MASK_FRACTION:
        raise UserError(
            "full_mask",
            f"the {source} mask covers the whole image, so no object outline is known",
            "use an image with transparent background, a mask file, or grabcut with a box",
        )


def load_input(
    path: str | os.PathLike[str],
    mask: str = "auto",
    mask_path: str | None = None,
    box: list[int] | None = None,
    max_side: int = MAX_SIDE,
    max_pixels: int = MAX_PIXELS,
) -> InputImage:
    """Load an image and build its object mask from ``mask`` (see ``protocol.MASK_SOURCES``).

    ``box`` = [x0, y0, x1, y1] in original-image pixels seeds GrabCut and picks the salient net's
    object (the component most under it, cleaned up from the box's centre).
    """
    path = Path(path)
    _check_file(path)
    decoded = _decode(path, max_side, max_pixels)
    if min(decoded.original_size) < MIN_SIDE:
        width, height = decoded.original_size
        raise UserError(
            "too_small",
            f"image {path.name} is only {width}x{height} pixels",
            f"use a photo at least {MIN_SIDE} pixels on each side (a few hundred work best)",
        )
    scale = decoded.rgb.shape[1] / decoded.original_size[0]
    scaled_box = None if box is None else tuple(round(v * scale) for v in box)
    object_mask, source = _object_mask(decoded, mask, mask_path, scaled_box, path.name, max_side)
    if source != "none":
        _check_mask(object_mask, source)
    return InputImage(decoded.rgb, object_mask, str(path), decoded.notes, decoded.original_size, source)


def _object_mask(
    decoded: _Decoded,
    mask: str,
    mask_path: str | None,
    box: tuple[int, int, int, int] | None,
    name: str,
    max_side: int,
) -> tuple[np.ndarray, str]:
    """The object mask from source ``mask`` and the source that made it (``auto`` resolved)."""
    if mask == "auto":
        return _auto_mask(decoded, box)
    if mask == "alpha":
        if decoded.alpha is None:
            raise UserError(
                "no_alpha", f"{name} has no alpha channel", "use --mask auto, salient, grabcut or a mask file"
            )
        return decoded.alpha >= 0.5, mask
    if mask == "file":
        if not mask_path:
            raise UserError("no_mask_path", "mask source 'file' needs a mask path", "pass --mask-path")
        height, width = decoded.rgb.shape[:2]
        return _mask_from_file(mask_path, (width, height), decoded.notes, max_side), mask
    if mask == "salient":
        try:
            return salient_object_mask(decoded.rgb, box), mask
        except salient_mask.SalientUnavailable as exc:
            raise UserError(
                "salient_unavailable",
                f"the salient-object mask net cannot run: {exc}",
                "reinstall the pinned requirements (requirements-nodeps.txt), or use --mask grabcut",
            ) from None
    if mask == "grabcut":
        return grabcut_mask(decoded.rgb, box), mask
    if mask == "none":
        return np.ones(decoded.rgb.shape[:2], dtype=bool), mask
    raise UserError("bad_mask_source", f"unknown mask source {mask!r}", "see --help for the sources")


def _auto_mask(decoded: _Decoded, box: tuple[int, int, int, int] | None) -> tuple[np.ndarray, str]:
    """The alpha channel when it separates an object, else the salient-object net, else GrabCut
    (an installation without the net still works, and a photo where the net finds nothing still gets
    a mask; the notes say which)."""
    if _alpha_is_informative(decoded.alpha):
        return decoded.alpha >= 0.5, "alpha"
    try:
        found = salient_object_mask(decoded.rgb, box)
    except salient_mask.SalientUnavailable as exc:
        decoded.notes.append(
            f"no informative alpha channel and no salient-object net ({exc}): object found with GrabCut"
        )
        return grabcut_mask(decoded.rgb, box), "grabcut"
    if found.mean() < MIN_MASK_FRACTION:
        decoded.notes.append("the salient-object net found no object: object found with GrabCut")
        return grabcut_mask(decoded.rgb, box), "grabcut"
    decoded.notes.append("no informative alpha channel: object found with the salient-object net")
    return found, "salient"


def salient_object_mask(rgb: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """``salient_mask.object_mask`` with the box checked like GrabCut's (``SalientUnavailable`` when the
    net cannot run)."""
    return salient_mask.object_mask(rgb, None if box is None else _clip_box(box, rgb.shape[1], rgb.shape[0]))


def _pad_crop(values: np.ndarray, x0: int, y0: int, side: int, fill: float | None) -> np.ndarray:
    """``values[y0:y0+side, x0:x0+side]`` with out-of-image parts padded (edge or constant)."""
    h, w = values.shape[:2]
    pads = (max(0, -y0), max(0, y0 + side - h)), (max(0, -x0), max(0, x0 + side - w))
    inside = values[max(0, y0) : min(h, y0 + side), max(0, x0) : min(w, x0 + side)]
    if not any(p for pair in pads for p in pair):
        return inside
    pads = pads + ((0, 0),) * (values.ndim - 2)
    if fill is None:
        return np.pad(inside, pads, mode="edge")
    return np.pad(inside, pads, mode="constant", constant_values=fill)


MAX_PHOTO_SIDE = 1024
"""Photo-resolution crops (the textures baked from the photo) are at most this many pixels across."""


def photo_side(image: InputImage, box_side: float, smallest: int) -> int:
    """Pixels across a crop square of ``box_side`` original-file pixels (``Crop.box[2]``) in the loaded
    photo, within [``smallest``, ``MAX_PHOTO_SIDE``]: the size at which a crop keeps the photo's detail."""
    return int(min(max(round(box_side / image.scale_to_original), smallest), MAX_PHOTO_SIDE))


def crop_to_object(image: InputImage, size: int, margin: float = 0.05, fill: float | None = None) -> Crop:
    """Square crop centred on the mask's bounding box, resized to ``size`` x ``size``.

    ``margin`` is the fraction of the box's long side added on every side (the official
    MeshInversion crop pads by 5 %). Outside the image, ``rgb`` repeats the edge pixels
    (``fill=None``) or takes the constant ``fill`` (e.g. 1.0 for a white background); the mask
    is 0 there.
    """
    if size < 1:
        raise ValueError(f"crop size must be positive, got {size}")
    rows = np.flatnonzero(image.mask.any(axis=1))
    cols = np.flatnonzero(image.mask.any(axis=0))
    if rows.size == 0:
        raise UserError("empty_mask", "the object mask is empty", "use another mask source")
    bw, bh = cols[-1] + 1 - cols[0], rows[-1] + 1 - rows[0]
    side = max(1, math.ceil(max(bw, bh) * (1 + 2 * margin)))
    x0 = int(cols[0] + cols[-1] + 1 - side) // 2
    y0 = int(rows[0] + rows[-1] + 1 - side) // 2
    return _square_crop(image, x0, y0, side, size, fill)


def crop_box(image: InputImage, box: list[float], size: int, fill: float | None = None) -> Crop:
    """The square ``box`` = [x0, y0, side] in original-image pixels (a result's ``camera.crop_box``)
    at ``size`` x ``size``: the crop the method saw, to lay the photo over the result's camera again."""
    s = image.scale_to_original
    x0, y0, side = (round(v / s) for v in box)
    return _square_crop(image, x0, y0, max(1, side), size, fill)


def _square_crop(image: InputImage, x0: int, y0: int, side: int, size: int, fill: float | None) -> Crop:
    """The square of ``side`` array pixels at (``x0``, ``y0``), padded outside the image and resized."""
    rgb = _pad_crop(image.rgb, x0, y0, side, fill)
    mask = _pad_crop(image.mask.astype(np.float32), x0, y0, side, 0.0)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    rgb = np.clip(cv2.resize(rgb, (size, size), interpolation=interpolation), 0.0, 1.0)
    mask = np.clip(cv2.resize(mask, (size, size), interpolation=interpolation), 0.0, 1.0)
    s = image.scale_to_original
    w, h = image.original_size or image.size
    return Crop(
        rgb=rgb.astype(np.float32),
        mask=mask.astype(np.float32),
        box=[x0 * s, y0 * s, side * s],
        image_size=[int(w), int(h)],
    )
