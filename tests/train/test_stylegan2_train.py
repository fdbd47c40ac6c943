"""GAN2Shape demo training: renders, StyleGAN2 steps, exact resume, export to a manifest, mask network."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from backend.methods.gan2shape.masknet import MaskNet, MaskNetConfig, load_masknet
from backend.methods.gan2shape.stylegan2 import StyleGAN2Config, build_gan, infer_config, split_state_dict
from backend.weights import sha256_file
from workbench.data.gan2shape_renders import build_render_set, load_render_set
from workbench.splits import eval_seeds
from workbench.train import masknet_training as train_mask
from workbench.train import stylegan2_training as train_gan

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"


@pytest.fixture(scope="module")
def render_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("renders") / "cars.npz"
    build_render_set(list(range(4)), views_per_car=2, size=64, seed=0).save(path)
    return path


def test_render_set_is_deterministic_and_well_formed(render_file: Path) -> None:
    data = load_render_set(render_file)
    assert data.images.shape == (8, 3, 64, 64) and data.images.dtype == torch.uint8
    assert set(data.masks.unique().tolist()) == {0, 255}
    coverage = (data.masks > 0).float().mean(dim=(1, 2, 3))
    assert ((coverage > 0.05) & (coverage < 0.6)).all()
    inside = data.images.float().mean(1)[data.masks[:, 0] > 0]
    assert inside.std() > 10  # shaded, textured cars, not flat silhouettes
    again = build_render_set(list(range(2)), views_per_car=2, size=64, seed=0)
    assert torch.equal(again.images, data.images[:4])
    assert data.seeds.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]


def run_training(out: Path, data: Path, steps: int, *extra: str) -> None:
    train_gan.main(
        ["--out", str(out), "--data", str(data), "--steps", str(steps), "--batch", "4",
         "--log-every", "1", "--sample-every", "2", "--save-minutes", "1000", *extra]
    )  # fmt: skip


@pytest.mark.slow
def test_training_logs_samples_and_resumes_like_an_uninterrupted_run(
    render_file: Path, tmp_path: Path
) -> None:
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_training(straight, render_file, 4)
    run_training(resumed, render_file, 2)
    fresh_machine = tmp_path / "fresh"
    run_training(fresh_machine, render_file, 4, "--resume-from", str(resumed / train_gan.CHECKPOINT))
    run_training(resumed, render_file, 4)
    log = [json.loads(line) for line in (resumed / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2, 3, 4]
    assert log[0]["last_r1"] > 0
    assert all(np.isfinite(row["loss_d"]) and row["sec_per_step"] > 0 for row in log)
    grid = Image.open(resumed / "samples" / "step_000004.png")
    assert grid.size == (8 * 64, 8 * 64)
    a = load_file(straight / train_gan.CHECKPOINT)
    b = load_file(resumed / train_gan.CHECKPOINT)
    assert a.keys() == b.keys()
    assert not torch.equal(a["g_ema.conv1.conv.weight"], a["g.conv1.conv.weight"])  # the EMA lags behind
    c = load_file(fresh_machine / train_gan.CHECKPOINT)
    for key in ("g.conv1.conv.weight", "d.convs.1.conv1.0.weight", "g_ema.to_rgbs.3.conv.weight"):
        assert torch.allclose(a[key], b[key], atol=1e-3), key
        assert torch.equal(b[key], c[key]), key
    size_mb = (straight / train_gan.CHECKPOINT).stat().st_size / 1e6
    assert size_mb < 15


def test_a_run_of_another_size_stops_on_its_time_budget_and_resumes_only_as_itself(tmp_path: Path) -> None:
    """What a chunk on a lent GPU runs (``workbench/device/stylegan2_chunk.sh``), here at 32 px: the
    architecture comes from the flags, a wall-time budget ends the chunk with a checkpoint, and the
    run refuses renders or flags of another size instead of training the wrong network."""
    renders = tmp_path / "cars32.npz"
    build_render_set([0, 1], views_per_car=2, size=32, seed=0).save(renders)
    run = tmp_path / "run"
    run_training(run, renders, 50, "--size", "32", "--channel-max", "16", "--minutes", "1e-6")
    with safe_open(run / train_gan.CHECKPOINT, "pt") as checkpoint:
        meta = checkpoint.metadata()
    assert meta["step"] == "1" and json.loads(meta["config"])["size"] == 32
    assert json.loads(meta["config"])["channel_max"] == 16
    run_training(run, renders, 2)  # resumed: its own architecture, no flags needed
    with pytest.raises(SystemExit, match="--size"):
        run_training(run, renders, 3, "--size", "64")
    with pytest.raises(SystemExit, match="32 px renders"):
        run_training(tmp_path / "other", renders, 1)  # the demo's 64 px network on 32 px renders


@pytest.mark.slow
def test_export_writes_loadable_weights_and_upserts_only_its_manifest_entry(
    render_file: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    run_training(run, render_file, 1)
    weights = tmp_path / "weights"
    weights.mkdir()
    other = (
        '# comment kept\n[[weights]]\nid = "other"\nfile = "x.safetensors"\n[weights.config]\nsize = 3\n\n'
    )
    (weights / "manifest.toml").write_text(other)
    train_gan.export(run, weights)
    first = (weights / "manifest.toml").read_text()
    train_gan.export(run, weights)
    text = (weights / "manifest.toml").read_text()
    assert text == first and text.startswith(other)
    entries = tomllib.loads(text)["weights"]
    assert [e["id"] for e in entries] == ["other", train_gan.WEIGHTS_ID]
    entry = entries[1]
    path = weights / entry["file"]
    assert entry["size"] == path.stat().st_size
    state = load_file(path)
    config = infer_config(split_state_dict(state)["g_ema"])
    assert config.channels(64) == entry["config"]["channel_base"] // 64
    g, d = build_gan(train_gan.DEMO_CONFIG, state, "cpu")
    with torch.no_grad():
        image = g(torch.randn(2, g.config.style_dim))
        assert d(image).shape == (2, 1)
    assert entry["config"]["azimuth_deg"] == [-75.0, 75.0]
    # Pseudo views are drawn around the renders' mean view (elevation 5-30 deg -> pitch 17.5 deg).
    assert entry["config"]["view_mean"] == [round(17.5 / 60, 4), 0.0, 0.0, 0.0, 0.0, 0.0]
    assert entry["config"]["view_std"][:2] == [round(25 / 12**0.5 / 60, 4), round(150 / 12**0.5 / 60, 4)]


def test_mask_network_shapes_and_strict_loading() -> None:
    torch.manual_seed(0)
    net = MaskNet(MaskNetConfig(width=8, depth=3))
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    assert net(images).shape == (2, 1, 64, 64)
    soft = net.eval().predict(torch.rand(2, 3, 100, 100) * 2 - 1)
    assert soft.shape == (2, 1, 100, 100) and ((soft >= 0) & (soft <= 1)).all()
    loaded = load_masknet(MaskNetConfig(width=8, depth=3), net.state_dict(), "cpu")
    assert torch.equal(loaded(images), net(images))
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_masknet(MaskNetConfig(width=16, depth=3), net.state_dict(), "cpu")


def test_mask_training_learns_and_resumes(render_file: Path, tmp_path: Path) -> None:
    args = ["--out", str(tmp_path / "mask"), "--data", str(render_file), "--batch", "8", "--width", "8",
            "--log-every", "1"]  # fmt: skip
    parser_args = train_mask.build_parser().parse_args([*args, "--steps", "60"])
    train_mask.train(parser_args)
    log = [json.loads(line) for line in (tmp_path / "mask" / "log.jsonl").read_text().splitlines()]
    first, last = np.mean([r["loss"] for r in log[:5]]), np.mean([r["loss"] for r in log[-5:]])
    assert last < 0.8 * first
    resumed = train_mask.train(train_mask.build_parser().parse_args([*args, "--steps", "62"]))
    log = [json.loads(line) for line in (tmp_path / "mask" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log[-3:]] == [60, 61, 62]
    data = load_render_set(render_file)
    assert 0.0 <= train_mask.evaluate(resumed, data) <= 1.0


def shipped_entry(weights_id: str) -> dict:
    manifest = tomllib.loads((WEIGHTS_DIR / "manifest.toml").read_text())
    (entry,) = [e for e in manifest["weights"] if e["id"] == weights_id]
    path = WEIGHTS_DIR / entry["file"]
    assert path.stat().st_size == entry["size"] and sha256_file(path) == entry["sha256"]
    return entry


@pytest.mark.slow
def test_shipped_mask_network_segments_held_out_renders() -> None:
    """Acceptance: IoU >= 0.9 on cars from the held-out seed range, never seen in training."""
    entry = shipped_entry(train_gan.MASK_WEIGHTS_ID)
    net = load_masknet(
        MaskNetConfig.from_dict(entry["config"]), load_file(WEIGHTS_DIR / entry["file"]), "cpu"
    )
    held_out = build_render_set(eval_seeds(12), views_per_car=2, size=64, seed=7)
    assert train_mask.evaluate(net, held_out) >= 0.9


@pytest.mark.slow
def test_shipped_demo_gan_generates_cars_the_mask_network_finds() -> None:
    """The shipped generator loads strictly from its manifest config and makes object-like samples:
    the mask network finds one car-sized object in most of them."""
    entry = shipped_entry(train_gan.WEIGHTS_ID)
    config = StyleGAN2Config.from_dict(entry["config"])
    g, d = build_gan(config, load_file(WEIGHTS_DIR / entry["file"]), "cpu")
    mask_entry = shipped_entry(entry["config"]["mask_weights"])
    net = load_masknet(
        MaskNetConfig.from_dict(mask_entry["config"]), load_file(WEIGHTS_DIR / mask_entry["file"]), "cpu"
    )
    with torch.no_grad():
        images = g(torch.randn(16, config.style_dim, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
        feats = d(images, ftr_num=4)
    assert images.shape == (16, 3, 64, 64) and len(feats) == 4
    coverage = (net.predict(images) > 0.5).float().mean(dim=(1, 2, 3))
    assert ((coverage > 0.05) & (coverage < 0.6)).float().mean() >= 0.75
