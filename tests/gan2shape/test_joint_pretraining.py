"""Joint pretraining of GAN2Shape's nets on GAN samples: the schedule over many images, resume per
stage, export, and a job that then starts from the pretrained nets instead of the ellipsoid prior."""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from backend.methods.gan2shape import METHOD
from backend.methods.gan2shape.auxiliary import find_auxiliary_nets
from backend.methods.gan2shape.masknet import MaskNet, MaskNetConfig
from backend.methods.gan2shape.networks import NET_NAMES
from backend.methods.gan2shape.options import Options
from backend.options import preset_options
from backend.weights import WeightsEntry, sha256_file, write_manifest
from tests.gan2shape.helpers import TINY_OPTIONS, ellipse_photo
from workbench.train import gan2shape_encoder, gan2shape_joint


def register_mask_network(entry: WeightsEntry) -> WeightsEntry:
    """A mask network that sees the object everywhere (the tool refuses to run without one)."""
    torch.manual_seed(0)
    config = MaskNetConfig(size=32, width=4, depth=2)
    state = MaskNet(config).state_dict()
    state["head.bias"] = torch.full_like(state["head.bias"], 20.0)
    path = entry.root / "mask.safetensors"
    save_file(state, path)
    return WeightsEntry(
        id="tiny-car-mask", method="gan2shape", category="car", file=path.name, sha256=sha256_file(path),
        size=path.stat().st_size, source="test", licence="test", config={"kind": "mask", **config.to_dict()},
        root=entry.root, origin="user",
    )  # fmt: skip


def joint_args(tmp_path, stages: int) -> list[str]:
    return ["--out", str(tmp_path / "joint"), "--gan", "tiny-car", "--images", "3", "--stages", str(stages),
            "--stage0", "2", "2", "2", "--later", "1", "1", "2", "--batch", "2", "--collect", "1",
            "--prior-iters", "2", "--net-width", "8", "--log-every", "1",
            "--weights-dir", str(tmp_path)]  # fmt: skip


def test_joint_pretraining_resumes_exports_and_replaces_the_prior(tiny_entry, auxiliary, tmp_path, capsys):
    entry, state = tiny_entry
    write_manifest(tmp_path, [entry, register_mask_network(entry)])
    encoder_args = ["--out", str(tmp_path / "enc"), "--gan", "tiny-car", "--steps", "1", "--batch", "2"]
    gan2shape_encoder.main([*encoder_args, "--weights-dir", str(tmp_path), "--export"])
    assert find_auxiliary_nets(entry, 64, auxiliary).pretrained_nets().keys() == {"netEnc"}

    gan2shape_joint.main(joint_args(tmp_path, 1))
    gan2shape_joint.main([*joint_args(tmp_path, 2), "--job-lam-smooth", "0.1", "--export"])
    stages = [json.loads(line)["stage"] for line in capsys.readouterr().out.splitlines() if '"stage"' in line]
    assert stages == [1, 2]  # the second call resumed after stage 1
    with safe_open(tmp_path / "joint" / gan2shape_joint.CHECKPOINT, "pt") as fh:
        assert fh.metadata()["stages_done"] == "2"
    rows = [json.loads(line) for line in (tmp_path / "joint" / "log.jsonl").read_text().splitlines()]
    assert {r["kind"] for r in rows} == {"prior", "step1", "step2", "step3"}
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)

    manifest = tomllib.loads((tmp_path / "manifest.toml").read_text())
    exported = next(e for e in manifest["weights"] if e["id"] == gan2shape_joint.WEIGHTS_ID)
    assert exported["config"] == {"kind": "pretrain", "image_size": 64, "latent_dim": 32, "net_width": 8,
                                  "gan": "tiny-car", "gan_sha256": entry.sha256, "f1_d": 2,
                                  "relative_enc": True, "lam_smooth": 0.1}  # fmt: skip
    assert "--job-lam-smooth 0.1" in exported["train_command"]
    saved = load_file(tmp_path / gan2shape_joint.WEIGHTS_FILE)
    assert {t.dtype for t in saved.values()} == {torch.float16}
    assert not saved["nets.netV.network.10.weight"].any()  # the view net stayed frozen at identity
    assert saved["nets.netD.network.0.weight"].abs().sum() > 0
    extras = find_auxiliary_nets(entry, 64, auxiliary)
    assert sorted(extras.pretrained_nets()) == sorted(NET_NAMES)  # the joint file wins over the encoder
    assert extras.pretrained_depth()
    job_options = {"relative_enc": True, "f1_d": 2, "lam_smooth": 0.1}
    assert extras.option_defaults() == job_options

    short = preset_options(Options, "fast", **{**TINY_OPTIONS, "num_stages": 1, "stage0": (1, 1, 1)})
    model = METHOD.load(entry, state, "cpu", auxiliary)
    result = model.run(ellipse_photo(), replace(short, previews=False), seed=0, progress=lambda *a, **k: None)
    assert result.info["pretrained_nets"] == sorted(NET_NAMES)
    assert result.info["loss_curves"]["prior"] == []  # no ellipsoid fitted: the pretrained depth net starts
    quiet = {"seed": 0, "progress": lambda *a, **k: None}
    assert model.reconstruct(ellipse_photo(), short, **quiet).options.lam_smooth == 0.1  # the entry's
    chosen = model.reconstruct(ellipse_photo(), replace(short, lam_smooth=0.05), **quiet).options
    assert chosen.lam_smooth == 0.05  # a user's explicit value wins

    checkpoint = tmp_path / "joint" / gan2shape_joint.CHECKPOINT
    save_file(load_file(checkpoint), checkpoint, metadata={"stages_done": "2", "gan_sha256": "0" * 64})
    with pytest.raises(SystemExit, match="another GAN"):
        gan2shape_joint.main(joint_args(tmp_path, 3))
