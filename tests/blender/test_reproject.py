"""Re-project Photo in Blender: an eval car reconstructed with MeshInversion ``fast``, edited by script
(subdivided, displaced a little), re-projected through the operator, rendered through the aligned
camera in fresh bpy processes (``benchmarks/blender_reproject.py``); then undo, and inputs that must
fail with one line and leave the object as it is."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import blender_reproject

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(
    tmp_path_factory: pytest.TempPathFactory, extension_zip: Path, tools: Any, backend_case: Any
) -> dict[str, Any]:
    if backend_case.weights_dir:
        pytest.skip("no shipped MeshInversion weights: the thresholds are for the trained model")
    work = tmp_path_factory.mktemp("reproject")
    result = blender_reproject.evaluate(
        extension_zip, work, work / "figures", python=tools.bpy_python, env=tools.env(work / "user"),
        backend_python=tools.backend_python,
    )  # fmt: skip
    result["work"] = work
    return result


def test_reprojected_edit_looks_like_the_photo(report: dict[str, Any]) -> None:
    scores = report["scores"]
    identity = report["identity"]  # re-projected without an edit: the look of the reconstruction
    assert identity["iou"] == 1 and identity["psnr"] >= 40, identity
    assert scores["same"]["psnr"] >= scores["before"]["psnr"] - 0.5, scores
    assert scores["edited"]["iou"] < scores["before"]["iou"]  # the edit changed the outline
    assert scores["after"]["psnr"] >= 24, scores
    assert scores["after"]["psnr"] > scores["edited"]["psnr"] + 1, scores  # better than the old texture
    assert (report["work"] / "figures" / "reproject.png").is_file()


def test_unseen_side_keeps_its_texture(report: dict[str, Any]) -> None:
    unseen = report["unseen"]
    assert unseen["fraction_of_texture"] > 0.15, unseen
    assert unseen["max_change"] <= 1 / 255, unseen
    assert report["seen_changed_fraction"] > 0.1, report["seen_changed_fraction"]  # the seen side did change


def test_image_replaced_in_place_and_undone(report: dict[str, Any]) -> None:
    scenario, arrays = report["scenario"], report["work"] / "arrays"
    assert scenario["image_after"]["packed"] and scenario["image_after"]["name"] != scenario["image_before"]
    assert scenario["image_undone"] == scenario["image_before"]
    np.testing.assert_array_equal(np.load(arrays / "undone.npy"), np.load(arrays / "before.npy"))
    assert scenario["image_redone"] == scenario["image_after"]["name"]
    assert "op:rfi.reproject_photo" in scenario["drawn"]
    assert scenario["kept_files"] == ["mask.png", "result.json"]  # results not kept: what re-projection reads
    assert scenario["staging_left"] == [] and scenario["staging_left_after_errors"] == []


def test_failures_are_one_line_and_change_nothing(report: dict[str, Any]) -> None:
    scenario = report["scenario"]
    errors = scenario["errors"]
    expected = {
        "older_protocol": "written by protocol 0",
        "no_camera": "has no usable camera",
        "photo_missing": "car_eval_008.png.gone",
        "result_gone": "result folder of 'car_eval_008' is gone",
        "no_uvs": "has no UV map",
    }
    for case, words in expected.items():
        line = errors[case]
        assert words in line and "(" in line and "\n" not in line, (case, line)
    assert scenario["image_after_errors"] == scenario["image_after"]["name"]
