"""The encoder start: a real ``PoseLatentEncoder`` whose heads are set to a known guess (zero weights,
the guess as bias) stands for a trained one, so the tests check what the inverter does with a guess:
accept a good one without searching, start from the guessed z (``encoder``) or score random z
(``encoder_view``) under the guessed view, fall back to the search when the guess does not fit,
and find the encoder registered for its generator only."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from backend.methods.meshinversion.camera_search import (
    WeakPerspective,
    search_cameras,
    turn_around,
    view_quaternion,
)
from backend.methods.meshinversion.encoder import (
    INPUT_SIZE,
    EncoderConfig,
    PoseLatentEncoder,
    encoder_input,
)
from backend.methods.meshinversion.invert import InversionSettings, Inverter, Targets
from backend.methods.meshinversion.mesh_gan import MeshGAN
from backend.methods.meshinversion.options import Options
from backend.models import load_model
from backend.weights import Registry, WeightsEntry, sha256_file, write_manifest
from tests.meshinversion.helpers import render_photo, small_generator

SIZE = 64
AZIMUTH, ELEVATION = 60.0, 15.0
SETTINGS = InversionSettings.from_options(replace(
    Options(), render_size=SIZE, z_candidates=16, rendered_candidates=8, azimuths=8, elevations=(0.0, 25.0),
    camera_keep=3, camera_refine_steps=10, stages=((10, 0.1, 0.01),), chamfer_points=512, feature_weight=0.0,
    silhouette_weight=1.0, chunk=32, start="encoder", start_scoring="colour_layout",
))  # fmt: skip


def fixed_encoder(z: torch.Tensor, azimuth_deg: float, elevation_deg: float) -> PoseLatentEncoder:
    """An encoder that predicts ``z`` and the given view for every input."""
    encoder = PoseLatentEncoder(EncoderConfig(latent_dim=z.shape[-1], width=8))
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    with torch.no_grad():
        camera = torch.tensor([math.cos(az), math.sin(az), el, 0.0, 0.0, 0.0])
        for head, bias in ((encoder.head_z, z.flatten()), (encoder.head_camera, camera)):
            head.weight.zero_()
            head.bias.copy_(bias)
    return encoder.eval()


@pytest.fixture(scope="module")
def scene() -> tuple[MeshGAN, torch.Tensor, Targets, WeakPerspective]:
    model = MeshGAN(small_generator())
    z = torch.randn(1, 64, generator=torch.Generator().manual_seed(3))
    rgb, mask, camera = render_photo(model, z, AZIMUTH, ELEVATION, SIZE)
    return model, z, Targets.from_arrays([rgb], [mask], model.device), camera


def record(events: list[str]):
    """A progress callback that keeps the stage names."""
    return lambda stage, *_args, **_kwargs: events.append(stage)


def angle_to(camera: WeakPerspective, quaternion: torch.Tensor) -> float:
    """Degrees between the start's rotation and ``quaternion`` (1, 4)."""
    q = torch.nn.functional.normalize(camera.quaternion, dim=-1)
    return math.degrees(2 * math.acos(min(1.0, float((q * quaternion).sum(-1).abs()))))


def test_encoder_input_masks_and_resizes() -> None:
    rgb = torch.ones(2, 3, 256, 256)
    mask = torch.zeros(2, 256, 256, dtype=torch.bool)
    mask[:, 64:192, 64:192] = True
    x = encoder_input(rgb, mask)
    assert x.shape == (2, 4, INPUT_SIZE, INPUT_SIZE)
    assert x[:, :, 0, 0].abs().sum() == 0 and torch.allclose(x[:, :, 64, 64], torch.ones(2, 4))


def test_per_image_hypotheses_equal_shared_ones(scene) -> None:
    model, z, targets, _ = scene
    shapes = model.shape(z.repeat(2, 1), None)
    grid = view_quaternion(torch.tensor([0.3, 2.0]), torch.tensor([0.1, 0.2]))
    coarse = targets.mask.repeat(2, 1, 1)
    shared, iou_shared = search_cameras(shapes, model.faces, model.topology, coarse, grid, 2, 3,
                                        torch.Generator().manual_seed(0))  # fmt: skip
    own, iou_own = search_cameras(shapes, model.faces, model.topology, coarse, grid.expand(2, 2, 4), 2, 3,
                                  torch.Generator().manual_seed(0))  # fmt: skip
    torch.testing.assert_close(iou_own, iou_shared)
    torch.testing.assert_close(own.quaternion, shared.quaternion)


def test_a_good_guess_starts_without_the_search(scene) -> None:
    model, z, targets, camera = scene
    events: list[str] = []
    good = fixed_encoder(z, AZIMUTH, ELEVATION)
    inverter = Inverter(model, replace(SETTINGS, encoder_accept_iou=0.5), encoder=good)
    start = inverter.initialise(targets, torch.Generator().manual_seed(0), record(events))
    assert not any("camera search" in e for e in events) and any("encoder" in e for e in events)
    assert not bool(start.searched[0]) and float(start.camera_iou[0]) > 0.8
    assert angle_to(start.camera, camera.quaternion) < 20  # refined on the candidates' mean shape


@pytest.mark.parametrize("start", ["encoder", "encoder_view"])
def test_the_start_takes_the_guessed_view_and_with_encoder_the_guessed_z(scene, start: str) -> None:
    """``encoder``: the start is the encoder's own z in its own (refined) view, whatever random draw
    fits the outline better; ``encoder_view``: a random draw scored under that view."""
    model, z, targets, camera = scene
    guess = fixed_encoder(z, AZIMUTH + 180.0, ELEVATION)  # the encoder decides front from back
    start_ = Inverter(model, replace(SETTINGS, start=start), encoder=guess).encoder_start(
        targets, torch.Generator().manual_seed(0), lambda *a, **k: None
    )
    assert angle_to(start_.camera, camera.quaternion) > 150
    if start == "encoder":
        torch.testing.assert_close(start_.z, z)
    else:
        assert (start_.z - z).abs().max() > 0.1


def test_turn_around_is_the_view_from_the_other_side() -> None:
    azimuth, elevation = torch.tensor([0.3, 2.0, -1.0]), torch.tensor([0.1, 0.5, 0.0])
    turned = turn_around(view_quaternion(azimuth, elevation))
    expected = view_quaternion(azimuth + math.pi, elevation)
    torch.testing.assert_close((turned * expected).sum(-1).abs(), torch.ones(3))  # q and -q: one rotation


@pytest.mark.parametrize("searched", [False, True])
def test_turn_start_fits_from_the_front_back_twin(scene, searched: bool) -> None:
    """A guess (or, without an encoder, a search) that swapped front and back: ``turn_start`` starts
    from the other side, the right one, keeping the start's z; the encoder's confidence is kept."""
    model, z, targets, camera = scene
    swapped = fixed_encoder(z, AZIMUTH + 180.0, ELEVATION)
    settings = replace(SETTINGS, encoder_accept_iou=0.5)
    quiet = lambda *a, **k: None  # noqa: E731
    rng = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    if searched:  # the search's own start, turned: z kept, the view 180 deg away, placed on the mask again
        plain = Inverter(model, settings).initialise(targets, rng(), quiet)
        start = Inverter(model, replace(settings, turn_start=True)).initialise(targets, rng(), quiet)
        assert angle_to(start.camera, torch.nn.functional.normalize(plain.camera.quaternion)) > 150
        torch.testing.assert_close(start.z, plain.z)
        assert bool(start.searched[0]) and math.isnan(float(start.confidence[0]))
        return
    turned = Inverter(model, replace(settings, turn_start=True), encoder=swapped)
    start = turned.initialise(targets, rng(), quiet)
    assert angle_to(start.camera, camera.quaternion) < 20 and not bool(start.searched[0])
    torch.testing.assert_close(start.z, z)
    assert float(start.confidence[0]) == pytest.approx(1.0)
    photo = targets.rgb[0].permute(1, 2, 0).numpy() / 2 + 0.5
    result = turned.run([photo], [targets.mask[0].numpy()], 0, quiet)[0]
    assert result.start == "encoder" and result.pose_confidence == pytest.approx(1.0)
    with pytest.raises(ValueError, match="turn_start"):
        replace(settings, turn_start=True, restarts=2)


def test_a_bad_guess_falls_back_to_the_search(scene) -> None:
    model, z, targets, _ = scene
    events: list[str] = []
    bad = fixed_encoder(torch.full_like(z, 3.0), AZIMUTH + 90.0, 80.0)
    inverter = Inverter(model, replace(SETTINGS, encoder_accept_iou=1.0), encoder=bad)
    guess = inverter.encoder_start(targets, torch.Generator().manual_seed(0), lambda *a, **k: None)
    start = inverter.initialise(targets, torch.Generator().manual_seed(0), record(events))
    assert any("camera search" in e for e in events)
    assert float(start.scores[0]) <= float(guess.scores[0]) + 1e-6
    results = inverter.run([targets.rgb[0].permute(1, 2, 0).numpy() / 2 + 0.5], [targets.mask[0].numpy()], 0,
                           lambda *a, **k: None)  # fmt: skip
    assert results[0].start in ("search", "encoder")


def test_the_encoder_registered_for_its_generator_is_found(tmp_path: Path) -> None:
    """Two encoder entries in the store: one for another generator's sha256, one for this one."""
    generator = small_generator()
    save_file({k: v.contiguous() for k, v in generator.state_dict().items()}, tmp_path / "gen.safetensors")
    encoder = fixed_encoder(torch.zeros(1, 64), 0.0, 0.0)
    save_file({k: v.contiguous() for k, v in encoder.state_dict().items()}, tmp_path / "enc.safetensors")
    gen_sha = sha256_file(tmp_path / "gen.safetensors")
    configs = {"gen": dict(generator.config.to_dict())}
    for name, sha in (("enc-other", "0" * 64), ("enc-mine", gen_sha)):
        configs[name] = {**encoder.config.to_dict(), "generator": "gen", "generator_sha256": sha}
    entries = []
    for weights_id, config in configs.items():
        path = tmp_path / ("gen.safetensors" if weights_id == "gen" else "enc.safetensors")
        entries.append(WeightsEntry(id=weights_id, method="meshinversion", category="car", file=path.name,
                                    sha256=sha256_file(path), size=path.stat().st_size, source="test",
                                    licence="test", config=config))  # fmt: skip
    write_manifest(tmp_path, entries)
    (tmp_path / "shipped").mkdir()
    store = Registry(user_dir=tmp_path, shipped_dir=tmp_path / "shipped")
    method = load_model(store, store.find("gen"), "cpu")
    found = method.start_encoder()
    assert found is not None
    torch.testing.assert_close(found.head_z.bias, encoder.head_z.bias)
    assert load_model(store, store.find("enc-mine"), "cpu").model is None  # auxiliary, validated only


def test_the_latent_prior_centred_at_the_start_holds_the_guessed_z(scene) -> None:
    """``latent_centre=start``: under a strong prior z stays at the start; the published prior, centred
    at the origin, shrinks it."""
    model, z, targets, camera = scene
    strong = replace(SETTINGS, latent_weight=200.0)
    inverter = Inverter(model, strong)
    z0 = 2.0 * z

    def fit(centre: torch.Tensor | None) -> torch.Tensor:
        fitted, _, _ = inverter.optimise(z0, None, camera, targets, [(10, 0.1, 0.01)],
                                         torch.Generator().manual_seed(0), lambda *a, **k: None, 0,
                                         centre)  # fmt: skip
        return fitted

    held, shrunk = fit(z0), fit(None)
    assert (held - z0).norm() < 0.05 * z0.norm()
    assert shrunk.norm() < 0.8 * z0.norm()
    vertices, rendering = _render(model, z0, camera)
    terms = inverter.losses(z0, vertices, rendering, camera, targets, torch.Generator(), centre=z0).terms
    assert float(terms["latent"]) == 0.0


def _render(model: MeshGAN, z: torch.Tensor, camera: WeakPerspective) -> tuple:
    with torch.no_grad():
        texture, vertices = model.generate(z, None)
        return vertices, model.render(vertices, texture, camera, SIZE)
