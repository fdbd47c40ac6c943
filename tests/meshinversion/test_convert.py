"""Official checkpoints are recognised, validated strictly and converted, read through the safe loader."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from backend.methods.meshinversion import METHOD
from backend.methods.meshinversion.generator import Generator, GeneratorConfig
from backend.weights import safe_torch_load
from tests.meshinversion.test_generator import official_cub_entries

convert_official = METHOD.convert_official
"""The ``Method`` interface the import command uses."""


def official_like_checkpoint(
    generator_state: dict[str, torch.Tensor], args: argparse.Namespace | dict, args_key: str = "self.args"
) -> dict:
    """The layout MeshInversion's ``save_checkpoint`` writes, with the given generator weights."""
    return {
        "self.optimizer_g": {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.0, 0.9)}]},
        "self.optimizer_d": {"state": {}, "param_groups": []},
        "generator": generator_state,
        "generator_running_avg": generator_state,
        "discriminator": {"d1.conv1.bias": torch.zeros(64)},
        "epoch": 600,
        "iteration": 123456,
        "g_curve": [0.5, 0.25],
        "d_fake_curve": [0.1],
        "d_real_curve": [0.2],
        "flat_curve": [0.0],
        args_key: args,
        "patchD": {"model.0.weight": torch.zeros(64, 3, 4, 4)},
        "optimizer_patchd": {"state": {}, "param_groups": []},
    }


def test_official_cub_checkpoint_round_trip(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    state = {
        key: torch.randint(0, 9, shape, generator=g) if dtype == "int64" else torch.randn(shape, generator=g)
        for key, shape, dtype in official_cub_entries()
    }
    args = argparse.Namespace(
        latent_dim=64,
        texture_resolution=512,
        norm_g="syncbatch",
        symmetric_g=True,
        conditional_class=True,
        n_classes=[200],
        mesh_path="lib/mesh_templates/uvsphere_16rings.obj",
    )
    path = tmp_path / "checkpoint_latest.pth"
    torch.save(official_like_checkpoint(state, args), path)

    converted, config = convert_official(safe_torch_load(path), "cub")
    assert config == GeneratorConfig(n_classes=200, texture_resolution=512).to_dict()
    assert list(converted) == [k for k, _, _ in official_cub_entries()]
    assert all(torch.equal(converted[k], state[k]) for k in state)
    Generator(GeneratorConfig.from_dict(config)).load_state_dict(converted, strict=True)


def test_unconditional_dataparallel_car_checkpoint() -> None:
    config = GeneratorConfig(n_classes=0, texture_resolution=256, width=1 / 8, template_rings=31)
    state = {f"module.{k}": v for k, v in Generator(config).state_dict().items()}
    args = argparse.Namespace(dataset="p3d", norm_g="syncbatch")
    converted, detected = convert_official(official_like_checkpoint(state, args, args_key="args"), "p3d")
    assert detected == config.to_dict()
    assert "emb_class.weight" not in converted and "blk3b.conv1.weight_orig" not in converted


def test_variants_detected_from_shapes() -> None:
    for config in (
        GeneratorConfig(n_classes=7, n_colors=3, texture_resolution=1024, width=1 / 16),
        GeneratorConfig(n_classes=0, symmetric=False, texture_resolution=512, width=1 / 16, norm="instance"),
    ):
        state = Generator(config).state_dict()
        args = argparse.Namespace(norm_g=config.norm)
        _, detected = convert_official({"generator_running_avg": state, "args": args}, "cub")
        assert detected == config.to_dict()


def test_mismatches_name_the_first_bad_tensor() -> None:
    config = GeneratorConfig(n_classes=4, texture_resolution=256, width=1 / 16)
    good = Generator(config).state_dict()
    args = argparse.Namespace(norm_g="batch")

    bad_shape = dict(good)
    bad_shape["blk4.conv2.weight_orig"] = torch.zeros(3, 3, 3, 3)
    with pytest.raises(ValueError, match=r"'blk4\.conv2\.weight_orig' has shape \[3, 3, 3, 3\]"):
        convert_official({"generator_running_avg": bad_shape, "self.args": args}, "cub")

    missing = {k: v for k, v in good.items() if k != "blk5.norm2.fc_beta.bias"}
    with pytest.raises(KeyError, match=r"blk5\.norm2\.fc_beta\.bias"):
        convert_official({"generator_running_avg": missing, "self.args": args}, "cub")

    extra = {**good, "att.extra.weight": torch.zeros(1)}
    with pytest.raises(KeyError, match=r"unexpected tensor 'att\.extra\.weight'"):
        convert_official({"generator_running_avg": extra, "self.args": args}, "cub")

    poisoned = dict(good)
    poisoned["fc.bias"] = torch.full_like(good["fc.bias"], float("nan"))
    with pytest.raises(ValueError, match=r"'fc\.bias' contains NaN"):
        convert_official({"generator_running_avg": poisoned, "self.args": args}, "cub")

    with pytest.raises(KeyError, match="generator_running_avg"):
        convert_official({"discriminator": {}, "epoch": 1}, "cub")

    text_model = {**good, "att.conv_context.weight": torch.zeros(256, 256, 1, 1)}
    with pytest.raises(ValueError, match="text-conditional"):
        convert_official({"generator_running_avg": text_model}, "cub")


@pytest.mark.parametrize("as_dict", [True, False], ids=["dict", "namespace"])
def test_convmesh_training_args_as_a_plain_dict_choose_the_template(tmp_path: Path, as_dict: bool) -> None:
    """ConvMesh saves ``vars(args)`` (a plain dict), MeshInversion a Namespace: both decide the 31-ring
    car template even when the category name gives no hint."""
    config = GeneratorConfig(n_classes=0, texture_resolution=256, width=1 / 8, template_rings=31)
    state = {f"module.{k}": v for k, v in Generator(config).state_dict().items()}
    template = "mesh_templates/uvsphere_31rings.obj"
    args = argparse.Namespace(dataset="p3d", norm_g="syncbatch", mesh_path=template)
    path = tmp_path / "checkpoint.pth"
    torch.save(official_like_checkpoint(state, vars(args) if as_dict else args, args_key="args"), path)
    _, detected = convert_official(safe_torch_load(path), "my-vehicles")
    assert detected == config.to_dict()
