"""The benchmark metrics against cases worked out by hand, and the split guard of run_all."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import run_all
from metrics import (
    chamfer_l2,
    ciede2000,
    depth_metrics,
    mask_iou,
    masked_psnr,
    masked_ssim,
    normalise_scale,
    scatter_depth,
    srgb_to_lab,
)

from backend.methods.gan2shape.depthmap import focal_length
from backend.render.primitives import sample_surface


def test_mask_iou_overlapping_squares_and_empty_pair() -> None:
    predicted = torch.zeros(2, 4, 4, dtype=torch.bool)
    truth = torch.zeros(2, 4, 4, dtype=torch.bool)
    predicted[0, :2, :2] = True  # 4 pixels
    truth[0, :2, :3] = True  # 6 pixels, 4 shared -> IoU 4 / 6
    iou = mask_iou(predicted, truth)
    assert iou[0].item() == pytest.approx(2 / 3)
    assert iou[1].item() == 1.0  # both empty: the masks agree


def test_mask_iou_disjoint_is_zero() -> None:
    predicted = torch.zeros(1, 3, 3, dtype=torch.bool)
    truth = torch.zeros(1, 3, 3, dtype=torch.bool)
    predicted[0, 0, 0], truth[0, 2, 2] = True, True
    assert mask_iou(predicted, truth).item() == 0.0


def test_chamfer_hand_computed() -> None:
    a = torch.tensor([[0.0, 0.0, 0.0]])
    b = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    # a -> b: nearest squared distance 1; b -> a: mean of 1 and 4 = 2.5
    assert chamfer_l2(a, b) == pytest.approx(3.5)
    assert chamfer_l2(b, a) == pytest.approx(3.5)


def test_normalise_scale_unit_rms_radius_and_invariance() -> None:
    points = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [3, 0, 0], [-3, 0, 0]]) + torch.tensor([5.0, 2, -1])
    normalised = normalise_scale(points)
    expected = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [3, 0, 0], [-3, 0, 0]]) / math.sqrt(5)  # RMS radius
    torch.testing.assert_close(normalised, expected)
    assert chamfer_l2(normalise_scale(points), normalise_scale(3 * points - 7)) == pytest.approx(0, abs=1e-10)


def test_masked_psnr_ignores_pixels_outside_the_mask() -> None:
    predicted = torch.full((2, 2, 3), 0.5)
    truth = torch.full((2, 2, 3), 0.6)
    truth[1, 1] = 0.0  # a large error, but outside the mask
    mask = torch.tensor([[True, True], [True, False]])
    assert masked_psnr(predicted, truth, mask) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    assert math.isnan(masked_psnr(predicted, truth, torch.zeros(2, 2, dtype=torch.bool)))


def test_sample_surface_inside_faces_and_by_area() -> None:
    vertices = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [10, 0, 0], [13, 0, 0], [10, 2, 0]])
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])  # areas 0.5 and 3
    points = sample_surface(vertices, faces, 7000, torch.Generator().manual_seed(0))
    assert torch.all(points[:, 2] == 0)
    small = points[:, 0] < 5
    inside_small = (points[small, :2] >= 0).all(-1) & (points[small, :2].sum(-1) <= 1 + 1e-6)
    assert bool(inside_small.all())
    assert small.float().mean().item() == pytest.approx(0.5 / 3.5, abs=0.02)


def test_scatter_depth_places_values_with_offset() -> None:
    depth = scatter_depth(torch.tensor([0, 5]), torch.tensor([1.0, 2.0]), (1, 2, 3), 3.0)
    expected = torch.tensor([[[4.0, 0, 0], [0, 0, 5.0]]])
    torch.testing.assert_close(depth, expected)


def test_split_guard_refuses_weights_trained_on_held_out_seeds() -> None:
    manifest = {"weights": [{"id": "leaky", "train_command": "python -m workbench.train x --cars 1000010"}]}
    with pytest.raises(SystemExit, match="held-out"):
        run_all.check_split(manifest)
    fine = {"weights": [{"id": "ok", "train_command": "python -m workbench.train x --cars 1536"}]}
    assert run_all.check_split(fine)["training_seed_ranges"] == {"ok": [0, 1535]}


def test_resume_reuses_a_row_only_while_its_weights_and_preset_are_unchanged(tmp_path, monkeypatch) -> None:
    from backend.methods.meshinversion.options import Options

    monkeypatch.setattr(run_all, "PART_CACHE", tmp_path)
    inputs = run_all.part_inputs("mi-fast")
    assert inputs["preset"] == "fast" and len(inputs["weights"]) >= 1
    cached = {"rows": [], "seconds_per_image_median": 1.0, "commit": "abc", "inputs": inputs}
    (tmp_path / "mi-fast-3.json").write_text(run_all.json.dumps(cached))
    assert run_all.run_part("mi-fast", 3, resume=True)["reused"] is True
    changed = {**Options.PRESETS["fast"], "latent_weight": 123.0}
    monkeypatch.setitem(Options.PRESETS, "fast", changed)
    assert run_all.part_inputs("mi-fast") != inputs
    ran = []
    monkeypatch.setattr(run_all.subprocess, "run", lambda command, **_: ran.append(command))
    with pytest.raises(FileNotFoundError):  # the stale row is not reused: a fresh child is started
        run_all.run_part("mi-fast", 3, resume=True)
    assert ran and "--part" in ran[0]


@pytest.mark.parametrize(
    ("lab1", "lab2", "expected"),
    [  # Sharma, Wu and Dalal (2005), the CIEDE2000 test data
        ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
        ((50.0, 2.5, 0.0), (50.0, 0.0, -2.5), 4.3065),
        ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
        ((22.7233, 20.0904, -46.694), (23.0331, 14.973, -42.5619), 2.0373),
        ((2.0776, 0.0795, -1.135), (0.9033, -0.0636, -0.5514), 0.9082),
    ],
)
def test_ciede2000_matches_the_published_test_pairs(lab1, lab2, expected) -> None:
    value = ciede2000(torch.tensor(lab1, dtype=torch.float64), torch.tensor(lab2, dtype=torch.float64))
    assert float(value) == pytest.approx(expected, abs=1e-4)


def test_srgb_to_lab_white_black_and_red() -> None:
    f64 = torch.float64
    lab = srgb_to_lab(torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=f64))
    torch.testing.assert_close(lab[0], torch.tensor([100.0, 0.0, 0.0], dtype=f64), atol=0.05, rtol=0)
    torch.testing.assert_close(lab[1], torch.zeros(3, dtype=f64), atol=1e-6, rtol=0)
    torch.testing.assert_close(lab[2], torch.tensor([53.24, 80.09, 67.20], dtype=f64), atol=0.1, rtol=0)


def test_masked_ssim_is_one_for_equal_images_and_falls_with_noise() -> None:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(32, 32, 3, generator=g)
    mask = torch.zeros(32, 32, dtype=torch.bool)
    mask[8:24, 8:24] = True
    assert masked_ssim(image, image, mask) == pytest.approx(1.0, abs=1e-6)
    noisy = (image + 0.2 * torch.randn(32, 32, 3, generator=g)).clamp(0, 1)
    assert masked_ssim(noisy, image, mask) < 0.9
    assert math.isnan(masked_ssim(image, image, torch.zeros(32, 32, dtype=torch.bool)))


def test_side_is_scale_invariant_and_mad_sees_shape():
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    gt = (1.0 + 0.001 * ((rows - 16) ** 2 + (cols - 16) ** 2) ** 0.5)[None]
    valid = torch.ones(1, 32, 32)
    same = depth_metrics(gt * 1.05, gt, valid)
    assert same["side"] < 1e-6
    assert same["mad"] < 0.5
    flat = depth_metrics(torch.ones_like(gt), gt, valid)
    assert flat["side"] > 1e-3
    # A cone rising 0.001 per pixel; a pixel spans 1 / focal at depth 1: the slope angle everywhere.
    assert flat["mad"] == pytest.approx(math.degrees(math.atan(0.001 * focal_length(32))), rel=0.1)
