"""The installed extension end to end: operator, real backend subprocess, import, render, batch."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from backend.published_terms import PUBLISHED_TERMS

pytestmark = pytest.mark.slow


def not_blank(path: Path) -> float:
    """Spread of the rendered pixels; a blank or single-colour render has ~0."""
    pixels = np.asarray(Image.open(path).convert("RGB"), np.float32)
    return float(pixels.reshape(-1, 3).std(axis=0).max())


@pytest.mark.parametrize("method", ["meshinversion", "gan2shape"])
def test_reconstruct_operator_imports_the_backend_result(
    tmp_path: Path, extension_zip: Path, tools: Any, backend_cases: dict[str, Any], method: str
) -> None:
    backend_case = backend_cases[method]
    photo = tools.photo(tmp_path / "toy car.png")
    render = tmp_path / "render.png"
    out = tools.scenario(
        "reconstruct",
        {
            "zip": str(extension_zip),
            "python": tools.backend_python,
            "weights_dir": backend_case.weights_dir,
            "image": str(photo),
            "render": str(render),
            "user": str(tmp_path / "user"),
            "settings": backend_case.settings(),
        },
        tmp_path / "user",
    )
    result = Path(out["result_dir"])
    with np.load(result / "mesh.npz") as mesh:
        assert (out["vertices"], out["faces"]) == (len(mesh["vertices"]), len(mesh["faces"]))
        np.testing.assert_allclose(out["uvs"], mesh["uvs"], atol=1e-6)
    texture = np.asarray(Image.open(result / "texture.png").convert("RGB"), np.float32) / 255
    np.testing.assert_allclose(np.array(out["texture"]), texture, atol=1e-3)  # the backend's own pixels
    info = json.loads((result / "result.json").read_text())
    assert out["name"] == "toy car"
    assert out["uv_layers"] == ["UVMap"] and out["texture_linked"] and out["texture_packed"]
    assert out["selected"] and out["active"]
    props = out["properties"]
    assert props["rfi_method"] == backend_case.method and props["rfi_seed"] == 3
    assert props["rfi_weights"] == info["weights"]["id"] and props["rfi_preset"] == "fast"
    assert (
        f"{info['weights']['id']} ({info['weights']['category']})" in out["weights_items"]
    )  # from the handshake
    # No VGG weights in the test's store: the panel says which published terms will be off.
    terms = [t.term for t in PUBLISHED_TERMS if t.method == backend_case.method]
    assert [text for text in out["drawn"] if text.endswith("off: its weights are not imported")] == [
        f"label:{term} off: its weights are not imported" for term in terms
    ]
    assert props["rfi_timings"]["total_s"] > 0
    assert out["camera"] == {"name": "toy car view", "type": info["camera"]["type"], "backgrounds": 1}
    assert not_blank(render) > 5
    assert out["overlay_iou"] > 0.6  # the aligned camera lays the mesh over the photo's object


def test_cancel_and_kill_midway_then_recover(
    tmp_path: Path, extension_zip: Path, tools: Any, backend_case: Any
) -> None:
    photo = tools.photo(tmp_path / "photo.png")
    out = tools.scenario("interrupt", backend_case.scenario_args(extension_zip, photo), tmp_path / "user")
    assert out["cancel"]["state"] == "cancelled" and out["cancel"]["same_process"]  # cancelled between steps
    assert out["cancel"]["seconds"] < 10
    assert out["kill"]["state"] == "failed" and out["kill"]["code"] == "backend_crashed"
    assert "stopped unexpectedly" in out["kill"]["line"] and "restarts" in out["kill"]["line"]
    assert out["after"]["object"] == "photo" and out["after"]["new_pid"] != out["kill"]["old_pid"]
    assert out["after"]["stopped_on_disable"]


def test_bad_image_is_one_line_with_a_hint(
    tmp_path: Path, extension_zip: Path, tools: Any, backend_case: Any
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(tools.photo(tmp_path / "ok.png").read_bytes()[:120])  # a truncated PNG
    out = tools.scenario(
        "bad_image",
        {
            "zip": str(extension_zip),
            "python": tools.backend_python,
            "weights_dir": backend_case.weights_dir,
            "image": str(broken),
            "settings": backend_case.settings(),
        },
        tmp_path / "user",
    )
    assert out["objects"] == 0
    assert (
        "backend Python not found: /nonexistent/python" in out["no_python"]
        and "Set up backend" in out["no_python"]
    )
    assert "broken.png" in out["message"] and "(" in out["message"] and "\n" not in out["message"].strip()


def test_batch_script_end_to_end(tmp_path: Path, extension_zip: Path, tools: Any, backend_case: Any) -> None:
    user = tmp_path / "user"
    installed = tools.scenario("install", {"zip": str(extension_zip)}, user)
    assert installed["panels"] == [True, True]
    assert installed["online_access"] is False and installed["setup_allowed"] is False
    drawn = installed["drawn"]
    for item in (
        "prop:filepath",
        "prop:mask_image",
        "prop:weights",
        "prop:texture_size",
        "op:rfi.reconstruct",
        "progress:optimise 5/10",
        "prop:backend_python",
        "op:rfi.setup_backend",
        "op:rfi.check_backend",
    ):
        assert item in drawn, item
    inputs = tmp_path / "in"
    inputs.mkdir()
    tools.photo(inputs / "car.png")
    (inputs / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    env = tools.env(user)
    env["RFI_WEIGHTS_DIR"] = backend_case.weights_dir
    proc = subprocess.run(
        [
            tools.bpy_python,
            installed["batch"],
            "--input",
            str(inputs),
            "--output",
            str(tmp_path / "out"),
            "--seed",
            "3",
            *backend_case.batch_args(),
            "--save-blend",
            "--export",
            "glb",
            "--preview",
            "--quads",
            "--backend-python",
            tools.backend_python,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one of two images failed
    assert "1 of 2 reconstructed, 1 failed" in proc.stdout
    rows = {
        line.split()[0]: line
        for line in proc.stdout.splitlines()
        if line.startswith(("car.png", "corrupt.png"))
    }
    assert " ok " in rows["car.png"] and " failed " in rows["corrupt.png"]
    out = tmp_path / "out"
    for name in ("car.blend", "car.glb", "car_preview.png", "car/mesh.npz", "car/result.json"):
        assert (out / name).is_file(), name
    assert (out / "car.glb").read_bytes()[:4] == b"glTF"
    assert not_blank(out / "car_preview.png") > 5
    with np.load(out / "car" / "mesh.npz") as mesh:  # --quads: the summary counts the polygons imported
        assert f" {len(mesh['polygon_sizes'])} " in rows["car.png"] and (mesh["polygon_sizes"] == 4).any()
    assert not (out / "corrupt").exists()
