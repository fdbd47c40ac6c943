"""The GAN2Shape method end to end on a tiny random StyleGAN2: progress, determinism, cancel, output."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from backend.methods.base import JobCancelled
from backend.methods.gan2shape import METHOD, depth_render
from backend.methods.gan2shape.config import Research, resolve
from backend.methods.gan2shape.depthmap import normals_from_depth, scale_view, smooth_depth
from backend.methods.gan2shape.masknet import MaskNet, MaskNetConfig
from backend.methods.gan2shape.method import MAX_EXPOSURE, crop_input
from backend.methods.gan2shape.options import Options
from backend.options import parse_options, preset_options
from backend.protocol import UserError
from backend.render.srgb import linear_to_srgb, srgb_to_linear
from backend.results import validate
from backend.weights import WeightsEntry, sha256_file, write_manifest
from tests.gan2shape.helpers import TINY_OPTIONS, ellipse_photo


def options(**changes):
    return preset_options(Options, "fast", **{**TINY_OPTIONS, **changes})


class Recorder:
    def __init__(self, cancel_at: str | None = None) -> None:
        self.events: list[tuple[str, int, int, float | None, bool]] = []
        self.cancel_at = cancel_at

    def __call__(self, stage, step, total, loss=None, preview=None):
        if stage == self.cancel_at:
            raise JobCancelled()
        if preview is not None:
            assert preview.dtype == np.uint8 and preview.ndim == 3
        self.events.append((stage, step, total, loss, preview is not None))


@pytest.fixture
def model(tiny_entry, auxiliary):
    entry, state = tiny_entry
    return METHOD.load(entry, state, "cpu", auxiliary)


def test_run_reports_every_stage_and_returns_a_valid_relief(model):
    recorder = Recorder()
    result = validate(model.run(ellipse_photo(), options(), seed=3, progress=recorder))
    stages = [e[0] for e in recorder.events]
    for name in ("invert", "prior", "step1", "step2", "collect", "step3", "export"):
        assert name in stages, name
    assert stages.index("invert") < stages.index("prior") < stages.index("step1") < stages.index("step3")
    opts = resolve("car", options())
    last = {}
    for stage, step, total, loss, _ in recorder.events:
        assert loss is None or math.isfinite(loss)
        assert step >= last.get(stage, -1)
        last[stage] = step
        if stage in ("step1", "step2", "step3"):
            assert total == opts.total_steps(("step1", "step2", "step3").index(stage))
    assert last["step3"] == opts.total_steps(2)
    assert any(e[4] for e in recorder.events)
    # Losses fall where a short run can show it: inversion and fitting the depth net to the prior.
    curves = result.info["loss_curves"]
    assert curves["invert"][-1] < curves["invert"][0]
    assert curves["prior"][-1] < curves["prior"][0]
    assert all(math.isfinite(v) for c in curves.values() for v in c)
    # The relief: cut to the object (no full background sheet), Blender frame, camera in front.
    res = options().mesh_resolution
    assert len(result.vertices) < 0.8 * res * res
    extent = result.vertices.max(axis=0) - result.vertices.min(axis=0)
    assert extent.max() == pytest.approx(4.5, abs=1e-4)  # a car's size in metres (its largest extent)
    assert result.vertices[:, 2].min() == pytest.approx(0.0, abs=1e-5)
    placement = result.info["placement"]
    assert placement["size_m"] == 4.5 and "no reliable length" in placement["note"]
    # The camera in front of the relief, in units of its size, from its middle height.
    position = np.array(result.camera["matrix_world"])[:3, 3] / 4.5
    height = result.vertices[:, 2].max() / 2 / 4.5
    assert position[1] < -1 and abs(position[0]) < 1 and abs(position[2] - height) < 1
    assert result.camera["type"] == "PERSP" and result.camera["image_size"] == [96, 72]
    assert set(result.previews) == {"recon", "rotate", "relight", "shape_rotate"}
    side = result.info["mesh"]["texture_size"]
    assert result.texture.shape == (side, side, 3) and side > 64  # the photo's own resolution, not the nets'
    info = result.info
    assert len(info["view"]["rotation_deg"]) == 3 and len(info["light"]["direction"]) == 3
    assert info["perceptual"] is False and any("VGG16" in n for n in info["notes"])
    assert info["mask_source"] == "input"


def test_texture_modes_photo_albedo_net_shaded(model):
    """``photo`` exports the crop itself at its resolution, ``albedo`` that crop divided by the
    recovered shading and an exposure (darker only where their product exceeds 1), ``net`` and
    ``shaded`` the nets' canonical 64 px images; the photo modes map UVs through the view, the
    others through the canonical image."""
    photo = ellipse_photo()
    outcome = model.reconstruct(photo, options(num_stages=1, stage0=(2, 2, 2)), seed=0, progress=Recorder())
    results = {
        mode: model.export(replace(outcome, options=replace(outcome.options, texture=mode)))
        for mode in ("photo", "albedo", "net", "shaded")
    }
    crop = np.clip(outcome.photo.rgb * 255 + 0.5, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(results["photo"].texture, crop)
    assert results["albedo"].texture.shape == crop.shape
    light = results["albedo"].info["light"]
    brightest = light["ambient"] + light["diffuse"]  # the shading at most: ambient + diffuse x 1
    assert 1.0 <= light["exposure"] <= MAX_EXPOSURE  # the texture holds the linear albedo / exposure
    darkest = srgb_to_linear(torch.from_numpy(crop / 255 / max(brightest, 1.0))) / light["exposure"]
    assert (results["albedo"].texture >= linear_to_srgb(darkest).numpy() * 255 - 1).all()
    assert results["photo"].info["light"]["exposure"] == 1.0
    # A photo brighter than the recovered light explains: the texture would clip at 1 over most of the
    # object; instead it is scaled down and the light records how much brighter it must be.
    white = replace(outcome.photo, rgb=np.full_like(outcome.photo.rgb, 0.95))
    bright = model.export(replace(outcome, photo=white, options=replace(outcome.options, texture="albedo")))
    assert bright.info["light"]["exposure"] > 1.3
    on_object = outcome.photo.mask > 0.5
    assert (bright.texture[on_object] == 255).all(axis=-1).mean() <= 0.02
    assert results["albedo"].texture.mean() > crop.mean()
    for mode in ("net", "shaded"):
        assert results[mode].texture.shape == (64, 64, 3)
    assert not np.allclose(results["photo"].uvs, results["net"].uvs)
    np.testing.assert_array_equal(results["photo"].faces, results["net"].faces)


def test_without_a_mask_the_category_mask_network_is_used(tiny_entry, auxiliary):
    entry, state = tiny_entry
    photo = ellipse_photo()
    photo.mask, photo.mask_source = np.ones_like(photo.mask), "none"
    short = options(num_stages=1, stage0=(1, 1, 1), previews=False)
    alone = METHOD.load(entry, state, "cpu", auxiliary).run(photo, short, seed=0, progress=Recorder())
    assert alone.info["mask_source"].startswith("whole image")
    torch.manual_seed(0)
    config = MaskNetConfig(size=32, width=4, depth=2)
    net = MaskNet(config)
    net_state = net.state_dict()
    net_state["head.bias"] = torch.full_like(net_state["head.bias"], -20.0)  # sees nothing
    path = entry.root / "mask.safetensors"
    save_file(net_state, path)
    mask_entry = WeightsEntry(
        id="tiny-car-mask", method="gan2shape", category="car", file=path.name, sha256=sha256_file(path),
        size=path.stat().st_size, source="test", licence="test", config={"kind": "mask", **config.to_dict()},
        root=entry.root, origin="user",
    )
    write_manifest(entry.root, [entry, mask_entry])
    assert not METHOD.is_model_entry(mask_entry)
    METHOD.load(mask_entry, net_state, "cpu", auxiliary)  # validates strictly
    with pytest.raises(UserError, match="mask network found no object") as err:
        METHOD.load(entry, state, "cpu", auxiliary).run(photo, short, seed=0, progress=Recorder())
    assert err.value.code == "empty_mask"
    net_state["head.bias"] = torch.full_like(net_state["head.bias"], 20.0)  # sees the whole crop
    save_file(net_state, path)
    mask_entry = replace(mask_entry, sha256=sha256_file(path), size=path.stat().st_size)
    write_manifest(entry.root, [entry, mask_entry])
    helped = METHOD.load(entry, state, "cpu", auxiliary).run(photo, short, seed=0, progress=Recorder())
    assert helped.info["mask_source"] == "mask network"


def test_w_plus_inversion_runs_through_the_pipeline(model):
    short = options(num_stages=1, stage0=(2, 2, 2), previews=False)
    outcome = model.reconstruct(ellipse_photo(), short, 1, Recorder(), Research(invert_w_plus=True))
    result = model.export(outcome)
    assert np.isfinite(result.vertices).all() and result.info["losses"]["step3"] is not None


def test_same_seed_same_result_other_seed_other_result(model):
    photo = ellipse_photo()
    short = options(num_stages=1, stage0=(3, 3, 3), previews=False)
    a = model.run(photo, short, seed=7, progress=Recorder())
    b = model.run(photo, short, seed=7, progress=Recorder())
    c = model.run(photo, short, seed=8, progress=Recorder())
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.texture, b.texture)
    assert a.info["loss_curves"] == b.info["loss_curves"]
    assert a.vertices.shape != c.vertices.shape or not np.array_equal(a.vertices, c.vertices)


@pytest.mark.parametrize("stage", ["invert", "prior", "step2", "step3"])
def test_cancel_stops_the_run(model, stage):
    recorder = Recorder(cancel_at=stage)
    with pytest.raises(JobCancelled):
        model.run(ellipse_photo(), options(), seed=0, progress=recorder)
    assert all(e[0] != stage for e in recorder.events)


def test_a_diverging_generator_is_a_clear_error(tiny_entry, auxiliary):
    entry, state = tiny_entry
    broken = dict(state)
    broken["g_ema.to_rgb1.bias"] = torch.full_like(state["g_ema.to_rgb1.bias"], float("nan"))
    model = METHOD.load(entry, broken, "cpu", auxiliary)
    with pytest.raises(FloatingPointError, match="diverged"):
        model.run(ellipse_photo(), options(), seed=0, progress=Recorder())


def test_the_view_prior_is_centred_on_the_entry_mean_unless_an_option_moves_it(tiny_entry, auxiliary):
    """The GAN's mean training view is where pseudo views are drawn around and what the view net's
    output is relative to; ``view_mean`` overrides it, and result.json records the one used."""
    entry, state = tiny_entry
    pitched = [0.25, 0.0, 0.0, 0.0, 0.0, 0.0]
    pitched_entry = replace(entry, config={**entry.config, "view_mean": pitched})
    model = METHOD.load(pitched_entry, state, "cpu", auxiliary)
    outcome = model.reconstruct(ellipse_photo(), options(), seed=1, progress=Recorder())
    run = outcome.run
    assert run.prior.view_mean.tolist() == pitched
    with torch.no_grad():
        expected = scale_view(run.nets.netV(run.target.image) + run.prior.view_mean)
    assert torch.allclose(run.state.view, expected, atol=1e-6)
    moved_mean = options(view_mean=(-0.1, 0.2, 0, 0, 0, 0))
    moved = model.run(ellipse_photo(), moved_mean, seed=1, progress=Recorder())
    assert moved.info["view_mean"] == [-0.1, 0.2, 0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="view_mean"):
        model.run(ellipse_photo(), options(view_mean=(0.1, 0.2)), seed=0, progress=Recorder())


def test_depth_smoothing_smooths_the_final_relief_on_the_object_only(model):
    """Same seed with and without ``depth_smoothing``: the nets end identical, the final canonical
    depth is the smoothed one on the object (untouched outside), and the view depth, normals,
    canonical mask and the exported relief all follow it."""
    photo, short = ellipse_photo(), options(num_stages=1, stage0=(3, 3, 3), previews=False)
    plain = model.reconstruct(photo, replace(short, depth_smoothing=0.0), seed=2, progress=Recorder())
    smooth = model.reconstruct(photo, replace(short, depth_smoothing=2.0), seed=2, progress=Recorder())
    object_ = plain.run.canon_mask[0, 0] > 0.5
    raw, smoothed = plain.state.depth[0], smooth.state.depth[0]
    grid = depth_render.view_to_canon_grid(smoothed[None], smooth.state.view)
    seen = depth_render.sample(smooth.run.target.mask, grid)
    assert torch.equal(smooth.run.canon_mask, seen)  # the input mask through the smoothed relief
    assert torch.equal(smoothed[~object_], raw[~object_])
    assert torch.allclose(smoothed, smooth_depth(raw[None], object_[None], 2.0)[0])

    def roughness(depth):  # mean |second difference| across the object
        return (depth[1:-1] * 2 - depth[:-2] - depth[2:]).abs()[object_[1:-1]].mean()

    assert roughness(smoothed) < 0.5 * roughness(raw)
    view = smooth.state.view
    assert torch.allclose(smooth.state.recon_depth, depth_render.warp_canon_depth(smooth.state.depth, view))
    assert torch.allclose(smooth.state.normal, normals_from_depth(smooth.state.depth))
    a, b = model.export(plain), model.export(smooth)
    assert a.vertices.shape != b.vertices.shape or not np.allclose(a.vertices, b.vertices)


def test_unknown_or_bad_options_are_refused(model):
    with pytest.raises(UserError, match="unknown option"):
        parse_options(Options, "fast", {"stages": 3})
    with pytest.raises(ValueError, match="texture"):
        model.run(ellipse_photo(), options(texture="glossy"), seed=0, progress=Recorder())


def test_published_schedules_by_category():
    paper = preset_options(Options, "paper")
    car, face, synface = resolve("car", paper), resolve("face", paper), resolve("synface", paper)
    assert (car.num_stages, car.stage0, car.later, car.batch) == (4, (700, 700, 600), (200, 500, 400), 8)
    assert car.use_mask and not car.relative_enc and car.flip3 == (False,) * 4
    assert (face.stage0, face.later, face.batch, face.flip3[0], face.view_scale) == (
        (600, 600, 400), (200, 500, 300), 16, True, 1.2)
    assert (synface.num_stages, synface.f1_d, synface.rand_light[0]) == (1, 8, -0.9)
    assert car.prior_iters == 1000 and car.collect_iters == 100 and car.lr == 1e-4
    # car and church: 4 data-parallel GPUs on the one image (effective batch 32); faces one per GPU
    assert (car.accumulate, resolve("church", paper).accumulate, face.accumulate) == (4, 4, 1)
    assert car.pseudo_pose == "predicted"
    fast = resolve("car", preset_options(Options, "fast"))
    assert fast.accumulate == 1 and fast.pseudo_pose == "auto"
    assert fast.total_steps(0) + fast.total_steps(1) + fast.total_steps(2) < 500


def test_full_frame_crop_keeps_the_whole_photo():
    photo = ellipse_photo(96, 72)
    crop = crop_input(photo, 64, resolve("car", options(crop="full")))
    assert crop.box == [0.0, -12.0, 96.0] and crop.image_size == [96, 72]
    assert crop.rgb.shape == (64, 64, 3) and crop.mask.shape == (64, 64)
    assert crop.mask[:4].max() == 0 and crop.mask[-4:].max() == 0  # padding rows are not object
    rows = np.flatnonzero(crop.mask.max(axis=1) > 0.5)
    cols = np.flatnonzero(crop.mask.max(axis=0) > 0.5)
    # The ellipse spans 70 % of the width and 60 % of the height of the photo, centred.
    assert abs((cols[-1] - cols[0] + 1) - 0.7 * 64) <= 2 and abs((rows[-1] - rows[0] + 1) - 0.6 * 48) <= 2
    object_crop = crop_input(photo, 64, resolve("car", options(crop="object", crop_margin=0.0)))
    assert object_crop.box[2] == pytest.approx(0.7 * 96, abs=2)


def test_sampled_pseudo_pose_is_the_pose_each_pseudo_sample_was_made_with(model):
    """Fresh nets (no pretrained view/light nets): ``auto`` takes the pseudo samples' own poses,
    and rendering the current relief with a stored pose reproduces its pseudo sample."""
    outcome = model.reconstruct(ellipse_photo(), options(), seed=1, progress=Recorder())
    run, state = outcome.run, outcome.run.state
    assert run.sampled_pose and run.projected_poses.shape == (run.projected.shape[0], 11)
    with torch.no_grad():
        pseudo, _, poses = run.sample_pseudo(3)
        view, (ambient, diffuse, direction) = run.projected_view_light(pseudo, poses)
        lambert = depth_render.diffuse_shading(state.normal[:1].expand(3, -1, -1, -1), direction)
        lit = depth_render.shade(state.albedo[:1].expand(3, -1, -1, -1), lambert, ambient, diffuse)
        image, _, _ = depth_render.render_view(lit, state.depth[:1].expand(3, -1, -1), view)
    assert torch.allclose(image.clamp(-1, 1), pseudo, atol=1e-5)
    assert not torch.allclose(view[0], view[1])


def test_predicted_pseudo_pose_asks_the_view_and_light_nets(model):
    predicted = options(pseudo_pose="predicted")
    outcome = model.reconstruct(ellipse_photo(), predicted, seed=1, progress=Recorder())
    run = outcome.run
    assert not run.sampled_pose
    with torch.no_grad():
        pseudo, _, poses = run.sample_pseudo(2)
        view, _ = run.projected_view_light(pseudo, poses)
        expected = scale_view(run.nets.netV(pseudo) + run.prior.view_mean)
    assert torch.allclose(view, expected)
    with pytest.raises(ValueError, match="pseudo_pose"):
        model.run(ellipse_photo(), options(pseudo_pose="guess"), seed=0, progress=Recorder())


def test_optimised_projections_fit_each_pseudo_sample_on_its_own(model):
    recorder = Recorder()
    optimise = Research(projection="optimise", projection_lr=0.1)
    outcome = model.reconstruct(ellipse_photo(), options(), seed=2, progress=recorder, research=optimise)
    run, opts = outcome.run, resolve("car", options())
    steps = [e for e in recorder.events if e[0] == "step2"]
    assert [e[1] for e in steps] == list(range(1, opts.total_steps(1) + 1))
    assert len(run.history.losses["step2"]) == opts.total_steps(1)
    assert run.projected.shape[0] == run.projected_poses.shape[0] == opts.collect_iters * opts.batch
    assert (run.projected[0] - run.projected[1]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="projection"):
        Research(projection="nearest")
