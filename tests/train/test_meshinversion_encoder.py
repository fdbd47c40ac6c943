"""The start encoder's training tool: its renders are framed as ``crop_to_object`` frames a photo, a
run resumes exactly, and an exported encoder is found by the generator it was trained on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from backend.methods.meshinversion.encoder import EncoderConfig, PoseLatentEncoder
from backend.methods.meshinversion.mesh_gan import MeshGAN
from backend.models import import_official, load_model
from backend.protocol import UserError
from backend.weights import USER_DIR_ENV, Registry, WeightsEntry, sha256_file, write_manifest
from tests.meshinversion.helpers import small_generator
from tests.meshinversion.test_method import write_checkpoint
from workbench.data.car_maps import car_maps
from workbench.data.map_cache import MapCache, load_cache
from workbench.data.uv_grid import half_columns
from workbench.train import meshinversion_encoder as tool


def true_cars(count: int) -> MapCache:
    """Training cars' true maps: the real procedural maps of seeds 0.. (as the generator trains on)."""
    maps = car_maps(list(range(count)), 256)
    texture = (maps.texture[..., half_columns(256)] * 255).round().to(torch.uint8).numpy()
    normal = maps.displacement[:, 0, :, half_columns(32)].half().numpy()
    return MapCache(np.arange(count), texture, normal)


@pytest.mark.parametrize("real", [0, 3])
def test_renders_are_framed_like_photo_crops(real: int) -> None:
    cars = true_cars(2) if real else None
    model = MeshGAN(small_generator())
    batch = tool.training_batch(model, 6, torch.Generator().manual_seed(1), cars, real)
    inputs, z, targets, has_z = batch.inputs, batch.z, batch.targets, batch.has_z
    assert inputs.shape == (6, 4, 128, 128) and z.shape == (6, 64) and targets.shape == (6, 6)
    assert has_z.tolist() == [True] * (6 - real) + [False] * real
    assert (z[~has_z] == 0).all() and (z[has_z] != 0).all()
    mask = inputs[:, 3] > 0.5
    rows, cols = mask.any(dim=2), mask.any(dim=1)
    extent = torch.stack([rows.sum(1), cols.sum(1)], 1).amax(1).float()
    # The object's long side is 1 / (1 + 2 margin) of the frame, margins 0.03-0.09 (+-1 px of coverage).
    low, high = (128 / (1 + 2 * margin) for margin in reversed(tool.MARGIN))
    assert ((extent >= low - 2) & (extent <= high + 1)).all()
    torch.testing.assert_close(targets[:, :2].norm(dim=1), torch.ones(6))  # (cos, sin) of the azimuth
    # The generated rows' vertices are their z's shape; the true cars' are not any z's.
    with torch.no_grad():
        error = tool.shape_error(model, z, batch)
    assert (error[has_z] < 1e-10).all() and (error[~has_z] > 1e-4).all()


def test_the_shape_loss_trains_the_encoder_and_leaves_the_generator() -> None:
    model = MeshGAN(small_generator())
    model.generator.requires_grad_(False)
    batch = tool.training_batch(model, 4, torch.Generator().manual_seed(2), true_cars(2), 2)
    encoder = PoseLatentEncoder(EncoderConfig(64, 8))
    terms = tool.regression_loss(encoder, batch, model, shape_weight=100.0)
    assert set(terms) == {"z", "azimuth", "elevation", "scale", "translation", "shape"}
    terms["shape"].backward()
    assert encoder.head_z.weight.grad.abs().sum() > 0  # the true cars' rows too: they have no z target
    assert encoder.head_camera.weight.grad is None or not encoder.head_camera.weight.grad.any()
    assert all(p.grad is None for p in model.generator.parameters())
    assert "shape" not in tool.regression_loss(encoder, batch, model)


def test_train_resume_export_and_find(tmp_path) -> None:
    generator = small_generator()
    save_file({k: v.contiguous() for k, v in generator.state_dict().items()}, tmp_path / "gen.safetensors")
    path = tmp_path / "gen.safetensors"
    entry = WeightsEntry(id="tiny-mi", method="meshinversion", category="car", file=path.name,
                         sha256=sha256_file(path), size=path.stat().st_size, source="test", licence="test",
                         config=dict(generator.config.to_dict()))  # fmt: skip
    write_manifest(tmp_path, [entry])

    def run(out: str, steps: int, *extra: str) -> None:
        tool.main(["--out", str(tmp_path / out), "--generator", "tiny-mi", "--steps", str(steps),
                   "--batch", "2", "--width", "8", "--log-every", "1", "--weights-dir", str(tmp_path),
                   *extra])  # fmt: skip

    cache = tmp_path / "cars.npz"
    cars = true_cars(2)
    np.savez(cache, seeds=cars.seeds, texture_half=cars.texture_half, normal_half=cars.normal_half)
    run("whole", 4, "--cache", str(cache))
    run("split", 2, "--cache", str(cache))
    run("split", 4, "--cache", str(cache), "--export")
    first, second = (load_file(tmp_path / name / "checkpoint.safetensors") for name in ("whole", "split"))
    assert all(torch.equal(first[k], second[k]) for k in first)  # resumed exactly
    # A fresh run folder resumes from a copied-out checkpoint (the committed one, in the repository).
    committed = tmp_path / "committed.safetensors"
    committed.write_bytes((tmp_path / "split" / "checkpoint.safetensors").read_bytes())
    run("whole", 6, "--cache", str(cache))
    run("again", 6, "--cache", str(cache), "--resume-from", str(committed))
    first, second = (load_file(tmp_path / name / "checkpoint.safetensors") for name in ("whole", "again"))
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert committed.read_bytes() == (tmp_path / "split" / "checkpoint.safetensors").read_bytes()
    store = Registry(shipped_dir=tmp_path, user_dir=tmp_path / "user")
    exported = store.find(tool.WEIGHTS_ID)
    assert exported.config["generator_sha256"] == entry.sha256 and exported.config["generator"] == "tiny-mi"
    method = load_model(store, store.find("tiny-mi"), "cpu")
    assert method.start_encoder() is not None
    # A cache the chain names but this machine lacks is built first, from the training seeds 0..N-1.
    missing = tmp_path / "new" / "cars.npz"
    run("built", 1, "--cache", str(missing), "--cars", "2")
    built = load_cache(missing)
    assert built.seeds.tolist() == [0, 1] and np.array_equal(built.texture_half, cars.texture_half)


def test_an_imported_official_generator_gets_its_encoder_in_the_user_folder(tmp_path, monkeypatch) -> None:
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    shipped.mkdir()
    (shipped / "manifest.toml").write_text("# shipped manifest\n")
    monkeypatch.setenv(USER_DIR_ENV, str(user))
    checkpoint = tmp_path / "checkpoint_latest.pth"
    write_checkpoint(checkpoint)
    generator = import_official(Registry(), checkpoint, "meshinversion", "car", "cub-mi")

    def run(out: str, *extra: str) -> None:
        tool.main(["--out", str(tmp_path / out), "--generator", "cub-mi", "--steps", "2", "--batch", "2",
                   "--width", "8", "--weights-dir", str(shipped), "--export", *extra])  # fmt: skip

    run("first")
    assert sorted(p.name for p in shipped.iterdir()) == ["manifest.toml"]  # shipped files untouched
    assert (shipped / "manifest.toml").read_text() == "# shipped manifest\n"
    store = Registry()
    encoder = store.find("cub-mi-encoder")
    assert encoder.origin == "user" and encoder.config["generator_sha256"] == generator.sha256
    assert load_model(store, generator, "cpu").start_encoder() is not None
    with pytest.raises(UserError, match="exists already"):
        run("again")
    assert not (tmp_path / "again").exists()  # refused before the run began
    run("again", "--export-id", "cub-mi-encoder-2")
    assert store.find("cub-mi-encoder-2").origin == "user"
