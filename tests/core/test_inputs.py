"""Image loading, masks and crops with real files of every supported kind, written by Pillow."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend.inputs import InputImage, crop_to_object, grabcut_mask, load_input
from backend.protocol import UserError

RED = (220, 30, 30)


def object_rgba(w: int = 96, h: int = 64) -> np.ndarray:
    """A red rectangle (cols 24..72, rows 16..48) on a transparent grey background."""
    img = np.zeros((h, w, 4), np.uint8)
    img[..., :3] = 128
    img[16:48, 24:72] = (*RED, 255)
    return img


def photo_rgb(w: int = 160, h: int = 120) -> np.ndarray:
    """A saturated object on a dark noisy background: what GrabCut must separate."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 50, (h, w, 3)).astype(np.uint8)
    img[30:90, 40:120] = RED
    return img


def test_rgba_png_alpha_mask(tmp_path: Path) -> None:
    Image.fromarray(object_rgba()).save(tmp_path / "a.png")
    image = load_input(tmp_path / "a.png", mask="alpha")
    assert image.rgb.dtype == np.float32 and image.rgb.shape == (64, 96, 3)
    assert image.mask.dtype == bool and image.mask.sum() == 32 * 48
    assert image.mask[16:48, 24:72].all()
    np.testing.assert_allclose(image.rgb[20, 30], np.array(RED) / 255, atol=1e-6)
    assert load_input(tmp_path / "a.png", mask="auto").mask.sum() == 32 * 48


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "TIFF", "BMP"])
def test_other_formats_load(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"photo.{fmt.lower()}"
    Image.fromarray(photo_rgb()).save(path, format=fmt)
    image = load_input(path, mask="none")
    assert image.rgb.shape == (120, 160, 3) and image.mask.all()
    assert abs(image.rgb[60, 80, 0] - RED[0] / 255) < 0.05


def test_16bit_greyscale(tmp_path: Path) -> None:
    grey = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (32, 1))
    Image.fromarray(grey).save(tmp_path / "g16.png")
    image = load_input(tmp_path / "g16.png", mask="none")
    assert image.rgb.shape == (32, 64, 3)
    assert image.rgb[0, 0, 0] == 0.0 and abs(image.rgb[0, -1, 1] - 1.0) < 1e-6
    assert any("16-bit" in n for n in image.notes)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    Image.fromarray(photo_rgb()).convert("CMYK").save(tmp_path / "c.jpg")
    image = load_input(tmp_path / "c.jpg", mask="none")
    assert image.rgb.shape == (120, 160, 3)
    assert image.rgb[60, 80, 0] > 0.7 and image.rgb[60, 80, 1] < 0.3
    assert any("CMYK" in n for n in image.notes)


def test_palette_with_transparency(tmp_path: Path) -> None:
    pal = np.zeros((40, 50), np.uint8)
    pal[10:30, 15:35] = 1
    img = Image.fromarray(pal, mode="P")
    img.putpalette([0, 0, 0, *RED] + [0] * 762)
    img.save(tmp_path / "p.png", transparency=0)
    image = load_input(tmp_path / "p.png", mask="alpha")
    assert image.mask.sum() == 20 * 20 and image.mask[10:30, 15:35].all()
    assert any("palette" in n for n in image.notes)


def test_greyscale_and_la(tmp_path: Path) -> None:
    grey = photo_rgb()[..., 0]
    Image.fromarray(grey, mode="L").save(tmp_path / "l.png")
    image = load_input(tmp_path / "l.png", mask="none")
    np.testing.assert_allclose(image.rgb[..., 0], image.rgb[..., 2])
    la = np.stack([grey, np.where(grey > 100, 255, 0).astype(np.uint8)], axis=2)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    assert load_input(tmp_path / "la.png", mask="alpha").mask.sum() == (grey > 100).sum()


def test_animated_gif_uses_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (32, 24), c) for c in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    image = load_input(tmp_path / "anim.gif", mask="none")
    assert image.rgb[5, 5, 0] > 0.9 and image.rgb[5, 5, 2] < 0.1
    assert any("first frame" in n for n in image.notes)


def test_exif_rotation_applied(tmp_path: Path) -> None:
    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, :40] = 255  # left half white, landscape
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(arr).save(tmp_path / "r.jpg", exif=exif, quality=95)
    image = load_input(tmp_path / "r.jpg", mask="none")
    assert image.rgb.shape == (80, 40, 3)  # displayed as portrait
    assert image.rgb[5, 20].mean() > 0.9 and image.rgb[75, 20].mean() < 0.1  # white went to the top
    assert any("EXIF" in n for n in image.notes)


def test_huge_image_downscaled_with_original_size(tmp_path: Path) -> None:
    Image.fromarray(object_rgba(400, 200)).save(tmp_path / "big.png")
    image = load_input(tmp_path / "big.png", mask="alpha", max_side=100)
    assert image.rgb.shape == (50, 100, 3) and image.original_size == (400, 200)
    assert image.scale_to_original == 4.0 and any("downscaled" in n for n in image.notes)


def test_downscale_keeps_16bit_and_palette_alpha(tmp_path: Path) -> None:
    grey = np.tile(np.linspace(0, 65535, 400).astype(np.uint16), (200, 1))
    Image.fromarray(grey).save(tmp_path / "g16.png")
    image = load_input(tmp_path / "g16.png", mask="none", max_side=100)
    assert image.rgb.shape == (50, 100, 3) and abs(image.rgb[25, 50, 0] - 0.5) < 0.02
    pal = np.zeros((200, 400), np.uint8)
    pal[40:160, 100:300] = 1
    img = Image.fromarray(pal, mode="P")
    img.putpalette([0, 0, 0, *RED] + [0] * 762)
    img.save(tmp_path / "p.png", transparency=0)
    image = load_input(tmp_path / "p.png", mask="alpha", max_side=100)
    assert image.mask.shape == (50, 100) and abs(int(image.mask.sum()) - 30 * 50) <= 2 * (30 + 50)


def test_large_rotated_jpeg_reports_true_original_size(tmp_path: Path) -> None:
    """JPEGs are decoded at a reduced scale; the crop box must still be in the file's pixels."""
    arr = np.zeros((800, 1200, 3), np.uint8)
    arr[:, :600] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(tmp_path / "big.jpg", exif=exif, quality=90)
    image = load_input(tmp_path / "big.jpg", mask="none", max_side=200)
    assert image.original_size == (800, 1200) and image.rgb.shape == (200, 133, 3)
    assert image.rgb[10, 66].mean() > 0.9 and image.rgb[190, 66].mean() < 0.1
    crop = crop_to_object(image, 16, margin=0.0)
    assert crop.image_size == [800, 1200] and crop.box[2] == pytest.approx(1200, rel=0.01)


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"", "empty_file"),
        (b"this is plain text, not an image\n" * 10, "not_an_image"),
    ],
)
def test_bad_files(tmp_path: Path, content: bytes, code: str) -> None:
    (tmp_path / "x.png").write_bytes(content)
    with pytest.raises(UserError) as err:
        load_input(tmp_path / "x.png")
    assert err.value.code == code and err.value.hint


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found") as err:
        load_input(tmp_path / "nope.png")
    assert err.value.code == "not_found"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "t.img"
    Image.fromarray(photo_rgb()).save(path, format=fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as err:
        load_input(path, mask="none")
    assert err.value.code == "corrupt"


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR declares width x height, with a tiny IDAT: a decompression-bomb header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def test_decompression_bomb_refused(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(png_header_only(40000, 40000))
    with pytest.raises(UserError) as err:
        load_input(tmp_path / "bomb.png")
    assert err.value.code == "too_large"


def test_explicit_pixel_cap(tmp_path: Path) -> None:
    (tmp_path / "big.png").write_bytes(png_header_only(3000, 3000))
    with pytest.raises(UserError) as err:
        load_input(tmp_path / "big.png", max_pixels=1_000_000)
    assert err.value.code == "too_large"


def test_grabcut_finds_object(tmp_path: Path) -> None:
    Image.fromarray(photo_rgb()).save(tmp_path / "photo.png")
    image = load_input(tmp_path / "photo.png", mask="grabcut")
    truth = np.zeros((120, 160), bool)
    truth[30:90, 40:120] = True
    iou = (image.mask & truth).sum() / (image.mask | truth).sum()
    assert iou > 0.9 and image.mask_source == "grabcut"
    auto = load_input(tmp_path / "photo.png", mask="auto")  # no alpha channel: the salient-object net
    assert auto.mask_source == "salient" and (auto.mask & truth).sum() / (auto.mask | truth).sum() > 0.9


def test_grabcut_user_box_limits_object() -> None:
    rgb = photo_rgb().astype(np.float32) / 255
    rgb[10:20, 5:25] = (0.1, 0.9, 0.1)  # a second, green object outside the user's box
    mask = grabcut_mask(rgb, (30, 20, 130, 100))
    assert not mask[:, :30].any() and mask[40:80, 50:110].mean() > 0.95


def test_mask_file_resized_with_note(tmp_path: Path) -> None:
    Image.fromarray(photo_rgb()).save(tmp_path / "photo.jpg")
    mask = np.zeros((60, 80), np.uint8)
    mask[15:45, 20:60] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    image = load_input(tmp_path / "photo.jpg", mask="file", mask_path=str(tmp_path / "mask.png"))
    assert image.mask.shape == (120, 160) and image.mask[30:90, 40:120].all()
    assert image.mask.sum() == 60 * 80
    assert any("resized" in n for n in image.notes)


def test_empty_and_full_masks_refused(tmp_path: Path) -> None:
    rgba = object_rgba()
    rgba[..., 3] = 0
    Image.fromarray(rgba).save(tmp_path / "empty.png")
    with pytest.raises(UserError) as err:
        load_input(tmp_path / "empty.png", mask="alpha")
    assert err.value.code == "empty_mask"
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(tmp_path / "full.png")
    Image.fromarray(photo_rgb(20, 20)).save(tmp_path / "img.png")
    with pytest.raises(UserError) as err:
        load_input(tmp_path / "img.png", mask="file", mask_path=str(tmp_path / "full.png"))
    assert err.value.code == "full_mask"


def test_missing_mask_file(tmp_path: Path) -> None:
    Image.fromarray(photo_rgb()).save(tmp_path / "photo.png")
    with pytest.raises(UserError) as err:
        load_input(tmp_path / "photo.png", mask="file", mask_path=str(tmp_path / "nope.png"))
    assert err.value.code == "not_found" and "nope.png" in err.value.message


def test_alpha_requested_without_alpha(tmp_path: Path) -> None:
    Image.fromarray(photo_rgb()).save(tmp_path / "photo.jpg")
    with pytest.raises(UserError) as err:
        load_input(tmp_path / "photo.jpg", mask="alpha")
    assert err.value.code == "no_alpha"


def test_crop_to_object_box_and_content() -> None:
    rgba = object_rgba()
    mask = rgba[..., 3] > 0
    image = InputImage(rgba[..., :3].astype(np.float32) / 255, mask, "mem")
    crop = crop_to_object(image, 32, margin=0.0)
    assert crop.box == [24.0, 8.0, 48.0]  # square around a 48x32 box, centred vertically
    assert crop.image_size == [96, 64]
    assert crop.rgb.shape == (32, 32, 3) and crop.mask.shape == (32, 32)
    assert crop.rgb.dtype == np.float32 and crop.mask.dtype == np.float32
    rows = np.flatnonzero(crop.mask.mean(axis=1) > 0.5)
    assert rows[0] == 5 and rows[-1] == 26  # the object's 32 rows map to rows 5.3..26.7


def test_crop_padding_outside_image_and_downscale_mapping() -> None:
    mask = np.zeros((40, 100), bool)
    mask[:, 0:10] = True  # tall object at the left edge: the square reaches outside
    rgb = np.full((40, 100, 3), 0.25, np.float32)
    image = InputImage(rgb, mask, "mem", original_size=(200, 80))
    crop = crop_to_object(image, 20, margin=0.0, fill=1.0)
    assert crop.box == [-30.0, 0.0, 80.0]  # in original pixels: array box (-15, 0, 40) times 2
    assert crop.image_size == [200, 80]
    assert crop.rgb[10, 0].min() == 1.0 and crop.mask[:, :7].max() == 0.0
    edge = crop_to_object(image, 20, margin=0.0)
    np.testing.assert_allclose(edge.rgb, 0.25, atol=1e-6)
