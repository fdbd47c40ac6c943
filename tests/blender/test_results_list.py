"""The panel's list of this session's results and Reconstruct Again, on the installed extension with the
real backend: an entry per reconstruction (thumbnail made before the result files go), a second object
with the next seed beside an untouched first, a deleted object drawn as gone, the list emptied by
loading a file and its thumbnails freed when the add-on is disabled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def scenario(
    tmp_path_factory: pytest.TempPathFactory, extension_zip: Path, tools: Any, backend_case: Any
) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("results-list")
    photo = tools.photo(work / "toy car.png")
    return tools.scenario("results_list", backend_case.scenario_args(extension_zip, photo), work / "user")


def test_a_reconstruction_is_listed_with_its_thumbnail(scenario: dict[str, Any], backend_case: Any) -> None:
    entry, first = scenario["entry"], scenario["first"]
    props = first["properties"]
    assert entry["object"] == first["name"] == "toy car"
    assert entry["result"] == props["rfi_result"]
    assert (entry["method"], entry["preset"], entry["seed"]) == (backend_case.method, "fast", 3)
    assert (props["rfi_method"], props["rfi_preset"], props["rfi_seed"]) == (backend_case.method, "fast", 3)
    assert entry["seconds"] == pytest.approx(props["rfi_timings"]["total_s"]) and entry["seconds"] > 0
    assert entry["result_files"] == ["mask.png", "result.json"]  # made from preview.png before it went
    assert min(entry["thumbnail_size"]) >= 16 and max(entry["thumbnail_size"]) <= 96
    assert scenario["thumbnail_spread"] > 0.02  # a picture, not the grey stand-in
    assert scenario["image_files"] == ["texture.png", "toy car.png"]  # no thumbnail image stayed
    drawn = scenario["drawn_one"]
    assert drawn[:2] == ["icon:0", "label:toy car"]  # no icons in background mode
    label = "MeshInversion" if backend_case.method == "meshinversion" else "GAN2Shape"
    assert f"label:{label}, Fast, seed 3" in drawn
    assert "op:rfi.show_result" in drawn and "op:rfi.reconstruct_again" in drawn


def test_reconstruct_again_adds_an_object_with_the_next_seed(
    scenario: dict[str, Any], backend_case: Any
) -> None:
    """Asked to turn front and back: MeshInversion's second job starts from the other side, GAN2Shape's
    (a relief of the one view) runs as the first did."""
    second, first = scenario["second"], scenario["first"]
    again, before = scenario["overrides"]
    assert again == ({**before, "turn_start": True} if backend_case.method == "meshinversion" else before)
    assert scenario["entry"]["next_seed"] == 4
    assert second["name"] != first["name"] and second["properties"]["rfi_seed"] == 4
    assert second["properties"]["rfi_preset"] == "fast"
    assert second["properties"]["rfi_image"] == first["properties"]["rfi_image"]
    assert second["properties"]["rfi_result"] != first["properties"]["rfi_result"]
    assert second["texture"] != first["texture"] and second["material"] != first["material"]
    assert scenario["first_after"] == first  # the first object untouched
    assert scenario["entries"] == [[second["name"], 4, "fast"], [first["name"], 3, "fast"]]  # newest first


def test_deleted_object_is_drawn_as_gone_and_renamed_one_found(scenario: dict[str, Any]) -> None:
    drawn = scenario["drawn_deleted"]
    assert "label:renamed" in drawn and "label:toy car (deleted)" in drawn
    assert drawn.count("op:rfi.show_result") == 1 and drawn.count("op:rfi.show_result (disabled)") == 1
    assert drawn.count("op:rfi.reconstruct_again") == 2  # the request is still there
    assert scenario["show"] and scenario["active"] == "renamed" and scenario["poll"]


def test_loading_a_file_empties_the_list_and_disabling_frees_thumbnails(scenario: dict[str, Any]) -> None:
    assert scenario["after_load"] == {"entries": 0, "thumbnails": 0, "poll": False}
    assert scenario["after_disable"] == {"collection": True, "thumbnails": 0, "closed": True}


def test_the_list_keeps_the_newest_eight(tmp_path: Path, extension_zip: Path, tools: Any) -> None:
    result = tmp_path / "result"
    result.mkdir()
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1]], np.float32)
    uvs = np.array([[[0, 0], [1, 0], [0, 1]]], np.float32)
    np.savez(result / "mesh.npz", vertices=vertices, faces=np.array([[0, 1, 2]], np.int32), uvs=uvs)
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8), "RGB").save(result / "texture.png")
    photo = tools.photo(tmp_path / "photo.png")
    args = {"zip": str(extension_zip), "result": str(result), "photo": str(photo)}
    out = tools.scenario("results_cap", args, tmp_path / "user")
    assert out["names"] == ["again", "r8", "r7", "r6", "r5", "r4", "r3", "r2"]  # r9's folder again: once
    assert out["thumbnails"] == sorted(out["results"]) and len(set(out["results"])) == 8
    assert out["next_seed"] == 10  # above every seed this photo and method used
