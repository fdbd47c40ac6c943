"""The salient-object mask net (U^2-Net-p from the pinned wheel, run with onnxruntime) on real files:
eval cars against their true masks (two that failed before issue 22 among them), a real photo
through the command line, the GrabCut fallback when the net is missing, the box choosing among
several objects, and the clean-up steps on synthetic pictures."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend import salient_mask
from backend.doctor import _salient_check
from backend.inputs import grabcut_mask, load_input
from backend.protocol import UserError

ROOT = Path(__file__).resolve().parents[2]
EVAL = ROOT / "examples" / "eval"
PHOTO = ROOT / "tests" / "data" / "coffee.jpg"
"""A real photo (scikit-image's ``coffee``, CC0, downscaled to 300x200): a cup on a saucer on a table."""


def true_mask(index: int) -> np.ndarray:
    with np.load(EVAL / "ground_truth.npz") as data:
        return data["mask"][index]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture
def net_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on an installation without the wheel: its distribution cannot be found."""
    monkeypatch.setattr(salient_mask, "MODEL_DISTRIBUTION", "rfi-no-such-distribution")


@pytest.mark.parametrize("index", [8, 10])
def test_net_finds_eval_cars(index: int) -> None:
    photo = EVAL / f"car_eval_{index:03d}.png"
    image = load_input(photo, mask="salient")
    assert image.mask_source == "salient" and iou(image.mask, true_mask(index)) >= 0.97
    auto = load_input(photo)  # no alpha channel: auto runs the net
    assert auto.mask_source == "salient" and any("salient-object net" in note for note in auto.notes)
    np.testing.assert_array_equal(auto.mask, image.mask)


@pytest.mark.parametrize("index", [4, 19])
def test_auto_finds_cars_beside_salient_clutter(index: int) -> None:
    """Eval car 4 lies between a larger salient ellipse and a box (the largest component was the
    ellipse: IoU 0), car 19 touches a salient box the net merged with it (0.63)."""
    image = load_input(EVAL / f"car_eval_{index:03d}.png")  # no alpha channel: auto runs the net
    assert image.mask_source == "salient" and iou(image.mask, true_mask(index)) >= 0.97


def test_auto_falls_back_to_grabcut_without_the_net(net_missing: None) -> None:
    photo = EVAL / "car_eval_008.png"
    image = load_input(photo, mask="auto")
    assert image.mask_source == "grabcut"
    missing = "rfi-no-such-distribution is not installed"
    assert any("GrabCut" in note and missing in note for note in image.notes)
    np.testing.assert_array_equal(image.mask, grabcut_mask(image.rgb))
    with pytest.raises(UserError) as err:
        load_input(photo, mask="salient")
    assert err.value.code == "salient_unavailable" and "grabcut" in err.value.hint
    status, text = _salient_check()
    assert status == "--" and "GrabCut" in text


def test_auto_falls_back_when_the_net_finds_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """``auto`` uses GrabCut, with a note, where the net's soft mask is empty; ``salient`` refuses."""
    monkeypatch.setattr(salient_mask, "soft_mask", lambda rgb: np.zeros(rgb.shape[:2], np.float32))
    photo = EVAL / "car_eval_008.png"
    image = load_input(photo)
    assert image.mask_source == "grabcut" and any("found no object" in note for note in image.notes)
    np.testing.assert_array_equal(image.mask, grabcut_mask(image.rgb))
    with pytest.raises(UserError) as err:
        load_input(photo, mask="salient")
    assert err.value.code == "empty_mask"


def test_auto_falls_back_without_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    salient_mask._session.cache_clear()
    try:
        image = load_input(EVAL / "car_eval_010.png")
    finally:
        salient_mask._session.cache_clear()
    assert image.mask_source == "grabcut" and any("onnxruntime is not installed" in n for n in image.notes)


def test_doctor_reports_the_net() -> None:
    status, text = _salient_check()
    assert status == "ok" and "U^2-Net-p" in text and "onnxruntime" in text


def test_box_picks_the_object_under_it(tmp_path: Path) -> None:
    """Two cars side by side: without a box the larger one, with a box the one it is drawn on."""
    left, right = 8, 10
    pair = np.concatenate([np.asarray(Image.open(EVAL / f"car_eval_{i:03d}.png")) for i in (left, right)], 1)
    Image.fromarray(pair).save(tmp_path / "pair.png")
    truths = [np.pad(true_mask(left), ((0, 0), (0, 256))), np.pad(true_mask(right), ((0, 0), (256, 0)))]
    larger = int(np.argmax([t.sum() for t in truths]))
    alone = load_input(tmp_path / "pair.png", mask="salient")
    assert iou(alone.mask, truths[larger]) >= 0.95
    for side, truth in enumerate(truths):
        box = [256 * side + 40, 60, 256 * side + 216, 200]
        for source in ("salient", "auto"):
            boxed = load_input(tmp_path / "pair.png", mask=source, box=box)
            assert boxed.mask_source == "salient" and iou(boxed.mask, truth) >= 0.95, (side, source)


def test_box_outside_the_image_is_refused() -> None:
    with pytest.raises(UserError) as err:
        load_input(EVAL / "car_eval_008.png", mask="salient", box=[300, 300, 400, 400])
    assert err.value.code == "bad_box"


def test_one_object_keeps_a_component_and_fills_its_holes() -> None:
    mask = np.zeros((40, 60), bool)
    mask[5:25, 5:25] = True  # the larger square, with a hole
    mask[12:18, 12:18] = False
    mask[30:36, 40:50] = True  # a smaller bar
    mask[0:3, 30:33] = True  # a speck touching the border
    square = np.zeros_like(mask)
    square[5:25, 5:25] = True
    np.testing.assert_array_equal(salient_mask.one_object(mask), square)
    bar = np.zeros_like(mask)
    bar[30:36, 40:50] = True
    np.testing.assert_array_equal(salient_mask.one_object(mask, (38, 28, 60, 40)), bar)
    assert not salient_mask.one_object(mask, (50, 0, 60, 10)).any()  # nothing under the box
    assert not salient_mask.one_object(np.zeros_like(mask)).any()


def test_one_object_prefers_the_centre() -> None:
    """A larger shape off to the side loses against the object in the middle, unless sigma is infinite."""
    mask = np.zeros((100, 100), bool)
    mask[40:60, 35:65] = True  # 600 pixels, centred
    mask[80:100, 0:50] = True  # 1000 pixels, in a corner
    centred = mask.copy()
    centred[80:] = False
    np.testing.assert_array_equal(salient_mask.one_object(mask), centred)
    assert salient_mask.one_object(mask, centre_sigma=math.inf)[90, 10]


def test_solidity() -> None:
    square = np.pad(np.ones((20, 20), bool), 10)
    ell = square.copy()
    ell[10:20, 20:30] = False
    assert salient_mask.solidity(square) == pytest.approx(1.0)
    assert salient_mask.solidity(ell) < 0.85
    assert salient_mask.solidity(np.zeros_like(square)) == 0.0


def shaded_car_with_a_bar() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A shaded ellipse (the object) in the middle of a grey picture with a flat blue bar standing on
    its right end; the soft mask says both are object, as the net does for salient clutter."""
    ys, xs = np.mgrid[:160, :160] / 160
    car = ((xs - 0.5) / 0.3) ** 2 + ((ys - 0.6) / 0.15) ** 2 < 1
    bar = (xs > 0.72) & (xs < 0.85) & (ys > 0.15) & (ys < 0.55)
    rgb = np.full((160, 160, 3), 0.5, np.float32)
    rgb[car] = np.stack([0.9 - 0.5 * ys, 0.2 + 0.3 * xs, 0.1 + 0 * xs], -1)[car]
    rgb[bar & ~car] = (0.1, 0.2, 0.9)
    soft = (car | bar).astype(np.float32)
    return rgb, soft, car


def test_cut_merged_cuts_off_a_flat_bar() -> None:
    rgb, soft, car = shaded_car_with_a_bar()
    found = soft >= 0.5
    assert iou(found, car) < 0.9
    assert iou(salient_mask.cut_merged(rgb, soft, found), car) >= 0.97


def test_snap_moves_the_outline_onto_edges() -> None:
    rgb, _, car = shaded_car_with_a_bar()
    shifted = np.roll(car, 2, axis=1)  # the net's outline, 2 pixels off
    snapped = salient_mask.snap(rgb, shifted)
    assert iou(snapped, car) > iou(shifted, car) and iou(snapped, car) >= 0.98


def test_soft_mask_shape_and_range() -> None:
    rgb = np.asarray(Image.open(PHOTO), np.float32) / 255
    soft = salient_mask.soft_mask(rgb)
    assert soft.shape == (200, 300) and soft.dtype == np.float32
    assert soft.min() == pytest.approx(0.0, abs=1e-3) and soft.max() == pytest.approx(1.0, abs=1e-3)


@pytest.mark.slow
def test_real_photo_through_the_command_line(tmp_path: Path) -> None:
    """A JPEG photo (no alpha) with the shipped MeshInversion demo weights and a short schedule: the
    result holds the mask that was used, at the photo's size, and names the net as its source."""
    short = {
        "render_size": 64, "z_candidates": 8, "rendered_candidates": 2, "azimuths": 4, "elevations": [0.0],
        "camera_keep": 1, "camera_refine_steps": 2, "stages": [[3, 0.1, 0.01]], "refine_steps": 2,
        "chamfer_points": 256, "chunk": 8,
    }  # fmt: skip
    sets = [arg for key, value in short.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "backend", "reconstruct", str(PHOTO), "--method", "meshinversion",
         "--preset", "fast", *sets, "-o", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads((out / "result.json").read_text())
    assert doc["input"]["mask"] == "auto" and doc["input"]["mask_resolved"] == "salient"
    assert any("salient-object net" in note for note in doc["notes"])
    assert "mask.png" in doc["files"] and sorted(doc["files"]) == sorted(p.name for p in out.iterdir())
    with Image.open(out / "mask.png") as saved:
        assert saved.mode == "L" and saved.size == (300, 200)
        mask = np.asarray(saved)
    assert set(np.unique(mask)) == {0, 255}
    np.testing.assert_array_equal(mask == 255, load_input(PHOTO).mask)
    assert 0.2 < (mask == 255).mean() < 0.8 and mask[100, 150] == 255 and mask[5, 5] == 0  # cup, not table
