"""A short inversion on photos rendered from a small random generator: it fits, it is repeatable,
it can be cancelled, it refuses NaN, and several photos run as one batch."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from backend.methods.base import JobCancelled
from backend.methods.meshinversion.camera_search import view_quaternion
from backend.methods.meshinversion.invert import InversionSettings, Inverter, distinct_views
from backend.methods.meshinversion.mesh_gan import MeshGAN
from backend.methods.meshinversion.options import Options
from backend.options import parse_options
from backend.protocol import UserError
from tests.meshinversion.helpers import render_photo, small_generator

SIZE = 64
TINY = InversionSettings.from_options(replace(
    Options(), render_size=SIZE, z_candidates=16, rendered_candidates=8, azimuths=8, elevations=(0.0, 25.0),
    camera_keep=3, camera_refine_steps=10, stages=((15, 0.1, 0.01), (10, 0.05, 0.005)),
    chamfer_points=512, feature_weight=0.0, silhouette_weight=1.0, chunk=32,
))  # fmt: skip
"""Paper values (``Options()``) but for a tiny, fast schedule."""


def quiet(*_args, **_kwargs) -> None:
    """A progress callback that never cancels."""


@pytest.fixture(scope="module")
def model() -> MeshGAN:
    return MeshGAN(small_generator())


@pytest.fixture(scope="module")
def photo(model: MeshGAN):
    return render_photo(
        model, torch.randn(1, 64, generator=torch.Generator().manual_seed(5)), 150.0, 20.0, SIZE
    )


def test_inversion_fits_the_photo_and_reports_progress(model: MeshGAN, photo) -> None:
    rgb, mask, _ = photo
    events = []
    result = Inverter(model, TINY).run([rgb], [mask], seed=0, progress=lambda *a, **k: events.append((a, k)))[
        0
    ]
    first, last = result.stage_losses[0], result.stage_losses[-1]
    assert last["total"] < first["total"]
    assert result.mask_iou > result.init_mask_iou + 0.02
    assert result.mask_iou > 0.9
    assert set(first) == {"total", "mask", "pixel", "latent", "silhouette"}
    steps = [a[1] for a, _ in events if a[0].startswith("optimise")]
    assert steps == list(range(1, TINY.total_steps + 1))
    assert sum(k.get("preview") is not None for _, k in events) == len(TINY.stages)
    assert result.texture.shape == (3, 256, 256) and result.vertices.shape == (482, 3)


def test_same_seed_same_result_other_seed_differs(model: MeshGAN, photo) -> None:
    rgb, mask, _ = photo
    short = InversionSettings(**{**TINY.__dict__, "stages": ((5, 0.1, 0.01),)})
    a = Inverter(model, short).run([rgb], [mask], seed=3, progress=quiet)[0]
    b = Inverter(model, short).run([rgb], [mask], seed=3, progress=quiet)[0]
    c = Inverter(model, short).run([rgb], [mask], seed=4, progress=quiet)[0]
    assert torch.equal(a.z, b.z) and torch.equal(a.camera.quaternion, b.camera.quaternion)
    assert not torch.equal(a.z, c.z)


def test_cancel_between_steps(model: MeshGAN, photo) -> None:
    rgb, mask, _ = photo
    calls = []

    def cancel_at_third_step(stage: str, step: int, total: int, **_: object) -> None:
        calls.append(stage)
        if stage.startswith("optimise") and step == 3:
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        Inverter(model, TINY).run([rgb], [mask], seed=0, progress=cancel_at_third_step)
    assert sum(stage.startswith("optimise") for stage in calls) == 3


def test_nan_generator_is_refused(photo) -> None:
    broken = small_generator()
    with torch.no_grad():
        broken.fc.bias[0] = float("nan")
    rgb, mask, _ = photo
    with pytest.raises(FloatingPointError, match="diverged"):
        Inverter(MeshGAN(broken), TINY).run([rgb], [mask], seed=0, progress=quiet)


def test_batch_of_photos_and_conditional_labels() -> None:
    conditional = MeshGAN(small_generator(n_classes=5, seed=1))
    photos = [
        render_photo(
            conditional,
            torch.randn(1, 64, generator=torch.Generator().manual_seed(i)),
            az,
            10.0,
            SIZE,
            label=i,
        )
        for i, az in ((1, 30.0), (2, 270.0))
    ]
    settings = InversionSettings(**{**TINY.__dict__, "stages": ((4, 0.1, 0.01), (4, 0.05, 0.005))})
    restarted = InversionSettings(**{**settings.__dict__, "restarts": 2})
    events = []
    results = Inverter(conditional, restarted).run(
        [p[0] for p in photos], [p[1] for p in photos], 0, lambda *a, **k: events.append(a)
    )
    assert [a[1] for a in events if a[0].startswith("optimise")] == list(range(1, 9))
    assert len(results) == 2 and all(len(r.stage_losses) == 2 for r in results)
    assert all(r.label is not None and len(r.label) == 1 and 0 <= r.label[0] < 5 for r in results)
    fixed = InversionSettings(**{**settings.__dict__, "class_label": 4})
    assert Inverter(conditional, fixed).run([photos[0][0]], [photos[0][1]], 0, quiet)[0].label == (4,)
    with pytest.raises(ValueError, match="class_label"):
        Inverter(conditional, InversionSettings(**{**settings.__dict__, "class_label": 9})).run(
            [photos[0][0]], [photos[0][1]], 0, quiet
        )


def test_settings_from_options_validates_names() -> None:
    options = parse_options(Options, "paper", {"stages": "[[10, 0.1, 0.01]]", "elevations": "[0, 30]",
                                               "class_label": "3"})  # fmt: skip
    settings = InversionSettings.from_options(options)
    assert settings.stages == ((10, 0.1, 0.01),) and settings.elevations == (0.0, 30.0)
    assert settings.class_label == 3 and settings.total_steps == 10
    assert (settings.flat_weight, settings.restarts) == (0.0, 1)  # research settings: code sets them
    with pytest.raises(UserError, match="unknown option"):
        parse_options(Options, "paper", {"render_sise": 128})
    with pytest.raises(ValueError, match="restarts"):
        InversionSettings.from_options(options, restarts=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_runs_on_cuda(photo) -> None:
    rgb, mask, _ = photo
    model = MeshGAN(small_generator().cuda())
    result = Inverter(model, TINY).run([rgb], [mask], seed=0, progress=quiet)[0]
    assert result.z.is_cuda and result.vertices.is_cuda and result.mask_iou > 0.8


def test_distinct_views_skips_near_duplicates() -> None:
    azimuths = torch.tensor([0.0, 10.0, 180.0, 5.0, 90.0]).deg2rad()
    quaternions = view_quaternion(azimuths, torch.zeros(5)) * torch.tensor([1.0, -1, 1, 1, 1])[:, None]
    assert distinct_views(quaternions, 2).tolist() == [0, 2]  # q and -q are the same rotation
    assert distinct_views(quaternions, 3).tolist() == [0, 2, 4]
    assert distinct_views(quaternions[:2], 2).tolist() == [0, 1]  # too few distinct: the next best


def test_refinement_fits_an_outline_the_generator_cannot_and_stays_mirrored(model: MeshGAN) -> None:
    """A generator shape stretched by 30 % in height is outside the latent space: the refinement's
    residual follows the outline better than z alone, keeps the mirror symmetry, and reports itself."""
    z = torch.randn(1, 64, generator=torch.Generator().manual_seed(7))
    camera = render_photo(model, z, 60.0, 15.0, SIZE)[2]
    with torch.no_grad():
        texture, vertices = model.generate(z, None)
        rendering = model.render(vertices * torch.tensor([1.0, 1.3, 1.0]), texture, camera, SIZE)
    mask = rendering.mask[0]
    rgb = torch.where(mask, (rendering.rgb[0] + 1) / 2, torch.full_like(rendering.rgb[0], 0.9))
    rgb, mask = rgb.permute(1, 2, 0).numpy(), mask.float().numpy()

    fast_start = {**TINY.__dict__, "start_scoring": "colour_layout"}  # refinement is fast's, so is its start
    plain = Inverter(model, InversionSettings(**fast_start)).run([rgb], [mask], seed=0, progress=quiet)[0]
    refined_settings = InversionSettings(**{**fast_start, "refine_steps": 40, "refine_lr": 0.003})
    events = []
    refined = Inverter(model, refined_settings).run(
        [rgb], [mask], seed=0, progress=lambda *a, **k: events.append(a)
    )[0]
    assert refined.mask_iou > plain.mask_iou + 0.01
    assert torch.equal(refined.z, plain.z) and torch.equal(refined.texture, plain.texture)
    mirrored = refined.vertices[model.template.mirror] * torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(mirrored, refined.vertices, atol=1e-5, rtol=0)
    assert len(refined.stage_losses) == len(TINY.stages) + 1 and "smoothness" in refined.stage_losses[-1]
    assert [a[1] for a in events if a[0] == "refine shape"] == list(range(1, 41))
    with pytest.raises(ValueError, match="refine"):
        replace(Options(), refine_steps=-1)
