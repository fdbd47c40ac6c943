"""``paper`` is the official step 3 and batch: projected samples teach the view and light nets, and
car/church accumulate the 4 data-parallel GPUs' batches (issue 22)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from backend.cli import main
from backend.methods.gan2shape import METHOD
from backend.methods.gan2shape.config import resolve
from backend.methods.gan2shape.options import Options
from backend.methods.gan2shape.schedule import TRAINED_NETS, GAN2ShapeRun
from backend.options import preset_options
from tests.core.tiny_models import GAN2SHAPE_FAST, object_photo, tiny_gan2shape
from tests.gan2shape.helpers import TINY_OPTIONS, ellipse_photo


def no_progress(*_args, **_kwargs) -> None:
    return None


@pytest.fixture
def model(tiny_entry, auxiliary):
    entry, state = tiny_entry
    return METHOD.load(entry, state, "cpu", auxiliary)


def trained_run(model, preset: str) -> GAN2ShapeRun:
    options = preset_options(Options, preset, **TINY_OPTIONS)
    return model.reconstruct(ellipse_photo(), options, seed=1, progress=no_progress).run


def view_light_gradients(run: GAN2ShapeRun, loss: torch.Tensor) -> list[torch.Tensor]:
    params = [*run.nets.netV.parameters(), *run.nets.netL.parameters()]
    return list(torch.autograd.grad(loss, params, allow_unused=True, retain_graph=False))


@pytest.mark.parametrize("preset", ["paper", "fast"])
def test_projected_samples_teach_the_view_and_light_nets_in_paper_only(model, preset):
    """Step 3's gradient of the view and light nets beyond the input term's: from the projected
    samples in ``paper`` (the nets predict their poses, as the official code); none with fresh nets
    in ``fast`` (``pseudo_pose="auto"``: the poses the pseudo samples were made with)."""
    run = trained_run(model, preset)
    assert run.sampled_pose == (preset == "fast")
    assert not run.pretrained_depth  # fresh nets, as every official run and any user GAN
    run.train_only(TRAINED_NETS["step3"])
    joint = view_light_gradients(run, run.joint_loss(flip=False)[0])
    alone = view_light_gradients(run, run.reconstruct_input(False, refresh_mask=True)[0])
    extra = max((j - a).abs().max().item() for j, a in zip(joint, alone, strict=True))
    if preset == "paper":
        assert extra > 1e-6
    else:
        assert extra == 0.0


class FixedSamples:
    """Serves consecutive slices of one fixed set of samples, so that k batches of b and one batch of
    k*b see the same samples."""

    def __init__(self, *tensors: torch.Tensor) -> None:
        self.tensors, self.start = tensors, 0

    def __call__(self, n: int) -> tuple[torch.Tensor, ...]:
        part = tuple(t[self.start : self.start + n] for t in self.tensors)
        self.start += n
        return part


def step_gradients(run: GAN2ShapeRun, name: str, names: tuple[str, ...]) -> tuple[float, list[torch.Tensor]]:
    run.train_only(names)
    for net in names:
        getattr(run.nets, net).zero_grad(set_to_none=True)
    loss, _ = run.accumulate_gradients(name, False, False)
    grads = [p.grad.clone() for n in names for p in getattr(run.nets, n).parameters() if p.grad is not None]
    return loss, grads


def assert_same(a: tuple[float, list[torch.Tensor]], b: tuple[float, list[torch.Tensor]]) -> None:
    assert a[0] == pytest.approx(b[0], abs=1e-6)
    assert len(a[1]) == len(b[1]) > 0
    assert max((x - y).abs().max().item() for x, y in zip(a[1], b[1], strict=True)) < 1e-6


def test_accumulated_batches_equal_one_batch_of_all_their_samples(model):
    """Step 2's losses are means (masks of ones): 3 accumulated batches of 2, each loss divided by 3,
    give the loss and gradients of one batch of the 6 samples."""
    run = trained_run(model, "fast")
    with torch.no_grad():
        pseudo, _, poses = run.sample_pseudo(6)
    ones = pseudo.new_ones(6, 1, *pseudo.shape[2:])
    results = []
    for batch, accumulate in ((2, 3), (6, 1)):
        run.options = replace(run.options, batch=batch, accumulate=accumulate)
        run.sample_pseudo = FixedSamples(pseudo, ones, poses)
        results.append(step_gradients(run, "step2", ("netEnc",)))
    assert_same(*results)


def test_accumulated_step3_is_the_mean_of_the_gpus_losses(model):
    """Step 3 as the 4 official GPUs: each batch's loss is the input term plus its projected samples'
    (masked means, normalised per batch as on each GPU); accumulation gives the gradient of their
    mean in one graph."""
    run = trained_run(model, "paper")
    images, masks, poses = (t[:6].clone() for t in (run.projected, run.projected_masks, run.projected_poses))
    names = TRAINED_NETS["step3"]
    run.options = replace(run.options, batch=2, accumulate=3)
    served = FixedSamples(images, masks, poses)
    run.next_projected = lambda: served(2)
    accumulated = step_gradients(run, "step3", names)
    served.start = 0
    for net in names:
        getattr(run.nets, net).zero_grad(set_to_none=True)
    losses = [run.joint_loss(flip=False)[0] for _ in range(3)]
    (sum(losses) / 3).backward()
    grads = [p.grad.clone() for n in names for p in getattr(run.nets, n).parameters() if p.grad is not None]
    assert_same(accumulated, (float(sum(x.item() for x in losses) / 3), grads))


def test_paper_collects_the_official_count_and_takes_one_update_per_step(model):
    run = trained_run(model, "paper")
    opts = resolve("car", preset_options(Options, "paper", **TINY_OPTIONS))
    assert opts.accumulate == 4
    assert run.projected.shape[0] == opts.collect_iters * opts.batch * 4  # 4 x 100 x 8 in the car schedule
    assert [len(run.history.losses[k]) for k in ("step1", "step2", "step3")] == [
        opts.total_steps(i) for i in range(3)
    ]


def test_paper_runs_end_to_end_from_the_command_line(tmp_path: Path, capsys):
    weights_id, overrides = tiny_gan2shape(tmp_path / "w")
    overrides = {**overrides, **GAN2SHAPE_FAST, "batch": 2, "collect_iters": 1}
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    photo = object_photo(tmp_path / "photo.png")
    out = tmp_path / "out"
    args = ["reconstruct", str(photo), "--method", "gan2shape", "--weights", weights_id, "--preset", "paper"]
    code = main(["--weights-dir", str(tmp_path / "w"), *args, "--mask", "alpha", *sets, "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    result = json.loads((out / "result.json").read_text())
    assert result["options"]["pseudo_pose"] == "predicted" and result["options"]["accumulate"] is None
    assert result["info"]["pseudo_pose"] == "predicted"
    assert result["info"]["batch"] == {"size": 2, "accumulate": 4, "projected_per_stage": 8}
