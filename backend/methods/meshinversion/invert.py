"""GAN inversion (MeshInversion, Zhang et al. 2022): fit z and a weak-perspective camera to photos.

Per image: (1) draw N latent candidates (random classes too, for a conditional model without a
given class); (2) place their mean shape with ``search_cameras`` (our departure: the official
code starts from CMR's predicted camera); (3) pick the start among every (candidate, kept camera)
pair, by ``start_scoring``: ``published`` scores every pair by the published loss, as the official
``init_z`` scores its draws under its one camera; ``colour_layout`` (not in the paper) ranks the
pairs by their coarse silhouette IoU, then renders the best few and scores them by the full loss
plus a colour-layout error (the texture tells front from back); (4) optimise z and the camera with
the published losses and schedule, optionally from several distinct starts through the first
stage. Several images run as one batch: every loss is per image and Adam is element-wise, so a
batch equals independent runs, but costs less per image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch

from backend.methods.base import Progress
from backend.methods.meshinversion.camera_search import (
    WeakPerspective,
    hypothesis_grid,
    search_cameras,
    turn_around,
)
from backend.methods.meshinversion.encoder import PoseLatentEncoder, encoder_input
from backend.methods.meshinversion.losses import (
    chamfer_mask_loss,
    feature_chamfer_loss,
    flat_loss,
    gather_points,
    laplacian_loss,
    latent_loss,
    mask_iou,
    mask_points,
    pixel_chamfer_loss,
    silhouette_loss,
    subsample,
)
from backend.methods.meshinversion.mesh_gan import MeshGAN, Rendering
from backend.methods.meshinversion.options import ENCODER_STARTS, Options
from backend.methods.meshinversion.vgg import VGG19Relu31
from backend.render.topology import build_edge_topology

SEARCH_SIZE = 64
"""Resolution of the silhouettes that rank camera hypotheses and candidate shapes."""
LAYOUT_WEIGHT = 10.0
"""Weight of the pooled colour error when candidates and cameras are ranked (see ``candidate_score``)."""
LAYOUT_POOLS = (4, 16)
"""Pooling factors of the colour layout error: fine detail and misalignment-tolerant coarse layout."""
RESEARCH = ("flat_weight", "restarts")
"""``InversionSettings`` fields that are not job options (benchmarks and tests set them)."""
SCORING_POINTS = 1024
"""Chamfer points (at most) when the rendered candidates are scored with the full loss: enough to
tell textures apart, and many candidates are scored at once."""


@dataclass(frozen=True)
class InversionSettings:
    """What the optimisation runs with: a job's ``Options`` (``from_options``; see there for each
    field) plus the research settings no preset changes, which only code sets."""

    render_size: int
    start: str
    encoder_accept_iou: float
    turn_start: bool
    z_candidates: int
    start_scoring: str
    rendered_candidates: int
    azimuths: int
    elevations: tuple[float, ...]
    camera_keep: int
    camera_refine_steps: int
    stages: tuple[tuple[int, float, float], ...]
    chamfer_points: int
    mask_weight: float
    pixel_weight: float
    feature_weight: float
    latent_weight: float
    latent_centre: str
    silhouette_weight: float
    refine_steps: int
    refine_lr: float
    refine_smoothness: float
    pole_fill: int
    class_label: int | None
    colour_label: int | None
    chunk: int
    flat_weight: float = 0.0
    """Research: weight of the flatness loss (0 = official)."""
    restarts: int = 1
    """Research: distinct starts per image run through the first stage; the best continues (1 = official)."""

    def __post_init__(self) -> None:
        if not 1 <= self.restarts <= self.rendered_candidates:
            raise ValueError("restarts must be between 1 and rendered_candidates")
        if self.turn_start and self.restarts != 1:
            raise ValueError("turn_start turns the one start of each image: restarts must be 1")

    @classmethod
    def from_options(cls, options: Options, **research: Any) -> InversionSettings:
        """The settings of ``options`` (lists become tuples); ``research``: ``flat_weight``, ``restarts``."""
        values = {f.name: getattr(options, f.name) for f in fields(cls) if f.name not in RESEARCH}
        values["stages"] = tuple((int(s), float(a), float(b)) for s, a, b in options.stages)
        values["elevations"] = tuple(float(e) for e in options.elevations)
        return cls(**values, **research)

    @property
    def total_steps(self) -> int:
        return sum(steps for steps, _, _ in self.stages)


@dataclass
class Targets:
    """What the photos give: ``rgb`` (B, 3, S, S) in [-1, 1], ``mask`` (B, S, S) bool, pixel centres
    ``xy`` (B, S*S, 2) and ``valid`` = mask flattened; ``features`` of the masked photo if VGG runs."""

    rgb: torch.Tensor
    mask: torch.Tensor
    xy: torch.Tensor
    valid: torch.Tensor
    features: torch.Tensor | None = None

    @classmethod
    def from_arrays(cls, rgbs: list[np.ndarray], masks: list[np.ndarray], device: torch.device) -> Targets:
        rgb = torch.from_numpy(np.stack(rgbs)).to(device=device, dtype=torch.float32).permute(0, 3, 1, 2)
        mask = torch.from_numpy(np.stack(masks) >= 0.5).to(device)
        xy, valid = mask_points(mask)
        return cls(rgb * 2 - 1, mask, xy, valid)

    @property
    def size(self) -> int:
        return int(self.mask.shape[-1])

    def rows(self, index: torch.Tensor) -> Targets:
        """The targets of images ``index`` (K,), e.g. one row per candidate scored against them."""
        features = None if self.features is None else self.features[index]
        return Targets(self.rgb[index], self.mask[index], self.xy[index], self.valid[index], features)


@dataclass
class LossTerms:
    """Per-image (B,) loss terms of one evaluation and their weighted sum."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]


@dataclass
class Starts:
    """Starting points, ``restarts`` rows per image (image-major): latents, labels, cameras, their
    candidate scores and the silhouette IoU their camera had in the search."""

    z: torch.Tensor
    labels: torch.Tensor | None
    camera: WeakPerspective
    scores: torch.Tensor
    camera_iou: torch.Tensor
    searched: torch.Tensor
    """(rows,) bool: the camera search made the start (else the encoder)."""
    confidence: torch.Tensor
    """(rows,) the encoder's azimuth confidence (``Guess.confidence``); NaN where the search made it."""

    def replace_rows(self, rows: torch.Tensor, other: Starts, picked: torch.Tensor) -> None:
        """Rows ``rows`` of these starts become rows ``picked`` of ``other``, in place."""
        self.z[rows], self.scores[rows] = other.z[picked], other.scores[picked]
        self.camera_iou[rows], self.searched[rows] = other.camera_iou[picked], other.searched[picked]
        self.confidence[rows] = other.confidence[picked]
        for mine, theirs in zip(self.camera.parameters(), other.camera.parameters(), strict=True):
            mine[rows] = theirs[picked]
        if self.labels is not None and other.labels is not None:
            self.labels[rows] = other.labels[picked]


@dataclass
class InversionResult:
    """One image's reconstruction, tensors on the model's device."""

    z: torch.Tensor
    label: tuple[int, ...] | None
    """(class,) or (class, colour) of a conditional generator."""
    camera: WeakPerspective
    texture: torch.Tensor
    vertices: torch.Tensor
    init_score: float
    camera_iou: float
    stage_losses: list[dict[str, float]] = field(default_factory=list)
    init_mask_iou: float = 0.0
    mask_iou: float = 0.0
    start: str = "search"
    """What made the start: ``search``, ``encoder_view`` or ``encoder`` (``Options.start``)."""
    pose_confidence: float | None = None
    """The encoder's azimuth confidence (``Guess.confidence``) where it made the start."""


class Inverter:
    """Runs the inversion for a ``MeshGAN`` with given settings; optional VGG for the feature loss."""

    def __init__(
        self, model: MeshGAN, settings: InversionSettings, vgg: VGG19Relu31 | None = None,
        encoder: PoseLatentEncoder | None = None,
    ) -> None:
        self.model = model
        self.settings = settings
        self.vgg = vgg if settings.feature_weight > 0 else None
        self.encoder = encoder if settings.start in ENCODER_STARTS and settings.restarts == 1 else None
        self.edge_faces = build_edge_topology(model.template.faces).edge_faces.to(model.device)
        self.edges = model.template.edges.to(model.device)

    # ---------------------------------------------------------------- losses
    def losses(
        self,
        z: torch.Tensor,
        vertices: torch.Tensor,
        rendering: Rendering,
        camera: WeakPerspective,
        targets: Targets,
        rng: torch.Generator,
        points: int | None = None,
        centre: torch.Tensor | None = None,
    ) -> LossTerms:
        """The official objective per image: 10 mask + 1 pixel + 0.04 feature + 0.05 latent (+ flat,
        + silhouette); ``points`` caps the chamfer subsampling (default ``chamfer_points``), ``centre``
        (B, latent) moves the latent prior's mean from the origin (``latent_centre``)."""
        s = self.settings
        points = points or s.chamfer_points
        t_index, t_valid = subsample(targets.valid, points, rng)
        t_xy = gather_points(targets.xy, t_index)
        terms = {"mask": chamfer_mask_loss(camera.project_xy(vertices), t_xy, t_valid)}

        pred_valid_all = rendering.mask.reshape(rendering.mask.shape[0], -1)
        p_index, p_valid = subsample(pred_valid_all, points, rng)
        p_xy = gather_points(targets.xy, p_index)
        p_rgb = gather_points(rendering.rgb.flatten(2).transpose(1, 2), p_index)
        t_rgb = gather_points(targets.rgb.flatten(2).transpose(1, 2), t_index)
        terms["pixel"] = pixel_chamfer_loss(p_xy, p_rgb, p_valid, t_xy, t_rgb, t_valid)
        if self.vgg is not None and targets.features is not None:
            terms["feature"] = self.feature_loss(rendering, targets, rng)
        terms["latent"] = latent_loss(z if centre is None else z - centre)
        if s.flat_weight > 0:
            terms["flat"] = flat_loss(vertices, self.model.faces, self.edge_faces)
        if rendering.alpha is not None:
            terms["silhouette"] = silhouette_loss(rendering.alpha, targets.mask)
        weights = self.weights()
        total = sum(weights[name] * value for name, value in terms.items())
        return LossTerms(total, terms)  # type: ignore[arg-type]

    def weights(self) -> dict[str, float]:
        """The weight of every loss term ``losses`` may return."""
        s = self.settings
        return {
            "mask": s.mask_weight,
            "pixel": s.pixel_weight,
            "feature": s.feature_weight,
            "latent": s.latent_weight,
            "flat": s.flat_weight,
            "silhouette": s.silhouette_weight,
        }

    def feature_loss(self, rendering: Rendering, targets: Targets, rng: torch.Generator) -> torch.Tensor:
        """Official feature chamfer on L2-normalised relu3_1 features over the 1/4-size masks."""
        assert self.vgg is not None and targets.features is not None
        pred_mask = rendering.mask[:, None].float()
        pred = torch.nn.functional.normalize(self.vgg(rendering.rgb, pred_mask), dim=1)
        pred_small = self.feature_mask(rendering.mask)
        target_small = self.feature_mask(targets.mask)
        xy, pred_valid = mask_points(pred_small)
        _, target_valid = mask_points(target_small)
        p_index, p_valid = subsample(pred_valid, self.settings.chamfer_points, rng)
        t_index, t_valid = subsample(target_valid, self.settings.chamfer_points, rng)
        flat_pred = pred.flatten(2).transpose(1, 2)
        flat_target = targets.features.flatten(2).transpose(1, 2)
        return feature_chamfer_loss(
            gather_points(xy, p_index),
            gather_points(flat_pred, p_index),
            p_valid,
            gather_points(xy, t_index),
            gather_points(flat_target, t_index),
            t_valid,
        )

    @staticmethod
    def feature_mask(mask: torch.Tensor) -> torch.Tensor:
        """Mask average-pooled by 4 to the relu3_1 grid, kept where >= 0.5 (official ``subpool``)."""
        return torch.nn.functional.avg_pool2d(mask[:, None].float(), 4)[:, 0] >= 0.5

    def prepare_features(self, targets: Targets) -> None:
        if self.vgg is not None:
            with torch.no_grad():
                targets.features = torch.nn.functional.normalize(
                    self.vgg(targets.rgb, targets.mask[:, None].float()), dim=1
                )

    # ---------------------------------------------------------------- initialisation
    @property
    def start_score(self) -> Callable[..., torch.Tensor]:
        """The scorer ``start_scoring`` names: ``(z, vertices, rendering, camera, targets, rng)`` -> (B,)
        how well each rendered start fits (lower is better)."""
        return self.published_score if self.settings.start_scoring == "published" else self.candidate_score

    def published_score(self, *fit: Any) -> torch.Tensor:
        """(B,) the official ``init_z`` score of ``fit`` (``losses``'s arguments: z, vertices,
        rendering, camera, targets, rng): the optimisation's loss, with its full ``chamfer_points``
        subsampling (mask, pixel and, when VGG runs, feature terms).

        The official latent term is computed from the optimiser's current z, not the candidate's, so
        it is the same for every candidate and cannot change the choice: it is left out.
        """
        terms = self.losses(*fit).terms
        weights = self.weights()
        return sum(weights[name] * value for name, value in terms.items() if name != "latent")  # type: ignore[return-value]

    def candidate_score(
        self,
        z: torch.Tensor,
        vertices: torch.Tensor,
        rendering: Rendering,
        camera: WeakPerspective,
        targets: Targets,
        rng: torch.Generator,
    ) -> torch.Tensor:
        """(B,) how well a rendered candidate starts: the full loss plus the colour layout error.

        The pixel chamfer matches colours anywhere within 0.32 NDC, so it barely tells a view from
        its silhouette twin (front and back swapped); the squared error of pooled colours where both
        silhouettes overlap does (averaged over 4x and 16x pooling: detail, and robustness to a
        slightly misaligned candidate).
        """
        points = min(self.settings.chamfer_points, SCORING_POINTS)
        total = self.losses(z, vertices, rendering, camera, targets, rng, points).total
        layout = torch.zeros_like(total)
        for pool in LAYOUT_POOLS:
            pooled = [torch.nn.functional.avg_pool2d(image, pool) for image in (rendering.rgb, targets.rgb)]
            overlap = coarse_mask(rendering.mask & targets.mask, targets.size // pool)
            error = (pooled[0] - pooled[1]).square().sum(1) * overlap
            layout = layout + error.flatten(1).sum(1) / overlap.flatten(1).sum(1).clamp(min=1)
        return total + LAYOUT_WEIGHT * layout / len(LAYOUT_POOLS)

    def draw_candidates(self, batch: int, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, N, latent) z ~ N(0, I) and ``draw_labels``'s (B, N, L) labels."""
        s, config, device = self.settings, self.model.config, self.model.device
        z = torch.randn(batch, s.z_candidates, config.latent_dim, generator=rng, device=device)
        return z, self.draw_labels(batch, s.z_candidates, rng)

    def draw_labels(self, batch: int, count: int, rng: torch.Generator) -> torch.Tensor | None:
        """(B, N, L) labels of a conditional generator: L = 1 (class) or 2 (class, colour), each the
        given one or drawn uniformly, so the start's scoring searches them like z; None otherwise."""
        s, config, device = self.settings, self.model.config, self.model.device
        if not config.n_classes:
            return None
        kinds = [("class_label", s.class_label, config.n_classes)]
        if config.n_colors:
            kinds.append(("colour_label", s.colour_label, config.n_colors))
        columns = []
        for name, given, n in kinds:
            if given is None:
                columns.append(torch.randint(0, n, (batch, count), generator=rng, device=device))
            elif 0 <= given < n:
                columns.append(torch.full((batch, count), given, device=device))
            else:
                raise ValueError(f"{name} must be in 0..{n - 1}, got {given}")
        return torch.stack(columns, dim=-1)

    def candidate_shapes(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """(B, N, V, 3) vertices of all candidates, generated in chunks."""
        flat_z = z.reshape(-1, z.shape[-1])
        flat_labels = None if labels is None else labels.reshape(-1, labels.shape[-1])
        parts = [
            self.model.shape(
                flat_z[i : i + self.settings.chunk],
                None if flat_labels is None else flat_labels[i : i + self.settings.chunk],
            )
            for i in range(0, len(flat_z), self.settings.chunk)
        ]
        return torch.cat(parts).reshape(*z.shape[:2], -1, 3)

    @torch.no_grad()
    def initialise(self, targets: Targets, rng: torch.Generator, progress: Progress) -> Starts:
        """The start of each image: the encoder's guess where it fits the mask well enough
        (``encoder_accept_iou``), else the better of it and the search's by the same score; the
        search alone without an encoder."""
        if self.encoder is None:
            return self.turned(self.search_start(targets, rng, progress), targets, rng, progress)
        guess = self.encoder_start(targets, rng, progress)
        weak = torch.nonzero(guess.camera_iou < self.settings.encoder_accept_iou).flatten()
        if len(weak) == 0:
            return guess
        weak_targets = targets.rows(weak)
        searched = self.turned(self.search_start(weak_targets, rng, progress), weak_targets, rng, progress)
        better = searched.scores < guess.scores[weak]
        guess.replace_rows(weak[better], searched, torch.nonzero(better).flatten())
        return guess

    @torch.no_grad()
    def encoder_start(self, targets: Targets, rng: torch.Generator, progress: Progress) -> Starts:
        """The search's start with the encoder's guess in place of its camera grid: the guessed view is
        the one hypothesis (placed on the mask's box and refined), as CMR's predicted pose is in the
        official code, and with ``start=encoder`` the guessed z is the start's z too (the random draws
        fit the outline as well or better but are further from the car in 3D). The encoder's azimuth
        decides front from back, which the start score often gets wrong (``benchmarks/MESHINVERSION.md``)."""
        assert self.encoder is not None
        progress("initialise: encoder", 0, 1)
        guess = self.encoder.guess(encoder_input(targets.rgb, targets.mask))
        progress("initialise: encoder", 1, 1)
        fixed_z = guess.z if self.settings.start == "encoder" else None
        view = turn_around(guess.view()) if self.settings.turn_start else guess.view()
        start = self.search_start(targets, rng, progress, view[:, None], fixed_z)
        start.searched[:] = False
        start.confidence = guess.confidence
        return start

    def turned(self, start: Starts, targets: Targets, rng: torch.Generator, progress: Progress) -> Starts:
        """With ``turn_start``, the searched ``start`` turned to its front/back twin: each view turned
        180 deg about the object's up axis, placed on the mask again and refined, its z kept (a
        conditional generator's labels are searched again under the turned view); else ``start``."""
        if not self.settings.turn_start:
            return start
        views = turn_around(start.camera.quaternion)[:, None]
        return self.search_start(targets, rng, progress, views, start.z)

    @torch.no_grad()
    def search_start(
        self, targets: Targets, rng: torch.Generator, progress: Progress,
        views: torch.Tensor | None = None, fixed_z: torch.Tensor | None = None,
    ) -> Starts:
        """The ``restarts`` best (z, label, camera) starts per image, from distinct views: hypotheses
        the camera grid, or each image's own ``views`` (B, H, 4); with ``fixed_z`` (B, latent) each
        image's one z (under each drawn label of a conditional generator) instead of random draws.

        ``published``: every (candidate, kept camera) pair is rendered and scored, like the official
        code's draws under its one camera (``camera_keep`` 1 gives exactly its count of renders);
        ``colour_layout``: the ``rendered_candidates`` best pairs by silhouette IoU are.
        """
        s = self.settings
        batch, device = targets.mask.shape[0], self.model.device
        progress("initialise: candidates", 0, 1)
        if fixed_z is None:
            z, labels = self.draw_candidates(batch, rng)
        else:
            labels = self.draw_labels(batch, s.z_candidates, rng)
            z = fixed_z[:, None].expand(-1, 1 if labels is None else s.z_candidates, -1)
        shapes = self.candidate_shapes(z, labels)
        progress("initialise: candidates", 1, 1)
        coarse = coarse_mask(targets.mask, SEARCH_SIZE)
        hypotheses = hypothesis_grid(s.azimuths, s.elevations, device) if views is None else views
        stage = "camera search" if views is None else "view refinement"
        with torch.enable_grad():
            cameras, search_iou = search_cameras(
                shapes.mean(dim=1), self.model.faces, self.model.topology, coarse,
                hypotheses, s.camera_keep, s.camera_refine_steps, rng,
                on_step=lambda step, total: progress(f"initialise: {stage}", step, total),
            )  # fmt: skip

        # Every (image, candidate, kept camera) triple.
        keep = search_iou.shape[1]
        count = z.shape[1]
        pairs = count * keep
        image = torch.arange(batch, device=device).repeat_interleave(pairs)
        candidate = torch.arange(pairs, device=device).repeat(batch) // keep
        camera_row = image * keep + torch.arange(keep, device=device).repeat(batch * count)
        if s.start_scoring == "published":
            rows_all = torch.arange(len(image), device=device)
        else:
            chunks = _chunks(len(image), s.chunk, device)
            shape_iou = []
            for done, rows in enumerate(chunks, start=1):
                silhouettes = self.model.silhouette(
                    shapes[image[rows], candidate[rows]], cameras.index(camera_row[rows]), SEARCH_SIZE
                )
                shape_iou.append(mask_iou(silhouettes, coarse[image[rows]]))
                progress("initialise: silhouettes", done, len(chunks))
            finalists = (
                torch.cat(shape_iou).view(batch, pairs).topk(min(s.rendered_candidates, pairs), dim=1).indices
            )
            rows_all = (finalists + torch.arange(batch, device=device)[:, None] * pairs).reshape(-1)

        # The chosen pairs are rendered and scored with the full loss (texture included).
        totals = []
        chunks = _chunks(len(rows_all), s.chunk, device)
        for done, rows in enumerate(chunks, start=1):
            pick = rows_all[rows]
            zc = z[image[pick], candidate[pick]]
            lc = None if labels is None else labels[image[pick], candidate[pick]]
            cams = cameras.index(camera_row[pick])
            texture, vertices = self.model.generate(zc, lc)
            rendering = self.model.render(vertices, texture, cams, targets.size)
            totals.append(self.start_score(zc, vertices, rendering, cams, targets.rows(image[pick]), rng))
            progress("initialise: renders", done, len(chunks))
        full_scores = torch.cat(totals).view(batch, -1)
        order = full_scores.argsort(dim=1)
        finalist_rows = rows_all.view(batch, -1)
        picks = [
            distinct_views(cameras.index(camera_row[finalist_rows[b, order[b]]]).quaternion, s.restarts)
            for b in range(batch)
        ]
        local = torch.stack([order[b, pick] for b, pick in enumerate(picks)])
        chosen = finalist_rows.gather(1, local).reshape(-1)
        return Starts(
            z=z[image[chosen], candidate[chosen]],
            labels=None if labels is None else labels[image[chosen], candidate[chosen]],
            camera=cameras.index(camera_row[chosen]),
            scores=full_scores.gather(1, local).reshape(-1),
            camera_iou=search_iou.view(-1)[camera_row[chosen]],
            searched=torch.ones(len(chosen), dtype=torch.bool, device=device),
            confidence=torch.full((len(chosen),), math.nan, device=device),
        )

    # ---------------------------------------------------------------- optimisation
    def run(
        self, rgbs: list[np.ndarray], masks: list[np.ndarray], seed: int, progress: Progress
    ) -> list[InversionResult]:
        """Invert a batch of crops: ``rgb`` (S, S, 3) in [0, 1] and ``mask`` (S, S), S = render_size.

        With ``restarts`` R > 1 the R best distinct starts of each image all run the first stage, and
        the one with the best candidate score after it continues (a wrong front/back choice at the
        start is otherwise never undone).
        """
        s = self.settings
        device = self.model.device
        batch = len(rgbs)
        rng = torch.Generator(device=device).manual_seed(seed)
        targets = Targets.from_arrays(rgbs, masks, device)
        if targets.size != s.render_size:
            raise ValueError(f"crops are {targets.size} px but render_size is {s.render_size}")
        self.prepare_features(targets)
        start = self.initialise(targets, rng, progress)
        restarts = len(start.z) // batch
        image = torch.arange(batch, device=device).repeat_interleave(restarts)
        with torch.no_grad():
            shape = self.model.shape(start.z, start.labels)
            start_iou = mask_iou(
                self.model.silhouette(shape, start.camera, s.render_size), targets.mask[image]
            )

        stages = list(s.stages)
        z, camera, history = start.z, start.camera, [[] for _ in range(len(start.z))]
        centre = start.z if s.latent_centre == "start" else None
        if restarts > 1:
            z, camera, history = self.optimise(z, start.labels, camera, targets.rows(image), stages[:1], rng,
                                               progress, 0, centre)  # fmt: skip
            with torch.no_grad():
                texture, vertices = self.model.generate(z, start.labels)
                rendering = self.model.render(vertices, texture, camera, s.render_size)
                score = self.start_score(z, vertices, rendering, camera, targets.rows(image), rng)
            keep = score.view(batch, restarts).argmin(dim=1) + torch.arange(batch, device=device) * restarts
            z, camera, history = z[keep], camera.index(keep), [history[i] for i in keep.tolist()]
            stages = stages[1:]
        else:
            keep = torch.arange(batch, device=device)
        labels = None if start.labels is None else start.labels[keep]
        z, camera, remaining_history = self.optimise(
            z, labels, camera, targets, stages, rng, progress, len(s.stages) - len(stages),
            None if centre is None else centre[keep],
        )
        with torch.no_grad():
            texture, displacement = self.model.generator(z, self.model.labels(labels))
        if s.refine_steps:
            vertices, camera, refined = self.refine(z, texture, displacement, camera, targets, rng, progress,
                                                    None if centre is None else centre[keep])  # fmt: skip
            remaining_history = [
                [*losses, row] for losses, row in zip(remaining_history, refined, strict=True)
            ]
        else:
            vertices = self.model.displace(displacement)
        if s.pole_fill:
            symmetric = self.model.config.symmetric
            vertices = self.model.template.fill_poles(vertices, s.pole_fill, symmetric=symmetric)
        with torch.no_grad():
            iou = mask_iou(self.model.silhouette(vertices, camera, s.render_size), targets.mask)
        return [
            InversionResult(
                z=z[b].detach(),
                label=None if labels is None else tuple(labels[b].tolist()),
                camera=camera.index(torch.tensor([b], device=device)),
                texture=texture[b],
                vertices=vertices[b],
                init_score=float(start.scores[keep[b]]),
                camera_iou=float(start.camera_iou[keep[b]]),
                stage_losses=history[b] + remaining_history[b],
                init_mask_iou=float(start_iou[keep[b]]),
                mask_iou=float(iou[b]),
                start="search" if bool(start.searched[keep[b]]) else s.start,
                pose_confidence=None if bool(start.searched[keep[b]]) else float(start.confidence[keep[b]]),
            )
            for b in range(batch)
        ]

    def optimise(
        self,
        z0: torch.Tensor,
        labels: torch.Tensor | None,
        camera0: WeakPerspective,
        targets: Targets,
        stages: list[tuple[int, float, float]],
        rng: torch.Generator,
        progress: Progress,
        first_stage: int,
        centre: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, WeakPerspective, list[list[dict[str, float]]]]:
        """Adam (betas 0, 0.99) on z and the camera through ``stages``, the latent prior centred at
        ``centre`` (default the origin); returns them detached and the mean loss terms per row and
        stage. Progress counts steps over the whole schedule."""
        s = self.settings
        rows = len(z0)
        z = z0.clone().requires_grad_()
        camera = WeakPerspective(*(p.clone().requires_grad_() for p in camera0.parameters()))
        z_optim = torch.optim.Adam([z], betas=(0.0, 0.99))
        pose_optim = torch.optim.Adam(camera.parameters(), betas=(0.0, 0.99))
        history: list[list[dict[str, float]]] = [[] for _ in range(rows)]
        done = sum(steps for steps, _, _ in s.stages[:first_stage])
        for stage, (steps, z_lr, pose_lr) in enumerate(stages, start=first_stage):
            for group in z_optim.param_groups:
                group["lr"] = z_lr
            for group in pose_optim.param_groups:
                group["lr"] = pose_lr
            sums: dict[str, torch.Tensor] = {}
            for step in range(steps):
                z_optim.zero_grad(set_to_none=True)
                pose_optim.zero_grad(set_to_none=True)
                texture, vertices = self.model.generate(z, labels)
                silhouette = s.silhouette_weight > 0
                rendering = self.model.render(vertices, texture, camera, s.render_size, silhouette)
                loss = self.losses(z, vertices, rendering, camera, targets, rng, centre=centre)
                total_loss = loss.total.sum()
                value = float(total_loss.detach()) / rows
                if not np.isfinite(value):
                    raise FloatingPointError(
                        f"meshinversion diverged (loss {value}) at stage {stage + 1}, step {step + 1}: "
                        "try another seed or lower learning rates"
                    )
                total_loss.backward()
                z_optim.step()
                pose_optim.step()
                for name, term in {"total": loss.total, **loss.terms}.items():
                    sums[name] = sums.get(name, 0) + term.detach()
                done += 1
                preview = to_uint8(rendering.rgb[0].detach()) if step == steps - 1 else None
                progress(f"optimise stage {stage + 1}/{len(s.stages)}", done, s.total_steps, loss=value,
                         preview=preview)  # fmt: skip
            for row in range(rows):
                history[row].append({k: float(v[row]) / steps for k, v in sums.items()})
        return z.detach(), camera.detach(), history

    def refine(
        self,
        z: torch.Tensor,
        texture: torch.Tensor,
        displacement: torch.Tensor,
        camera0: WeakPerspective,
        targets: Targets,
        rng: torch.Generator,
        progress: Progress,
        centre: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, WeakPerspective, list[dict[str, float]]]:
        """Fit a smooth, mirrored residual of the displacement map (and the camera, at the last
        stage's pose learning rate) with the same losses (the latent prior centred as the stages'
        were: constant here, but recorded alike) plus the offsets' Laplacian.

        The GAN prior decides the overall shape and the hidden side; the residual only follows the
        photo's outline where no latent reproduces it exactly. Returns the vertices, the camera and
        the mean loss terms per row. The generator is not run in the loop, so a step costs a render.
        """
        s = self.settings
        base = self.model.displace(displacement)
        residual = torch.zeros_like(displacement, requires_grad=True)
        camera = WeakPerspective(*(p.clone().requires_grad_() for p in camera0.parameters()))
        optimiser = torch.optim.Adam(
            [
                {"params": [residual], "lr": s.refine_lr},
                {"params": camera.parameters(), "lr": s.stages[-1][2]},
            ],
            betas=(0.0, 0.99),
        )
        sums: dict[str, torch.Tensor] = {}
        for step in range(s.refine_steps):
            optimiser.zero_grad(set_to_none=True)
            vertices = self.model.displace(displacement + residual)
            rendering = self.model.render(vertices, texture, camera, s.render_size, s.silhouette_weight > 0)
            loss = self.losses(z, vertices, rendering, camera, targets, rng, centre=centre)
            smooth = laplacian_loss(vertices - base, self.edges)
            total = loss.total + s.refine_smoothness * smooth
            value = float(total.detach().mean())
            if not np.isfinite(value):
                raise FloatingPointError(
                    f"meshinversion refinement diverged (loss {value}) at step {step + 1}: try another seed "
                    "or a lower refine_lr"
                )
            total.sum().backward()
            optimiser.step()
            for name, term in {"total": total, **loss.terms, "smoothness": smooth}.items():
                sums[name] = sums.get(name, 0) + term.detach()
            preview = to_uint8(rendering.rgb[0].detach()) if step == s.refine_steps - 1 else None
            progress("refine shape", step + 1, s.refine_steps, loss=value, preview=preview)
        with torch.no_grad():
            vertices = self.model.displace(displacement + residual)
        history = [{k: float(v[row]) / s.refine_steps for k, v in sums.items()} for row in range(len(z))]
        return vertices, camera.detach(), history


def distinct_views(quaternions: torch.Tensor, count: int, min_angle_deg: float = 90.0) -> torch.Tensor:
    """Indices of ``count`` rows of (N, 4) quaternions, in order of preference: greedily the first
    ones at least ``min_angle_deg`` from every row already taken, then the best of the rest."""
    unit = torch.nn.functional.normalize(quaternions, dim=-1)
    angle = 2 * torch.rad2deg(torch.acos((unit @ unit.T).abs().clamp(max=1)))
    taken = [0]
    for row in range(1, len(unit)):
        if len(taken) == count:
            break
        if bool((angle[row, taken] >= min_angle_deg).all()):
            taken.append(row)
    rest = [row for row in range(len(unit)) if row not in taken]
    taken += rest[: count - len(taken)]
    return torch.tensor(taken[:count], device=quaternions.device)


def coarse_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """(B, S, S) bool -> (B, size, size) bool by area averaging (covered where >= 1/2)."""
    return torch.nn.functional.interpolate(mask[:, None].float(), size=(size, size), mode="area")[:, 0] >= 0.5


def _chunks(count: int, size: int, device: torch.device) -> list[torch.Tensor]:
    """Index ranges covering ``count`` rows in pieces of ``size`` (bounds memory of batched scoring)."""
    return [torch.arange(i, min(i + size, count), device=device) for i in range(0, count, size)]


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    return ((image.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
