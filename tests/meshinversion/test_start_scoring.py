"""How the inversion's start is chosen: ``published`` (paper) takes the (candidate, kept camera) pair
with the lowest published loss, as the official ``init_z`` does; ``colour_layout`` (fast) keeps the
silhouette pre-ranking and the colour-layout heuristic."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

import backend.methods.meshinversion.invert as invert
from backend.methods.meshinversion.camera_search import WeakPerspective
from backend.methods.meshinversion.invert import InversionSettings, Inverter, Targets
from backend.methods.meshinversion.mesh_gan import MeshGAN
from backend.methods.meshinversion.options import Options
from backend.options import parse_options
from backend.protocol import UserError
from tests.meshinversion.helpers import render_photo, small_generator

SIZE = 64
PAIRS = 24
SETTINGS = InversionSettings.from_options(replace(
    Options(), render_size=SIZE, z_candidates=12, rendered_candidates=PAIRS, azimuths=8,
    elevations=(0.0, 25.0), camera_keep=2, camera_refine_steps=10, stages=((1, 0.1, 0.01),),
    chamfer_points=SIZE * SIZE, feature_weight=0.0, chunk=8,
))  # fmt: skip
"""Paper losses; 12 candidates x 2 cameras, all rendered in either mode; ``chamfer_points`` covers
every pixel, so the chamfer terms do not depend on the random subsampling."""


def quiet(*_args, **_kwargs) -> None:
    """A progress callback that never cancels."""


@pytest.fixture(scope="module")
def model() -> MeshGAN:
    return MeshGAN(small_generator())


@pytest.fixture(scope="module")
def targets(model: MeshGAN) -> Targets:
    """A photo of a shape no candidate reproduces (z drawn at twice the prior's spread), on a dark
    background: here the full loss and the colour-layout heuristic prefer different starts."""
    z = 2 * torch.randn(1, 64, generator=torch.Generator().manual_seed(1))
    rgb, mask, _ = render_photo(model, z, 40.0, 20.0, SIZE, background=0.2)
    return Targets.from_arrays([rgb], [mask], torch.device("cpu"))


def recorded_start(
    model: MeshGAN, targets: Targets, scoring: str, monkeypatch: pytest.MonkeyPatch
) -> tuple[invert.Starts, torch.Tensor, WeakPerspective]:
    """The start chosen with ``scoring``, and the candidates and kept cameras it chose among."""
    seen: dict[str, object] = {}
    search = invert.search_cameras

    def recording_search(*args, **kwargs):
        seen["cameras"] = search(*args, **kwargs)
        return seen["cameras"]

    monkeypatch.setattr(invert, "search_cameras", recording_search)
    inverter = Inverter(model, replace(SETTINGS, start_scoring=scoring))
    z, _ = inverter.draw_candidates(1, torch.Generator().manual_seed(0))
    start = inverter.initialise(targets, torch.Generator().manual_seed(0), quiet)
    cameras, _ = seen["cameras"]  # type: ignore[misc]
    return start, z[0], cameras


def every_pair(model: MeshGAN, z: torch.Tensor, cameras: WeakPerspective) -> tuple[torch.Tensor, ...]:
    """Candidate-major (z, camera rows) of every (candidate, camera) pair and their renders."""
    keep = len(cameras.scale)
    zs = z.repeat_interleave(keep, dim=0)
    rows = torch.arange(keep).repeat(len(z))
    with torch.no_grad():
        texture, vertices = model.generate(zs, None)
    return zs, rows, texture, vertices


def test_published_start_is_the_pair_with_the_lowest_full_loss(
    model: MeshGAN, targets: Targets, monkeypatch: pytest.MonkeyPatch
) -> None:
    start, z, cameras = recorded_start(model, targets, "published", monkeypatch)
    zs, rows, texture, vertices = every_pair(model, z, cameras)
    inverter = Inverter(model, SETTINGS)
    cams = cameras.index(rows)
    image = torch.zeros(len(zs), dtype=torch.long)
    with torch.no_grad():
        rendering = model.render(vertices, texture, cams, SIZE)
        # The official latent term is the optimiser's current z, the same for every candidate.
        full = inverter.losses(torch.zeros_like(zs), vertices, rendering, cams, targets.rows(image),
                               torch.Generator().manual_seed(0)).total  # fmt: skip
        layout = inverter.candidate_score(zs, vertices, rendering, cams, targets.rows(image),
                                          torch.Generator().manual_seed(0))  # fmt: skip
    best = int(full.argmin())
    assert int(layout.argmin()) != best, "the heuristic must disagree with the full loss in this case"
    assert torch.equal(start.z[0], zs[best])
    assert torch.equal(start.camera.quaternion[0], cams.quaternion[best])
    assert float(start.scores[0]) == pytest.approx(float(full[best]), rel=1e-5)

    heuristic, _, _ = recorded_start(model, targets, "colour_layout", monkeypatch)
    assert not torch.equal(heuristic.z[0], start.z[0])


def test_fast_keeps_the_colour_layout_path_and_paper_scores_every_pair(
    model: MeshGAN, targets: Targets, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert parse_options(Options, "fast", {}).start_scoring == "colour_layout"
    assert parse_options(Options, "paper", {}).start_scoring == "published"
    with pytest.raises(UserError, match="start_scoring"):
        parse_options(Options, "paper", {"start_scoring": "colour"})

    calls: dict[str, list[int]] = {"candidate_score": [], "published_score": [], "silhouette": []}
    for name in ("candidate_score", "published_score"):
        original = getattr(Inverter, name)

        def counted(self, z, *args, _name=name, _original=original):
            calls[_name].append(len(z))
            return _original(self, z, *args)

        monkeypatch.setattr(Inverter, name, counted)
    silhouette = MeshGAN.silhouette

    def counted_silhouette(self, vertices, *args):
        calls["silhouette"].append(len(vertices))
        return silhouette(self, vertices, *args)

    monkeypatch.setattr(MeshGAN, "silhouette", counted_silhouette)
    fast = replace(SETTINGS, start_scoring="colour_layout", rendered_candidates=5)
    Inverter(model, fast).initialise(targets, torch.Generator().manual_seed(0), quiet)
    assert sum(calls["silhouette"]) == PAIRS and sum(calls["candidate_score"]) == 5
    assert not calls["published_score"]

    calls.update(candidate_score=[], published_score=[], silhouette=[])
    Inverter(model, SETTINGS).initialise(targets, torch.Generator().manual_seed(0), quiet)
    assert sum(calls["published_score"]) == PAIRS
    assert not calls["candidate_score"] and not calls["silhouette"]
