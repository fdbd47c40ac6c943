"""The latent encoder pretrained on a GAN's own samples: training, resume, export, and how a run uses it."""

from __future__ import annotations

import tomllib
from dataclasses import replace

import torch
from safetensors.torch import load_file

from backend.methods.gan2shape import METHOD
from backend.methods.gan2shape.auxiliary import find_auxiliary_nets
from backend.methods.gan2shape.config import resolve
from backend.methods.gan2shape.options import Options
from backend.options import preset_options
from tests.gan2shape.helpers import TINY_OPTIONS, ellipse_photo
from workbench.train import gan2shape_encoder as tool


def train_args(tmp_path, steps: int, out: str = "run") -> list[str]:
    return ["--out", str(tmp_path / out), "--gan", "tiny-car", "--steps", str(steps), "--batch", "4",
            "--lr", "1e-3", "--log-every", "1", "--weights-dir", str(tmp_path)]


def residual(encoder: torch.nn.Module, generator) -> float:
    split = generator.config.n_mlp - 2
    images, target = tool.hidden_targets(generator, split, 32, torch.Generator().manual_seed(5))
    with torch.no_grad():
        return float((encoder(images) - target).square().mean() / target.square().mean())


def test_training_learns_the_codes_and_resumes_exactly(tiny_entry, auxiliary, tmp_path):
    entry, state = tiny_entry
    generator = METHOD.load(entry, state, "cpu", auxiliary).generator
    fresh, _ = tool.train(tool.build_parser().parse_args(train_args(tmp_path, 0, "fresh")), generator)
    trained, reported = tool.train(tool.build_parser().parse_args(train_args(tmp_path, 40)), generator)
    assert residual(trained, generator) < 0.9 * residual(fresh, generator)
    assert 0 < reported < 1
    whole, _ = tool.train(tool.build_parser().parse_args(train_args(tmp_path, 6, "whole")), generator)
    tool.train(tool.build_parser().parse_args(train_args(tmp_path, 3, "split")), generator)
    resumed, _ = tool.train(tool.build_parser().parse_args(train_args(tmp_path, 6, "split")), generator)
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_exported_encoder_is_found_for_its_gan_and_sets_its_options(tiny_entry, auxiliary, tmp_path):
    entry, state = tiny_entry
    tool.main([*train_args(tmp_path, 2), "--export"])
    manifest = tomllib.loads((tmp_path / "manifest.toml").read_text())
    exported = next(e for e in manifest["weights"] if e["id"] == tool.WEIGHTS_ID)
    assert exported["config"] == {"kind": "pretrain", "image_size": 64, "latent_dim": 32, "gan": "tiny-car",
                                  "gan_sha256": entry.sha256, "f1_d": 2, "relative_enc": True}
    extras = find_auxiliary_nets(entry, 64, auxiliary)
    assert sorted(extras.pretrained_nets()) == ["netEnc"]
    assert not extras.pretrained_depth()  # the ellipsoid prior is still fitted
    assert extras.option_defaults() == {"relative_enc": True, "f1_d": 2}
    model = METHOD.load(entry, state, "cpu", auxiliary)
    nets = model.build_nets(resolve("car", preset_options(Options, "fast", **TINY_OPTIONS)), 0, extras)
    saved = load_file(tmp_path / tool.WEIGHTS_FILE)
    for name, tensor in nets.netEnc.state_dict().items():
        assert torch.equal(tensor, saved[f"nets.netEnc.{name}"]), name
    short = preset_options(Options, "fast", **{**TINY_OPTIONS, "num_stages": 1, "stage0": (1, 1, 1),
                                                "previews": False})  # fmt: skip
    info = model.run(ellipse_photo(), short, seed=0, progress=lambda *a, **k: None).info
    assert info["pretrained_nets"] == ["netEnc"] and info["relative_enc"] is True
    explicit = model.run(ellipse_photo(), replace(short, relative_enc=False), 0, lambda *a, **k: None).info
    assert explicit["relative_enc"] is False  # a user's explicit value wins

    other = replace(entry, sha256="0" * 64)  # the same id, another file: the encoder does not fit it
    assert not find_auxiliary_nets(other, 64, auxiliary).has("pretrain")
