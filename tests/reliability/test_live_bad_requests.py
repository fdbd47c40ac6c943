"""Bad images, paths, options and weights sent as jobs to ONE live ``python -m backend serve``.

``tests/core`` checks each loader in-process; here every case goes through the real server, as the
add-on sends it, and must end in one error event (code, one-line message, hint) with no output
folder and no staging debris, while the same backend process keeps answering.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from backend.weights import WeightsEntry, read_manifest, write_manifest
from tests.core.backend_process import BackendProcess
from tests.reliability.conftest import (
    TinyWeights,
    alive,
    is_one_line_error,
    job_outcome,
    leftovers,
    make_tiny_weights,
    start_backend,
)

pytestmark = pytest.mark.slow  # a live backend subprocess


class _RunsCode:
    """A pickle that creates ``marker`` when unpickled: proof that a file was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def _add_entry(root: Path, weights_id: str, data: bytes | None, like: WeightsEntry, **manifest: Any) -> None:
    """Register ``data`` (``None``: no file at all) under ``weights_id`` with ``like``'s config;
    the manifest's size and sha256 describe ``data`` unless ``manifest`` overrides them."""
    path = root / f"{weights_id}.safetensors"
    if data is not None:
        path.write_bytes(data)
    described = data if data is not None else b""
    fields = {**like.to_dict(), "id": weights_id, "file": path.name}
    fields.update({"sha256": hashlib.sha256(described).hexdigest(), "size": len(described), **manifest})
    write_manifest(root, [*read_manifest(root, "user"), WeightsEntry(**fields, root=root, origin="user")])


def _hostile_weights(tiny: TinyWeights) -> None:
    """Missing, truncated, altered, mis-shaped and pickled weights next to the good tiny ones."""
    root = tiny.root
    good = next(e for e in read_manifest(root, "user") if e.id == tiny.meshinversion)
    data = good.path.read_bytes()
    _add_entry(root, "w-missing", None, good, size=len(data), sha256=good.sha256)
    _add_entry(root, "w-truncated", data[: len(data) // 2], good, size=len(data), sha256=good.sha256)
    flipped = bytearray(data)
    flipped[-5] ^= 0xFF  # inside the last tensor's bytes: same size, another hash
    _add_entry(root, "w-altered", bytes(flipped), good, sha256=good.sha256)
    tensors = load_file(good.path)
    first = sorted(tensors)[0]
    tensors[first] = torch.zeros(*tensors[first].shape[:-1], tensors[first].shape[-1] + 1)
    save_file(tensors, root / "reshaped.tmp")
    _add_entry(root, "w-reshaped", (root / "reshaped.tmp").read_bytes(), good)
    (root / "reshaped.tmp").unlink()
    _add_entry(root, "w-pickle", pickle.dumps({"x": _RunsCode(root / "executed")}), good)
    _add_entry(root, "w-other-method", data, good, method="gan2shape")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BackendProcess, TinyWeights, Path]]:
    tiny = make_tiny_weights(tmp_path_factory.mktemp("weights"))
    _hostile_weights(tiny)
    files = tmp_path_factory.mktemp("inputs")
    backend = start_backend(tiny.root, files / "stderr.txt")
    yield backend, tiny, files
    backend.close()


def _rgba_object(h: int = 64, w: int = 80) -> np.ndarray:
    image = np.zeros((h, w, 4), np.uint8)
    image[..., :3] = 90
    image[16:48, 20:60] = (200, 50, 50, 255)
    return image


def _save(folder: Path, name: str, array: np.ndarray, **kw: Any) -> Path:
    Image.fromarray(array).save(folder / name, **kw)
    return folder / name


def _bomb_png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(
        b"IEND", b""
    )


Case = Callable[[Path, Path], dict[str, Any]]
"""(folder for input files, the good photo) -> job fields that must fail."""


def _file(name: str, data: bytes) -> Case:
    def build(folder: Path, _: Path) -> dict[str, Any]:
        (folder / name).write_bytes(data)
        return {"image": str(folder / name)}

    return build


def _truncated(fmt: str) -> Case:
    def build(folder: Path, _: Path) -> dict[str, Any]:
        path = _save(folder, f"cut.{fmt.lower()}", _rgba_object()[..., :3], format=fmt)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        return {"image": str(path), "mask": "none"}

    return build


def _tiny_image(folder: Path, _: Path) -> dict[str, Any]:
    return {"image": str(_save(folder, "one.png", np.full((1, 1, 3), 200, np.uint8)))}


def _all_transparent(folder: Path, _: Path) -> dict[str, Any]:
    return {"image": str(_save(folder, "clear.png", np.zeros((64, 80, 4), np.uint8))), "mask": "alpha"}


def _mask_file(name: str, mask: np.ndarray) -> Case:
    def build(folder: Path, photo: Path) -> dict[str, Any]:
        return {"image": str(photo), "mask": "file", "mask_path": str(_save(folder, name, mask))}

    return build


def _object_mask(h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255
    return mask


def _fields(**fields: Any) -> Case:
    return lambda folder, photo: {"image": str(photo), **fields}


def _missing(folder: Path, _: Path) -> dict[str, Any]:
    return {"image": str(folder / "gône dir" / "no such photo.png")}


def _directory(folder: Path, _: Path) -> dict[str, Any]:
    (folder / "a folder.png").mkdir(exist_ok=True)
    return {"image": str(folder / "a folder.png")}


BAD_JOBS: dict[str, tuple[Case, str]] = {
    # images
    "zero bytes": (_file("empty.png", b""), "empty_file"),
    "truncated PNG": (_truncated("PNG"), "corrupt"),
    "truncated JPEG": (_truncated("JPEG"), "corrupt"),
    "text named .jpg": (_file("notes.jpg", b"shopping list: eggs, milk\n" * 20), "not_an_image"),
    "SVG named .png": (_file("vector.png", b"<svg xmlns='http://www.w3.org/2000/svg'/>"), "not_an_image"),
    "1x1 pixel": (_tiny_image, "too_small"),
    "40000x40000 bomb": (_file("bomb.png", _bomb_png(40000, 40000)), "too_large"),
    "all-transparent alpha": (_all_transparent, "empty_mask"),
    "empty mask file": (_mask_file("empty_mask.png", np.zeros((64, 80), np.uint8)), "empty_mask"),
    "full mask file": (_mask_file("full_mask.png", np.full((64, 80), 255, np.uint8)), "full_mask"),
    "mask of another shape": (_mask_file("square_mask.png", _object_mask(100, 100)), "mask_size"),
    "mask file missing": (_fields(mask="file", mask_path="/nonexistent/mask.png"), "not_found"),
    # paths
    "missing image (non-ASCII path)": (_missing, "not_found"),
    "image is a directory": (_directory, "not_a_file"),
    # options
    "unknown method": (_fields(method="nerf", weights=None), "unknown_method"),
    "unknown weights id": (_fields(weights="no-such-weights"), "unknown_weights"),
    "weights of another method": (_fields(weights="w-other-method"), "weights_mismatch"),
    "wrong preset": (_fields(preset="ultra"), "bad_request"),
    "unknown option": (_fields(overrides={"stepz": 3}), "bad_option"),
    "negative step count": (_fields(overrides={"stages": [[-5, 0.1, 0.01]]}), "bad_option"),
    "negative candidates": (_fields(overrides={"chamfer_points": -1}), "bad_option"),
    "absurd step count": (_fields(overrides={"stages": [[10**9, 0.1, 0.01]]}), "bad_option"),
    "400-digit number for a float option": (_fields(overrides={"mask_weight": 10**400}), "bad_option"),
    "seed beyond 64 bits": (_fields(seed=2**70), "bad_request"),
    "device that does not exist": (_fields(device="tpu"), "bad_request"),
    "job id that is not a string": (_fields(id=["list", "id"]), "bad_request"),
    # weights
    "weights file missing": (_fields(weights="w-missing"), "missing_file"),
    "weights truncated": (_fields(weights="w-truncated"), "size_mismatch"),
    "weights altered (sha256)": (_fields(weights="w-altered"), "sha_mismatch"),
    "weights of another architecture": (_fields(weights="w-reshaped"), "architecture_mismatch"),
    "pickle posing as safetensors": (_fields(weights="w-pickle"), "corrupt_weights"),
    # numerics: a learning rate of 1e30 makes the real optimisation blow up within a step or two
    "NaN from an absurd learning rate": (_fields(overrides={"stages": [[3, 1e30, 1e30]]}), "diverged"),
}


@pytest.mark.parametrize("name", sorted(BAD_JOBS))
def test_bad_job_is_one_error_and_nothing_written(setup, name: str, tmp_path: Path) -> None:
    backend, tiny, files = setup
    build, code = BAD_JOBS[name]
    photo = files / "photo.png"
    if not photo.exists():
        _save(files, "photo.png", _rgba_object())
    out = tmp_path / "öut put"
    fields = build(files, photo)
    job_id = f"bad-{name}" if "id" not in fields else None
    message = {**tiny.job("meshinversion", photo, out), "id": job_id, **fields}
    backend.send(message)
    error = job_outcome(backend, job_id) if job_id else backend.expect("error", timeout=30)
    assert is_one_line_error(error) and error["code"] == code, error
    assert error.get("hint") and len(error["message"]) < 400, error
    assert not out.exists() and leftovers(tmp_path) == []
    assert alive(backend)
    if name == "mask file missing":
        assert error["message"].startswith("mask file not found")  # was: "image file not found"
    if code == "architecture_mismatch":
        assert sorted(load_file(tiny.root / "w-reshaped.safetensors"))[0] in error["message"]
    assert not (tiny.root / "executed").exists()  # the pickle was never run


def test_gan2shape_absurd_learning_rate_ends_with_a_message(setup, tmp_path: Path) -> None:
    backend, tiny, files = setup
    photo = _save(files, "g2s.png", _rgba_object())
    job = tiny.job("gan2shape", photo, tmp_path / "out", id="g2s-nan")
    job["overrides"]["lr"] = 1e30
    backend.send(job)
    error = job_outcome(backend, "g2s-nan")
    assert error["type"] == "error" and error["code"] == "diverged" and "nan" in error["message"].lower()
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_non_ascii_paths_with_spaces_work(setup, tmp_path: Path) -> None:
    backend, tiny, _ = setup
    folder = tmp_path / "Fotos für 3D — 車"
    folder.mkdir()
    photo = _save(folder, "mein Auto 01.png", _rgba_object())
    out = tmp_path / "Ergebnis mit Leerzeichen ✓"
    backend.send(tiny.job("meshinversion", photo, out, id="unicode"))
    result = job_outcome(backend, "unicode")
    assert result["type"] == "result", result
    assert Path(result["files"]["mesh.npz"]) == out / "mesh.npz" and (out / "mesh.npz").is_file()
    assert "mein Auto 01.png" in (out / "result.json").read_text(encoding="utf-8")


def test_existing_output_is_never_overwritten(setup, tmp_path: Path) -> None:
    backend, tiny, files = setup
    photo = _save(files, "keep.png", _rgba_object())
    out = tmp_path / "previous result"
    out.mkdir()
    (out / "mesh.npz").write_bytes(b"the artist's earlier work")
    backend.send(tiny.job("meshinversion", photo, out, id="exists"))
    error = job_outcome(backend, "exists")
    assert error["code"] == "output_exists" and "--overwrite" in error["hint"]
    assert (out / "mesh.npz").read_bytes() == b"the artist's earlier work"
    progress = [m for m in backend.seen if m.get("job") == "exists" and m["type"] == "progress"]
    assert progress == []  # refused before any work, not after minutes of optimisation


def test_cuda_without_cuda_is_a_clear_error_and_auto_falls_back(setup, tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here; this checks a CPU-only machine")
    backend, tiny, files = setup
    photo = _save(files, "dev.png", _rgba_object())
    backend.send(tiny.job("meshinversion", photo, tmp_path / "cuda", id="cuda", device="cuda"))
    error = job_outcome(backend, "cuda")
    assert error["code"] == "no_cuda" and "cpu" in error["hint"] and not (tmp_path / "cuda").exists()
    backend.send(tiny.job("meshinversion", photo, tmp_path / "auto", id="auto", device="auto"))
    result = job_outcome(backend, "auto")
    assert result["type"] == "result" and result["summary"]["device"] == "cpu"


def test_huge_photo_is_downscaled_and_the_camera_maps_to_the_original(setup, tmp_path: Path) -> None:
    """A 4800x3600 photo (17 MP) is reconstructed, not refused; the result's camera still frames the
    object in the ORIGINAL pixels, so Blender can overlay the untouched photo."""
    backend, tiny, files = setup
    big = np.zeros((3600, 4800, 4), np.uint8)
    big[..., :3] = 90
    big[900:2700, 1200:3600] = (200, 50, 50, 255)
    photo = _save(files, "huge.png", big, compress_level=1)
    backend.send(tiny.job("meshinversion", photo, tmp_path / "out", id="huge"))
    result = job_outcome(backend, "huge")
    assert result["type"] == "result", result
    document = json.loads((tmp_path / "out" / "result.json").read_text())
    camera = document["camera"]
    assert camera["image_size"] == [4800, 3600]
    x0, y0, side = camera["crop_box"]
    assert x0 < 1200 and y0 < 900 and x0 + side > 3600 and y0 + side > 2700  # the object, in file pixels
    assert side < 3200 and any("downscaled from 4800x3600" in note for note in document["notes"])


@pytest.mark.parametrize("channels", [3, 4])
def test_16_bit_colour_png_loads_with_its_alpha(tmp_path: Path, channels: int) -> None:
    """16-bit RGB(A) PNGs (OpenCV writes them; Pillow reads them as 8-bit): loaded, alpha kept."""
    import cv2

    from backend.inputs import load_input

    image = np.full((48, 64, channels), 20000, np.uint16)
    image[12:36, 16:48, :3] = 60000
    if channels == 4:
        image[..., 3] = 0
        image[12:36, 16:48, 3] = 65535
    cv2.imwrite(str(tmp_path / "deep.png"), image)
    loaded = load_input(tmp_path / "deep.png", mask="alpha" if channels == 4 else "none")
    assert loaded.rgb.shape == (48, 64, 3) and loaded.rgb[20, 30].min() > 0.85
    assert loaded.rgb[2, 2].max() < 0.4
    if channels == 4:
        assert loaded.mask[12:36, 16:48].all() and loaded.mask.sum() == 24 * 32
