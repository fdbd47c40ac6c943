"""The importer inside bpy, from the real extension zip, on a result folder written here."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow


def write_result(folder: Path, camera: dict) -> dict[str, np.ndarray]:
    """A tetrahedron with distinct per-corner UVs, a random texture and a camera, as the backend writes."""
    folder.mkdir()
    rng = np.random.default_rng(3)
    vertices = np.array([[0, 0, 0.5], [0.5, 0, -0.3], [-0.4, 0.3, -0.3], [-0.1, -0.45, -0.3]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3], [0, 3, 1], [1, 3, 2]], np.int32)
    uvs = rng.uniform(0, 1, (4, 3, 2)).astype(np.float32)
    texture = rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)
    np.savez(folder / "mesh.npz", vertices=vertices, faces=faces, uvs=uvs)
    Image.fromarray(texture, "RGB").save(folder / "texture.png")
    info = {
        "method": "meshinversion",
        "weights": {"id": "demo"},
        "preset": "fast",
        "seed": 7,
        "timings": {"run": 1.5},
        "camera": camera,
        "input": {"mask": "auto", "mask_resolved": "salient"},
        "notes": ["mask: the salient-object net ran", "start: the camera search ran"],
        "warnings": ["pose: front and back are hard to tell"],
    }
    (folder / "result.json").write_text(json.dumps(info))
    Image.fromarray(np.full((30, 40), 255, np.uint8), "L").save(folder / "mask.png")  # read by no one
    return {"vertices": vertices, "faces": faces, "uvs": uvs, "texture": texture}


# A camera 3 units in front of the object (front = -Y) looking at it; the crop square is off-centre
# in a 400x300 photo: centre (140, 120), side 200 px, spanning 2 world units at the object.
LOOK_FROM_FRONT = [[1, 0, 0, 0], [0, 0, -1, -3], [0, 1, 0, 0], [0, 0, 0, 1]]
CROP = {"crop_box": [40, 20, 200], "image_size": [400, 300]}
PROBES = [[0, 0, 0], [0.5, 0, 0.5], [-0.8, 0, -0.3]]


def expected_view(point: list[float]) -> list[float]:
    """Normalised photo coordinates (x right, y up) of a point on the object's y = 0 plane."""
    px = 140 + 100 * point[0]
    py = 120 - 100 * point[2]
    return [px / 400, 1 - py / 300]


@pytest.mark.parametrize(
    "camera",
    [
        {"type": "ORTHO", "matrix_world": LOOK_FROM_FRONT, "ortho_scale": 2.0, **CROP},
        {"type": "PERSP", "matrix_world": LOOK_FROM_FRONT, "angle": 2 * math.atan(1 / 3), **CROP},
    ],
    ids=["ortho", "persp"],
)
def test_import_result(tmp_path: Path, extension_zip: Path, tools: Any, camera: dict) -> None:
    data = write_result(tmp_path / "result", camera)
    photo = tools.photo(tmp_path / "photo.png")
    out = tools.scenario(
        "import",
        {
            "zip": str(extension_zip),
            "result": str(tmp_path / "result"),
            "photo": str(photo),
            "probe_points": PROBES,
        },
        tmp_path / "user",
    )
    assert out["existing_name"] == "photo"  # nothing existing is renamed
    assert out["resized"] == {"size": [32, 32], "packed": True, "smooth": False}
    assert out["name"] == "photo.001"
    assert (out["vertices"], out["faces"]) == (4, 4)
    assert out["uv_layers"] == ["UVMap"]
    np.testing.assert_allclose(out["uvs"], data["uvs"], atol=1e-6)
    assert out["texture_linked"] and out["texture_packed"]
    np.testing.assert_allclose(np.array(out["texture"]), data["texture"] / 255.0, atol=1e-3)
    assert out["location"] == pytest.approx([1.0, 2.0, 3.0])
    assert out["selected"] and out["active"]
    props = out["properties"]
    assert (props["rfi_method"], props["rfi_weights"], props["rfi_preset"], props["rfi_seed"]) == (
        "meshinversion",
        "demo",
        "fast",
        7,
    )
    assert props["rfi_timings"]["run"] == pytest.approx(1.5) and props["rfi_mask"] == "salient"
    assert out["notes"] == ["mask: the salient-object net ran", "start: the camera search ran"]
    assert out["warnings"] == ["pose: front and back are hard to tell"]
    assert out["camera"]["type"] == camera["type"]
    assert out["camera"]["resolution"] == [400, 300]
    assert out["camera"]["background"] == ["photo.png"]
    for point, projected in zip(PROBES, out["camera"]["projected"], strict=True):
        assert projected == pytest.approx(expected_view(point), abs=1e-4), point


def test_image_sources_become_readable_files(tmp_path: Path, extension_zip: Path, tools: Any) -> None:
    photo = tools.photo(tmp_path / "photo.png")
    out = tools.scenario("sources", {"zip": str(extension_zip), "photo": str(photo)}, tmp_path / "user")
    assert out["file"] == {"image": str(photo), "name": "photo"}  # a file on disk is passed as is
    packed = Path(out["packed"]["image"])
    assert packed != photo and packed.read_bytes() == photo.read_bytes()  # packed bytes, unchanged
    painted = np.asarray(Image.open(out["generated"]["image"]).convert("RGB"))
    assert painted.shape == (16, 32, 3) and (np.abs(painted.astype(int) - [255, 128, 0]) <= 2).all()
    assert out["generated"]["name"] == "painted"
    assert "no image in an Image Editor" in out["no_editor"] and "(" in out["no_editor"]
    assert "no mask image" in out["no_mask"]
    assert out["mask"]["mask"] == "file" and Path(out["mask"]["mask_path"]).is_file()


def test_delit_texture_gets_the_recovered_light(tmp_path: Path, extension_zip: Path, tools: Any) -> None:
    camera = {"type": "PERSP", "matrix_world": LOOK_FROM_FRONT, "angle": 2 * math.atan(1 / 3), **CROP}
    light = {"ambient": 0.55, "diffuse": 0.47, "direction": [0.3, -0.2, 0.93], "towards": [-0.3, -0.8, 0.52],
             "exposure": 1.5}  # the texture holds the linear albedo / 1.5: the light is 1.5 times brighter
    folders = {}
    for texture in ("albedo", "photo"):
        folders[texture] = tmp_path / texture
        write_result(folders[texture], camera)
        info = json.loads((folders[texture] / "result.json").read_text())
        info.update(method="gan2shape", info={"mesh": {"texture": texture}, "light": light})
        (folders[texture] / "result.json").write_text(json.dumps(info))
    out = tools.scenario(
        "delit_import",
        {"zip": str(extension_zip), "delit": str(folders["albedo"]), "photo": str(folders["photo"])},
        tmp_path / "user",
    )
    towards = np.array(light["towards"]) / np.linalg.norm(light["towards"])
    assert out["sun"] == "SUN" and out["collections"]
    np.testing.assert_allclose(out["shines_along"], -towards, atol=1e-5)
    for cosine in (0.0, 0.5, 1.0):  # linear shading ~ the photo's sRGB shading to the power 2.2
        linear = (out["world_colour"][0] + out["energy"] / math.pi * cosine) / light["exposure"]
        assert linear == pytest.approx((light["ambient"] + light["diffuse"] * cosine) ** 2.2, abs=0.05)
    assert out["world"] == "delit light" and out["previous_kept"] and out["specular"] == 0.0
    assert out["plain"] == {"light": False, "world": "delit light", "specular": 0.5}
