"""The method end to end: official checkpoints and VGG19 imported through the weights registry,
a photo reconstructed into a valid MeshResult in Blender's frame with an aligned camera, and the
command line on real files."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from backend.categories import CATEGORY_SIZE_M, LENGTH_AXIS, UNIT_BOX, ScaleRule
from backend.inputs import Crop, InputImage
from backend.methods.meshinversion import METHOD
from backend.methods.meshinversion.camera_search import WeakPerspective, view_quaternion
from backend.methods.meshinversion.export import blender_camera, blender_placement
from backend.methods.meshinversion.mesh_gan import MeshGAN, exported_uvs
from backend.methods.meshinversion.method import UNSURE_POSE_BELOW, pose_warnings
from backend.methods.meshinversion.options import Options
from backend.methods.meshinversion.vgg import CONV_CHANNELS, CONV_INDICES
from backend.models import import_official, load_model
from backend.options import preset_options
from backend.render.interpolate import interpolate_corner_attributes, sample_texture
from backend.render.rasterize import rasterize
from backend.results import validate, write_result
from backend.weights import Registry
from tests.meshinversion.helpers import render_photo, small_generator, small_method

ROOT = Path(__file__).resolve().parents[2]
SIZE = 64
TINY_OVERRIDES = {
    "render_size": SIZE, "z_candidates": 8, "rendered_candidates": 4, "azimuths": 6,
    "elevations": [0.0, 25.0], "camera_keep": 2, "camera_refine_steps": 5,
    "stages": [[4, 0.1, 0.01], [3, 0.05, 0.005]], "chamfer_points": 256, "chunk": 16,
}  # fmt: skip


def quiet(*_args, **_kwargs) -> None:
    """A progress callback that never cancels."""


def write_checkpoint(path: Path, n_classes: int = 0, n_colors: int = 0) -> None:
    """An official-layout checkpoint (MeshInversion ``save_checkpoint`` keys) of a small generator; a
    class+colour one stores its arguments as ConvMesh does, the plain dict ``vars(args)``."""
    state = small_generator(n_classes=n_classes, n_colors=n_colors).state_dict()
    args = argparse.Namespace(norm_g="syncbatch", texture_resolution=256, latent_dim=64)
    stored = {"args": vars(args)} if n_colors else {"self.args": args}
    torch.save({"generator": state, "generator_running_avg": state, "epoch": 3, **stored}, path)


def write_vgg(path: Path) -> None:
    """A torchvision-layout VGG19 state dict (random weights; the loss only needs the layout)."""
    g = torch.Generator().manual_seed(0)
    state = {}
    for index, (cin, cout) in zip(CONV_INDICES, CONV_CHANNELS, strict=True):
        state[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * 0.05
        state[f"features.{index}.bias"] = torch.zeros(cout)
    state["features.34.weight"] = torch.zeros(512, 512, 3, 3)
    torch.save(state, path)


def photo_file(tmp_path: Path) -> tuple[Path, InputImage]:
    model = MeshGAN(small_generator())
    rgb, mask, _ = render_photo(
        model, torch.randn(1, 64, generator=torch.Generator().manual_seed(2)), 60.0, 15.0, 96
    )
    canvas = np.ones((120, 160, 3), np.float32)
    alpha = np.zeros((120, 160), np.float32)
    canvas[10:106, 40:136], alpha[10:106, 40:136] = rgb, mask
    rgba = np.concatenate([canvas, alpha[..., None]], axis=-1)
    path = tmp_path / "photo.png"
    Image.fromarray((rgba * 255).round().astype(np.uint8), "RGBA").save(path)
    return path, InputImage(canvas, alpha >= 0.5, str(path))


CAR_METRES = ScaleRule("metres", CATEGORY_SIZE_M["car"], LENGTH_AXIS)


def test_placement_in_metres_and_in_a_unit_box() -> None:
    """Metres: a car's length (along Y, its front to -Y) is its size, bottom centre at the origin;
    unit: centred, largest extent 1 (the output before sizes existed)."""
    g = torch.Generator().manual_seed(1)
    car = (torch.randn(200, 3, generator=g) * torch.tensor([0.4, 0.3, 1.0]) + 0.2).double().numpy()
    metres, _ = blender_placement(car, CAR_METRES)
    extent = np.ptp(metres, axis=0)
    assert 4.0 <= extent[1] <= 5.0 and extent[1] == pytest.approx(4.5) and extent[1] == extent.max()
    assert metres[:, 2].min() == pytest.approx(0.0, abs=1e-5)
    assert np.allclose((metres.max(0) + metres.min(0))[:2] / 2, 0)
    assert metres[np.argmax(car[:, 2]), 1] == metres[:, 1].min()  # the front (+z) is -Y
    unit, _ = blender_placement(car, UNIT_BOX)
    assert np.ptp(unit, axis=0).max() == pytest.approx(1.0)
    assert np.allclose((unit.max(0) + unit.min(0)) / 2, 0)


@pytest.mark.parametrize("rule", [UNIT_BOX, CAR_METRES])
def test_blender_camera_reproduces_the_fitted_view(rule: ScaleRule) -> None:
    g = torch.Generator().manual_seed(0)
    vertices = torch.randn(50, 3, generator=g) * torch.tensor([0.5, 0.3, 0.9]) + torch.tensor(
        [0.1, -0.2, 0.3]
    )
    camera = WeakPerspective(view_quaternion(torch.tensor([2.0]), torch.tensor([0.4])), torch.tensor([0.7]),
                             torch.tensor([[0.1, -0.05]]))  # fmt: skip
    expected = camera.project_xy(vertices[None])[0].double().numpy()
    blender, placement = blender_placement(vertices.double().numpy(), rule)
    crop = Crop(
        np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.float32), [10.0, 20.0, 300.0], [640, 480]
    )
    cam = blender_camera(camera, placement, crop)
    matrix = np.array(cam["matrix_world"])
    axes, position = matrix[:3, :3], matrix[:3, 3]
    assert np.allclose(axes.T @ axes, np.eye(3), atol=1e-6) and np.linalg.det(axes) == pytest.approx(1.0)
    local = (blender - position) @ axes  # world -> camera local
    ndc = 2 * local[:, :2] / cam["ortho_scale"]
    assert np.allclose(ndc, expected, atol=1e-5)
    assert (local[:, 2] < 0).all()  # in front of the camera (it looks along -Z)
    assert (
        cam["type"] == "ORTHO" and cam["crop_box"] == [10.0, 20.0, 300.0] and cam["image_size"] == [640, 480]
    )
    # Blender frame: object up (+y) is +Z, the object's front (+z) is -Y.
    assert blender_placement(np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), rule)[0][1, 2] > 0
    assert blender_placement(np.array([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]), rule)[0][0, 1] < 0


def test_import_run_and_write_through_the_registry(tmp_path: Path) -> None:
    registry = Registry(user_dir=tmp_path / "weights", shipped_dir=tmp_path / "none")
    write_checkpoint(tmp_path / "checkpoint_latest.pth")
    checkpoint = tmp_path / "checkpoint_latest.pth"
    entry = import_official(registry, checkpoint, "meshinversion", " P3D ", "mi-small")
    assert entry.category == "car"  # the dataset's name, recorded as the category the size table knows
    assert entry.config["template_rings"] == 31 and entry.config["width"] == 1 / 16
    method = load_model(registry, entry, "cpu")
    assert isinstance(method, METHOD)
    _, image = photo_file(tmp_path)
    options = preset_options(Options, "fast", **{**TINY_OVERRIDES, "feature_weight": 0.04})
    result = validate(method.run(image, options, 0, quiet))
    assert (
        result.vertices.shape == (962, 3)
        and result.faces.shape == (1920, 3)
        and result.uvs.shape == (1920, 3, 2)
    )
    assert np.ptp(result.vertices[:, 1]) == pytest.approx(4.5, abs=1e-5)  # a car's length in metres
    assert result.vertices[:, 2].min() == pytest.approx(0.0, abs=1e-5)
    assert result.info["placement"]["scale"] == "metres" and result.info["placement"]["size_m"] == 4.5
    assert result.texture.shape == (256, 256, 3)
    assert result.info["feature_loss"] is False and any("VGG19" in note for note in result.info["notes"])
    assert any("--generator mi-small --out" in note for note in result.info["notes"])  # no encoder for it
    assert set(result.previews) == {
        "input",
        "reconstruction",
        "overlay",
        "view_front_left",
        "view_back_right",
    }
    assert result.camera["image_size"] == [160, 120]
    files = write_result(result, tmp_path / "out", {"method": "meshinversion"})
    assert {"mesh.npz", "texture.png", "result.json"} <= set(files)

    write_vgg(tmp_path / "vgg19.pth")
    vgg_entry = import_official(registry, tmp_path / "vgg19.pth", "meshinversion", "vgg19", "vgg19")
    with pytest.raises(ValueError, match=r"auxiliary \(VGG19 features"):
        load_model(registry, vgg_entry, "cpu").run(image, options, 0, quiet)
    method = load_model(registry, entry, "cpu")
    with_vgg = method.run(image, options, 0, quiet)
    assert with_vgg.info["feature_loss"] is True
    assert not any("VGG19" in note for note in with_vgg.info["notes"])
    assert "feature" in with_vgg.info["stage_losses"][0]


def test_batch_mode_returns_one_result_per_photo(tmp_path: Path) -> None:
    method = small_method(tmp_path)
    _, image = photo_file(tmp_path)
    flipped = InputImage(image.rgb[:, ::-1].copy(), image.mask[:, ::-1].copy(), image.path)
    options = preset_options(Options, "fast", **{**TINY_OVERRIDES, "previews": False, "scale": "unit"})
    results = method.run_batch([image, flipped], options, 0, quiet)
    assert len(results) == 2 and all(r.previews == {} for r in results)
    for r in results:  # scale=unit: the unit box of old, centred, largest extent 1, camera 3 units off
        assert np.ptp(r.vertices, axis=0).max() == pytest.approx(1.0, abs=1e-5)
        assert np.allclose((r.vertices.max(0) + r.vertices.min(0)) / 2, 0, atol=1e-5)
        assert r.info["placement"]["scale"] == "unit"
    with pytest.raises(ValueError, match="scale must be"):
        replace(options, scale="feet")
    assert results[0].info["batch_size"] == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("category", "n_colors", "labels", "vertices"),
    [("cub", 0, {"class_label": 2}, 482), ("p3d", 3, {"colour_label": 1}, 962)],
    ids=["cub-class", "p3d-class-colour"],
)
def test_command_line_import_and_reconstruct(
    tmp_path: Path, category: str, n_colors: int, labels: dict[str, int], vertices: int
) -> None:
    """An official checkpoint imported and inverted from the command line: a CUB class model with
    the class given (16-ring template), a Pascal3D class+colour model (dict arguments; 31 rings)
    with the class searched."""
    write_checkpoint(tmp_path / "checkpoint_latest.pth", n_classes=3, n_colors=n_colors)
    path, _ = photo_file(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "backend", "--weights-dir", str(tmp_path / "weights")]
    checkpoint = str(tmp_path / "checkpoint_latest.pth")
    import_args = ["weights", "import", checkpoint, "--method", "meshinversion", "--category", category,
                   "--id", "mi-cli"]  # fmt: skip
    subprocess.run([*base, *import_args], check=True, env=env, cwd=ROOT)
    overrides = {**TINY_OVERRIDES, **labels}
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    done = subprocess.run(
        [*base, "reconstruct", str(path), "--weights", "mi-cli", "--mask", "alpha", "--seed", "1",
         "-o", str(tmp_path / "out"), *sets],
        env=env, cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["camera"]["type"] == "ORTHO"
    info = result["info"]
    assert info["class_label"] == labels.get("class_label", info["class_label"])
    assert 0 <= info["class_label"] < 3
    assert info["colour_label"] == (1 if n_colors else None)
    mesh = np.load(tmp_path / "out" / "mesh.npz")
    assert mesh["vertices"].shape == (vertices, 3)


def test_exported_uvs_show_what_the_optimisation_saw() -> None:
    """A viewer sampling the unpadded texture at texel centres with the exported UVs (as Blender
    does) sees the official lookup that ``MeshGAN.render`` reproduces; they differ only at the seam."""
    model = MeshGAN(small_generator())
    camera = WeakPerspective(view_quaternion(torch.tensor([0.7]), torch.tensor([0.3])), torch.tensor([0.8]),
                             torch.zeros(1, 2))  # fmt: skip
    with torch.no_grad():
        texture, vertices = model.generate(
            torch.randn(1, 64, generator=torch.Generator().manual_seed(1)), None
        )
        ours = model.render(vertices, texture, camera, 128)
        fragments = rasterize(camera.camera().project(vertices), model.faces, 128, cull_backfaces=True)
        uv = interpolate_corner_attributes(fragments, exported_uvs(model.template.corner_uvs, 256))
        viewer = sample_texture(texture, uv).permute(0, 3, 1, 2)
    covered = ours.mask[0]
    assert torch.equal(covered, fragments.mask[0])
    difference = (ours.rgb[0] - viewer[0]).abs().amax(dim=0)[covered]
    assert difference.median() < 1e-4
    assert (difference > 0.05).float().mean() < 0.01


def test_an_unsure_pose_warns_with_the_option_that_turns_it() -> None:
    assert pose_warnings(None, False) == [] and pose_warnings(UNSURE_POSE_BELOW, False) == []
    assert pose_warnings(float("nan"), False) == []
    (warning,) = pose_warnings(0.31, False)
    assert "0.31" in warning and "again with turn_start on" in warning
    (warning,) = pose_warnings(0.31, True)
    assert "again with turn_start off" in warning
