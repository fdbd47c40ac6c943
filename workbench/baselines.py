"""Baselines for the MeshInversion benchmark, sharing its camera search, renderer and losses.

(a) ``mean_shape``: the generator's mean shape and texture (average over random latents) placed
    by the camera search; only the camera is optimised. It shows what the pose alone explains.
(b) ``free_form``: the sphere template deformed by free per-vertex offsets (mirrored like the
    generator's) with a uniform-Laplacian smoothness term and a free texture; no GAN prior.
    It starts from the same camera search (which uses the mean shape to tell front from back).
(c) ``category_mean``: as (a) with the mean true shape and texture of the procedural category's
    training cars instead of the generator's: what knowing the category's average car, and no
    image beyond the pose, explains. A prior is only worth its cost if it beats this.

All return ``InversionResult`` so the benchmark evaluates everything the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from backend.methods.base import Progress
from backend.methods.meshinversion.camera_search import WeakPerspective, hypothesis_grid, search_cameras
from backend.methods.meshinversion.invert import (
    SEARCH_SIZE,
    InversionResult,
    InversionSettings,
    Inverter,
    Targets,
    coarse_mask,
)
from backend.methods.meshinversion.losses import laplacian_loss, mask_iou
from backend.methods.meshinversion.mesh_gan import MeshGAN
from workbench.data.car_maps import car_maps
from workbench.splits import TRAIN_SEED_START, check_training_seeds

MEAN_SAMPLES = 64
"""Latents averaged for the mean shape and texture."""
CATEGORY_CARS = 256
"""Training cars averaged for the category mean: doubling them moves its vertices by 0.4 % of the
mesh's RMS radius on average (2 % at most)."""


@dataclass(frozen=True)
class FreeFormSettings:
    """Learning rates and the smoothness weight of the free-form baseline."""

    offset_lr: float = 0.01
    texture_lr: float = 0.05
    laplacian_weight: float = 50.0


class Baselines:
    """Runs the baselines with the inversion's settings (stages, losses, camera search)."""

    def __init__(
        self,
        model: MeshGAN,
        settings: InversionSettings,
        free_form: FreeFormSettings | None = None,
        category_cars: int = CATEGORY_CARS,
    ):
        self.model = model
        self.category_cars = category_cars
        self.settings = settings
        self.free_form_settings = free_form or FreeFormSettings()
        self.inverter = Inverter(model, settings)

    @torch.no_grad()
    def mean_model(self, rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(V, 3) mean vertices and (3, T, T) mean texture over ``MEAN_SAMPLES`` random latents."""
        config, device = self.model.config, self.model.device
        z = torch.randn(MEAN_SAMPLES, config.latent_dim, generator=rng, device=device)
        labels = None
        if config.n_classes:
            labels = torch.randint(0, config.n_classes, (MEAN_SAMPLES,), generator=rng, device=device)
        texture, vertices = self.model.generate(z, labels)
        return vertices.mean(dim=0), texture.mean(dim=0)

    @cached_property
    def category_model(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(V, 3) vertices of the mean true displacement map and (3, T, T) mean true texture of the
        first ``category_cars`` training cars (the vertices are linear in the maps: the mean map's
        mesh is the mean mesh)."""
        seeds = list(range(TRAIN_SEED_START, TRAIN_SEED_START + self.category_cars))
        check_training_seeds(seeds)
        displacement, texture = 0.0, 0.0
        for i in range(0, len(seeds), 32):
            maps = car_maps(seeds[i : i + 32], self.model.config.texture_resolution, self.model.device)
            displacement = displacement + maps.displacement.sum(0)
            texture = texture + maps.texture.sum(0)
        vertices = self.model.displace((displacement / len(seeds))[None])[0]
        return vertices, texture / len(seeds) * 2 - 1

    def place(
        self, vertices: torch.Tensor, texture: torch.Tensor, targets: Targets, rng: torch.Generator,
        views: torch.Tensor | None = None,
    ) -> WeakPerspective:
        """The camera search of the inversion (over its grid, or each image's own (B, H, 4) ``views``,
        e.g. the start encoder's guess), then the kept camera that the inversion's candidate score
        prefers."""
        s = self.settings
        batch = targets.mask.shape[0]
        grid = hypothesis_grid(s.azimuths, s.elevations, self.model.device) if views is None else views
        shapes = vertices[None].expand(batch, -1, -1)
        cameras, _ = search_cameras(
            shapes, self.model.faces, self.model.topology, coarse_mask(targets.mask, SEARCH_SIZE), grid,
            s.camera_keep, s.camera_refine_steps, rng,
        )  # fmt: skip
        keep = cameras.scale.shape[0] // batch
        image = torch.arange(batch, device=self.model.device).repeat_interleave(keep)
        with torch.no_grad():
            rendering = self.model.render(
                shapes[image], texture[None].expand(len(image), -1, -1, -1), cameras, targets.size
            )
            z = torch.zeros(len(image), self.model.config.latent_dim, device=self.model.device)
            totals = self.inverter.candidate_score(
                z, shapes[image], rendering, cameras, targets.rows(image), rng
            )
        best = totals.view(batch, keep).argmin(dim=1)
        return cameras.index(torch.arange(batch, device=self.model.device) * keep + best)

    def optimise(
        self,
        targets: Targets,
        start: WeakPerspective,
        shape: Callable[[], torch.Tensor],
        texture: Callable[[], torch.Tensor],
        groups: list[dict],
        rng: torch.Generator,
        progress: Progress,
        name: str,
        extra_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[WeakPerspective, list[dict[str, float]]]:
        """The inversion's stages with Adam (0, 0.99) on the camera and ``groups`` (whose base ``lr``
        decays like the pose learning rate); returns the fitted camera and mean losses per stage."""
        s = self.settings
        camera = WeakPerspective(*(p.clone().requires_grad_() for p in start.parameters()))
        pose = torch.optim.Adam(camera.parameters(), betas=(0.0, 0.99))
        others = torch.optim.Adam(groups, betas=(0.0, 0.99)) if groups else None
        base = [g["lr"] for g in groups]
        first_pose_lr = s.stages[0][2]
        z = torch.zeros(targets.mask.shape[0], self.model.config.latent_dim, device=self.model.device)
        history, done = [], 0
        for steps, _, pose_lr in s.stages:
            for group in pose.param_groups:
                group["lr"] = pose_lr
            if others is not None:
                for group, lr in zip(others.param_groups, base, strict=True):
                    group["lr"] = lr * pose_lr / first_pose_lr
            total_sum = 0.0
            for _ in range(steps):
                pose.zero_grad(set_to_none=True)
                if others is not None:
                    others.zero_grad(set_to_none=True)
                vertices = shape()
                silhouette = s.silhouette_weight > 0
                rendering = self.model.render(vertices, texture(), camera, s.render_size, silhouette)
                total = self.inverter.losses(z, vertices, rendering, camera, targets, rng).total
                if extra_loss is not None:
                    total = total + extra_loss(vertices)
                total.sum().backward()
                pose.step()
                if others is not None:
                    others.step()
                value = float(total.detach().mean())
                total_sum += value
                done += 1
                progress(name, done, s.total_steps, loss=value)
            history.append({"total": total_sum / steps})
        return camera.detach(), history

    def finish(
        self,
        camera: WeakPerspective,
        vertices: torch.Tensor,
        texture: torch.Tensor,
        targets: Targets,
        history: list[dict[str, float]],
    ) -> list[InversionResult]:
        with torch.no_grad():
            iou = mask_iou(self.model.silhouette(vertices, camera, self.settings.render_size), targets.mask)
        return [
            InversionResult(
                z=torch.zeros(self.model.config.latent_dim, device=self.model.device),
                label=None,
                camera=camera.detach().index(torch.tensor([b], device=self.model.device)),
                texture=texture[b].detach(),
                vertices=vertices[b].detach(),
                init_score=float("nan"),
                camera_iou=float("nan"),
                stage_losses=history,
                mask_iou=float(iou[b]),
            )
            for b in range(vertices.shape[0])
        ]

    def mean_shape(
        self, rgbs: list[np.ndarray], masks: list[np.ndarray], seed: int, progress: Progress
    ) -> list[InversionResult]:
        """Baseline (a): mean shape and texture, camera search and camera-only optimisation."""
        rng = torch.Generator(device=self.model.device).manual_seed(seed)
        vertices, texture = self.mean_model(rng)
        return self.fixed_model(vertices, texture, rgbs, masks, rng, progress, "mean shape")

    def category_mean(
        self, rgbs: list[np.ndarray], masks: list[np.ndarray], seed: int, progress: Progress
    ) -> list[InversionResult]:
        """Baseline (c): the category's mean true shape and texture, placed as (a) places its own."""
        rng = torch.Generator(device=self.model.device).manual_seed(seed)
        vertices, texture = self.category_model
        return self.fixed_model(vertices, texture, rgbs, masks, rng, progress, "category mean")

    def fixed_model(
        self,
        vertices: torch.Tensor,
        texture: torch.Tensor,
        rgbs: list[np.ndarray],
        masks: list[np.ndarray],
        rng: torch.Generator,
        progress: Progress,
        name: str,
    ) -> list[InversionResult]:
        """One shape and texture for every image: camera search, then camera-only optimisation."""
        targets = Targets.from_arrays(rgbs, masks, self.model.device)
        camera = self.place(vertices, texture, targets, rng)
        batch = len(rgbs)
        shapes = vertices[None].expand(batch, -1, -1)
        textures = texture[None].expand(batch, -1, -1, -1)
        camera, history = self.optimise(
            targets, camera, lambda: shapes, lambda: textures, [], rng, progress, name
        )
        return self.finish(camera, shapes, textures, targets, history)

    def free_form(
        self, rgbs: list[np.ndarray], masks: list[np.ndarray], seed: int, progress: Progress
    ) -> list[InversionResult]:
        """Baseline (b): free per-vertex offsets (mirrored) + Laplacian + free texture, no GAN prior."""
        f = self.free_form_settings
        device = self.model.device
        rng = torch.Generator(device=device).manual_seed(seed)
        targets = Targets.from_arrays(rgbs, masks, device)
        mean_vertices, mean_texture = self.mean_model(rng)
        camera = self.place(mean_vertices, mean_texture, targets, rng)
        batch = len(rgbs)
        template = self.model.template
        # Start from the sphere scaled to the mean shape's size, so the camera scale still fits.
        radius = mean_vertices.norm(dim=-1).mean()
        base = (template.vertices.to(device) * radius)[None].expand(batch, -1, -1)
        offsets = torch.zeros(batch, len(template.vertices), 3, device=device, requires_grad=True)
        source = torch.where(template.side < 0, template.mirror, torch.arange(len(template.mirror))).to(
            device
        )
        ones = torch.ones(len(template.side))
        sign = torch.stack((template.side.float(), ones, ones), -1).to(device)
        size = self.model.config.texture_resolution
        logits = torch.zeros(batch, 3, size, size, device=device, requires_grad=True)
        edges = template.edges.to(device)

        def shape() -> torch.Tensor:
            return base + offsets[:, source] * sign

        def texture() -> torch.Tensor:
            return torch.tanh(logits)

        groups = [{"params": [offsets], "lr": f.offset_lr}, {"params": [logits], "lr": f.texture_lr}]
        camera, history = self.optimise(
            targets, camera, shape, texture, groups, rng, progress, "free form",
            extra_loss=lambda v: f.laplacian_weight * laplacian_loss(v, edges),
        )  # fmt: skip
        with torch.no_grad():
            return self.finish(camera, shape(), texture(), targets, history)
