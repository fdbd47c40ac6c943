"""The GAN2Shape optimisation for one image (Pan et al., ICLR 2021), stage by stage.

Each stage runs three steps:
1. *albedo*: only the albedo net learns to explain the input under the current depth, view and
   light (L1 + LPIPS + smoothness);
2. *GAN projection*: pseudo samples (the current relief re-lit and seen from sampled views) are
   projected onto the GAN manifold by the encoder, which predicts latent offsets; the projected
   images, being real GAN images, carry the GAN's knowledge of how the object *looks* from
   elsewhere (L1 + discriminator-feature loss + offset regulariser); a buffer of projections
   is then collected;
3. *shape*: depth, albedo, view and light nets learn to explain the input and the projected
   samples together (each sample with its own view and light: predicted by the view and light
   nets, as published, or, with ``pseudo_pose="sampled"``, the view and light its pseudo sample
   was made with; see ``Options.pseudo_pose``).
Before stage 0 the depth net is fitted to an ellipsoid prior fitted to the object mask.

The official car and church runs are data-parallel over 4 GPUs on the one image: each GPU draws
its own batches and collects its own buffer, and their gradients are averaged. ``accumulate``
batches per update (each loss divided by their number) and ``accumulate`` x ``collect_iters``
collected batches are that on one device. Step 1 runs once per update: its copies on the GPUs are
identical (same image, same nets, no sampling).

All randomness comes from one ``torch.Generator`` seeded by the caller; the networks are built
under the same seed, so a run is deterministic per seed on one device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from backend.methods.gan2shape import depth_render
from backend.methods.gan2shape.config import Research
from backend.methods.gan2shape.depthmap import normals_from_depth, scale_view, smooth_depth
from backend.methods.gan2shape.inversion import gan_view
from backend.methods.gan2shape.losses import discriminator_feature_loss, photometric_loss, smooth_loss
from backend.methods.gan2shape.networks import NET_NAMES, ShapeNets
from backend.methods.gan2shape.options import Options
from backend.methods.gan2shape.perceptual import PerceptualDistance, masked_perceptual
from backend.methods.gan2shape.prior import ellipsoid_prior
from backend.methods.gan2shape.stylegan2 import Discriminator, Generator

FEATURE_LAYERS = 4
STEP_NAMES = ("step1", "step2", "step3")
TRAINED_NETS = {"step1": ("netA",), "step2": ("netEnc",), "step3": ("netD", "netA", "netV", "netL")}

StepCallback = Callable[[str, int, int, "float | None", "Prediction | None"], None]
"""``(stage_name, step, total, loss, prediction_or_None)`` after every optimisation step."""


@dataclass
class Prediction:
    """What the nets say about the input image (index 0; index 1 is the mirrored copy when flipping)."""

    depth: torch.Tensor
    albedo: torch.Tensor
    view: torch.Tensor
    light: torch.Tensor
    normal: torch.Tensor
    diffuse_term: torch.Tensor
    texture: torch.Tensor
    recon: torch.Tensor
    recon_depth: torch.Tensor


@dataclass
class Target:
    """The image to reconstruct at the nets' resolution, its object mask and GAN latent."""

    image: torch.Tensor
    mask: torch.Tensor
    latent: torch.Tensor
    noise: list[torch.Tensor]


@dataclass
class ViewLightPrior:
    """Distribution of pseudo-sample views (network units) and the mean light added to netL."""

    view_mean: torch.Tensor
    view_cov: torch.Tensor
    light_mean: torch.Tensor

    @classmethod
    def default(cls, std: tuple[float, ...], device: torch.device) -> ViewLightPrior:
        return cls(
            torch.zeros(6, device=device),
            torch.diag(torch.tensor(std, device=device).square()),
            torch.zeros(4, device=device),
        )


@dataclass
class History:
    """Loss per step kind, for result.json and tests."""

    losses: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in ("prior", *STEP_NAMES)})


class GAN2ShapeRun:
    """One image's optimisation state; ``run`` executes the full schedule."""

    def __init__(
        self,
        nets: ShapeNets,
        generator: Generator,
        discriminator: Discriminator,
        target: Target,
        options: Options,
        category: str,
        prior: ViewLightPrior,
        rng: torch.Generator,
        perceptual: PerceptualDistance | None = None,
        pretrained_depth: bool = False,
        research: Research | None = None,
    ) -> None:
        self.nets, self.generator, self.discriminator = nets, generator, discriminator
        self.research = research or Research()
        self.target, self.options, self.category, self.prior = target, options, category, prior
        self.rng, self.perceptual, self.pretrained_depth = rng, perceptual, pretrained_depth
        self.size = nets.size
        self.history = History()
        self.canon_mask: torch.Tensor | None = None
        self.projected: torch.Tensor | None = None
        self.projected_masks: torch.Tensor | None = None
        self.projected_poses: torch.Tensor | None = None
        self.proj_index = 0
        self.sampled_pose = options.pseudo_pose == "sampled" or (
            options.pseudo_pose == "auto" and not pretrained_depth
        )
        self.state: Prediction | None = None
        self.split = generator.config.n_mlp - options.f1_d
        if not 0 <= self.split <= generator.config.n_mlp:
            raise ValueError(f"f1_d must be within 0..{generator.config.n_mlp}, got {options.f1_d}")
        with torch.no_grad():
            zero = target.image.new_zeros(1, generator.config.style_dim)
            self.center_w = generator.style_forward(zero)
            self.center_h = generator.style_forward(zero, depth=self.split)
            self.gan_image = self.synthesise(target.latent)

    # --- helpers
    def synthesise(self, latent: torch.Tensor) -> torch.Tensor:
        """GAN image for W (B, D) or W+ codes at the nets' resolution, clamped to [-1, 1]."""
        image = self.generator(latent, input_is_w=True, noise=self.target.noise).clamp(-1, 1)
        return gan_view(image, self.size, self.options.gan_crop)

    def uniform(self, n: int, low: float, high: float) -> torch.Tensor:
        device = self.target.image.device
        return low + (high - low) * torch.rand(n, generator=self.rng, device=device)

    def sample_views(self, n: int) -> torch.Tensor:
        """Views (n, 6) in network units from N(mean, cov), yaw scaled by ``view_scale``."""
        cov = self.prior.view_cov
        chol = torch.linalg.cholesky(cov + 1e-8 * torch.eye(6, dtype=cov.dtype, device=cov.device))
        normal = torch.randn(n, 6, generator=self.rng, device=chol.device)
        views = self.prior.view_mean + normal @ chol.T
        return torch.cat([views[:, :1], views[:, 1:2] * self.options.view_scale, views[:, 2:]], dim=1)

    def perceptual_loss(self, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return masked_perceptual(self.perceptual, a, b, mask)

    def train_only(self, names: tuple[str, ...]) -> None:
        """Gradients for the named nets only; the frozen ones skip their backward pass."""
        for name in NET_NAMES:
            getattr(self.nets, name).requires_grad_(name in names)

    def optimizer(self, names: tuple[str, ...], lr: float | None = None) -> torch.optim.Optimizer:
        """Fresh Adam over the nets that learn in this step (official: re-created at each switch).

        The other nets are frozen meanwhile, which saves their backward pass; ``foreach`` halves
        the update's cost on CPUs (it is the default on GPUs).
        """
        if self.research.fixed_view:
            names = tuple(n for n in names if n != "netV")
        self.train_only(names)
        params = [p for n in names for p in getattr(self.nets, n).parameters()]
        opts = self.options
        return torch.optim.Adam(
            params, lr=lr or opts.lr, betas=(0.9, 0.999), weight_decay=opts.weight_decay, foreach=True
        )

    # --- prior
    def fit_prior(self, on_step: StepCallback) -> None:
        """Teach the depth net to output the mask-fitted ellipsoid (skipped with a pretrained depth net)."""
        if self.pretrained_depth:
            return
        ellipsoid = ellipsoid_prior(self.target.mask[0, 0], self.category, far=self.options.prior_far)
        optimizer = self.optimizer(("netD",), lr=self.options.prior_lr)
        for step in range(self.options.prior_iters):
            depth = depth_render.depth_head(self.nets.netD(self.target.image), clamp_border=False)
            loss = (depth[0] - ellipsoid).square().mean()
            self.descend(optimizer, loss, "prior", step)
            on_step("prior", step + 1, self.options.prior_iters, self.history.losses["prior"][-1], None)

    def descend(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor, kind: str, step: int) -> None:
        check_finite(loss, kind, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        self.history.losses[kind].append(loss.item())

    def train_step(
        self, optimizer: torch.optim.Optimizer, name: str, mirror_step1: bool, mirror_step3: bool, step: int
    ) -> Prediction | None:
        """One update of step ``name`` (see ``iterate``); its mean loss goes to the history."""
        optimizer.zero_grad(set_to_none=True)
        loss, prediction = self.accumulate_gradients(name, mirror_step1, mirror_step3, step)
        optimizer.step()
        self.history.losses[name].append(loss)
        return prediction

    def accumulate_gradients(
        self, name: str, mirror_step1: bool, mirror_step3: bool, step: int = 0
    ) -> tuple[float, Prediction | None]:
        """Add the gradient of one update's loss to the nets': the mean over ``accumulate`` batches
        for steps 2 and 3 (one per official GPU), step 1's once. Returns (mean loss, last prediction)."""
        count = 1 if name == "step1" else self.options.accumulate
        total, prediction = 0.0, None
        for _ in range(count):
            loss, prediction = self.iterate(name, mirror_step1, mirror_step3)
            check_finite(loss, name, step)
            (loss if count == 1 else loss / count).backward()
            total += loss.item()
        return total / count, prediction

    # --- step 1 (and 3's input term)
    def reconstruct_input(self, flip: bool, refresh_mask: bool) -> tuple[torch.Tensor, Prediction]:
        """Predict depth/albedo/view/light for the input, render it back, and score it."""
        image, opts = self.target.image, self.options
        depth = depth_render.depth_head(self.nets.netD(image))
        albedo = self.nets.netA(image)
        view = scale_view(self.nets.netV(image) + self.prior.view_mean)
        light = self.nets.netL(image) + self.prior.light_mean
        if flip:
            depth = torch.cat([depth, depth.flip(2)])
            albedo = torch.cat([albedo, albedo.flip(3)])
        copies = depth.shape[0]
        prediction = self.render(depth, albedo, view.expand(copies, -1), light.expand(copies, -1))
        if opts.use_mask and (self.canon_mask is None or refresh_mask):
            self.canon_mask = self.mask_in_canon(depth[:1].detach(), prediction.view[:1].detach())
        valid = depth_render.background(prediction.recon_depth).detach()
        if flip:
            valid = (valid[:1] * valid[1:]).expand(2, -1, -1)
        valid = valid[:, None]
        recon = prediction.recon
        loss = depth.new_zeros(())
        for i in range(copies):
            loss = loss + photometric_loss(recon[i : i + 1], image, valid[i : i + 1])
            loss = loss + opts.lam_perc * self.perceptual_loss(recon[i : i + 1], image, valid[i : i + 1])
        loss = loss + opts.lam_smooth * (smooth_loss(depth) + smooth_loss(prediction.diffuse_term))
        return loss, prediction

    def mask_in_canon(self, depth: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """The input's object mask seen through a canonical depth (B, H, W) from ``view``."""
        return depth_render.sample(self.target.mask, depth_render.view_to_canon_grid(depth, view))

    @staticmethod
    def render(
        depth: torch.Tensor, albedo: torch.Tensor, view: torch.Tensor, light: torch.Tensor
    ) -> Prediction:
        """Shade the canonical albedo with the depth's normals and warp it into the view."""
        ambient, diffuse, direction = depth_render.light_terms(light)
        normal = normals_from_depth(depth)
        diffuse_term = depth_render.diffuse_shading(normal, direction)
        texture = depth_render.shade(albedo, diffuse_term, ambient, diffuse)
        recon_depth = depth_render.warp_canon_depth(depth, view)
        recon = depth_render.sample(texture, depth_render.canon_to_view_grid(recon_depth, view)).clamp(-1, 1)
        return Prediction(depth, albedo, view, light, normal, diffuse_term, texture, recon, recon_depth)

    # --- step 2
    def sample_pseudo(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Re-light the canonical albedo and render it from sampled views.

        Returns images (n, 3, S, S), masks (n, 1, S, S) and the poses they were made with (n, 11):
        view (6, radians/offsets) then ambient, diffuse strength and the unit light direction (3).
        """
        state = self.state
        x0, x1, y0, y1, r0, r1, alpha = self.options.rand_light
        dx, dy = self.uniform(n, x0, x1), self.uniform(n, y0, y1)
        direction = torch.stack([dx, dy, torch.ones_like(dx)], 1)
        direction = direction / direction.norm(dim=1, keepdim=True)
        strength = self.uniform(n, r0, r1)
        ambient, diffuse, _ = depth_render.light_terms(state.light[:1])
        ambient, diffuse = ambient + alpha * strength, diffuse + strength
        term = depth_render.diffuse_shading(state.normal[:1].expand(n, -1, -1, -1), direction)
        albedo = state.albedo[:1].expand(n, -1, -1, -1)
        image = depth_render.shade(albedo, term, ambient, diffuse)
        s = self.size
        mask = self.canon_mask if self.options.use_mask else image.new_ones(1, 1, s, s)
        views = scale_view(self.sample_views(n))
        recon_depth = depth_render.warp_canon_depth(state.depth[:1].expand(n, -1, -1), views)
        grid = depth_render.canon_to_view_grid(recon_depth, views)
        pseudo = depth_render.sample(image, grid).clamp(-1, 1)
        pseudo_mask = depth_render.sample(mask.expand(n, -1, -1, -1), grid, mode="nearest")
        poses = torch.cat([views, ambient[:, None], diffuse[:, None], direction], dim=1)
        return pseudo, pseudo_mask, poses

    def project(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder offsets -> last mapping layers -> GAN image: (projected images, W offsets)."""
        offset = self.nets.netEnc(images)
        if self.options.relative_enc:
            offset = offset - self.nets.netEnc(self.gan_image)
        return self.decode(offset)

    def decode(self, offset: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden-layer offsets (B, D) -> last mapping layers -> GAN image: (images, W offsets)."""
        hidden = offset + self.center_h
        dw = self.generator.style_forward(hidden, skip=self.split) - self.center_w
        latent = self.target.latent
        latent = latent + (dw[:, None] if latent.dim() == 3 else dw)
        return self.synthesise(latent), dw

    def projection_loss(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, projected images, masks, poses of the pseudo samples they were projected from)."""
        with torch.no_grad():
            pseudo, mask, poses = self.sample_pseudo(n)
            target_features = self.discriminator(pseudo, ftr_num=FEATURE_LAYERS)
        projected, dw = self.project(pseudo)
        return self.projection_terms(projected, dw, pseudo, mask, target_features), projected, mask, poses

    def projection_terms(
        self, projected: torch.Tensor, dw: torch.Tensor, pseudo: torch.Tensor, mask: torch.Tensor,
        target_features: list[torch.Tensor],
    ) -> torch.Tensor:
        """Step 2's loss: L1 + discriminator features on the object, plus the offset regulariser."""
        loss = photometric_loss(projected, pseudo, mask)
        loss = loss + discriminator_feature_loss(self.discriminator(projected, ftr_num=FEATURE_LAYERS),
                                                 target_features, mask)
        return loss + self.options.lam_regular * dw.square().mean()

    def optimise_projections(self, steps: int, report: Callable[[float], None]) -> None:
        """``Research.projection="optimise"``: one free hidden-layer offset per pseudo sample, optimised
        directly (same parametrisation and loss as the encoder's), then kept as step 3's buffer."""
        n = self.options.collect_iters * self.options.batch * self.options.accumulate
        with torch.no_grad():
            pseudo, mask, poses = self.sample_pseudo(n)
            target_features = self.discriminator(pseudo, ftr_num=FEATURE_LAYERS)
        offset = torch.zeros_like(self.center_h.expand(n, -1), requires_grad=True)
        optimizer = torch.optim.Adam([offset], lr=self.research.projection_lr)
        for step in range(steps):
            projected, dw = self.decode(offset)
            self.descend(optimizer, self.projection_terms(projected, dw, pseudo, mask, target_features),
                         "step2", step)
            report(self.history.losses["step2"][-1])
        with torch.no_grad():
            self.projected, self.projected_masks = self.decode(offset)[0], mask
        self.projected_poses, self.proj_index = poses, 0
        self.shuffle_projected()

    @torch.no_grad()
    def collect(self) -> None:
        """Fill the buffer of projected samples used by step 3 (and shuffle it): ``collect_iters``
        batches per official GPU."""
        images, masks, poses = [], [], []
        for _ in range(self.options.collect_iters * self.options.accumulate):
            _, projected, mask, pose = self.projection_loss(self.options.batch)
            images.append(projected)
            masks.append(mask)
            poses.append(pose)
        self.projected, self.projected_masks = torch.cat(images), torch.cat(masks)
        self.projected_poses = torch.cat(poses)
        self.proj_index = 0
        self.shuffle_projected()

    def shuffle_projected(self) -> None:
        order = torch.randperm(self.projected.shape[0], generator=self.rng, device=self.rng.device)
        order = order.to(self.projected.device)
        self.projected, self.projected_masks = self.projected[order], self.projected_masks[order]
        self.projected_poses = self.projected_poses[order]

    def next_projected(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The next batch of the shuffled buffer (reshuffled when exhausted, as the official loader)."""
        b = min(self.options.batch, self.projected.shape[0])
        self.proj_index += b
        if self.proj_index + b > self.projected.shape[0]:
            self.proj_index = 0
            self.shuffle_projected()
        i = self.proj_index
        return self.projected[i : i + b], self.projected_masks[i : i + b], self.projected_poses[i : i + b]

    def projected_view_light(
        self, images: torch.Tensor, poses: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """View (B, 6) and light terms of projected samples: their pseudo samples' or the nets' guess."""
        if self.sampled_pose:
            return poses[:, :6], (poses[:, 6], poses[:, 7], poses[:, 8:11])
        view = scale_view(self.nets.netV(images) + self.prior.view_mean)
        return view, depth_render.light_terms(self.nets.netL(images) + self.prior.light_mean)

    # --- step 3
    def joint_loss(self, flip: bool) -> tuple[torch.Tensor, Prediction]:
        """Input reconstruction plus reconstruction of projected samples under their own view/light."""
        loss, state = self.reconstruct_input(flip, refresh_mask=True)
        images, masks, poses = self.next_projected()
        b = images.shape[0]
        view, (ambient, diffuse, direction) = self.projected_view_light(images, poses)
        copies = 2 if flip else 1
        view, direction = view.repeat(copies, 1), direction.repeat(copies, 1)
        ambient, diffuse = ambient.repeat(copies), diffuse.repeat(copies)
        normal = state.normal.repeat_interleave(b, dim=0)
        albedo = state.albedo.repeat_interleave(b, dim=0)
        depth = state.depth.repeat_interleave(b, dim=0)
        shading = depth_render.diffuse_shading(normal, direction)
        texture = depth_render.shade(albedo, shading, ambient, diffuse)
        recon_depth = depth_render.warp_canon_depth(depth, view)
        valid = depth_render.background(recon_depth).detach()
        if flip:
            valid = (valid[:b] * valid[b:]).repeat(2, 1, 1)
        valid = valid[:, None] * masks.repeat(copies, 1, 1, 1)
        recon = depth_render.sample(texture, depth_render.canon_to_view_grid(recon_depth, view)).clamp(-1, 1)
        for c in range(copies):
            part = slice(c * b, (c + 1) * b)
            loss = loss + photometric_loss(recon[part], images, valid[part])
            loss = loss + self.options.lam_perc * self.perceptual_loss(recon[part], images, valid[part])
        return loss, state

    # --- schedule
    def run(self, on_step: StepCallback) -> Prediction:
        """Prior, then ``num_stages`` x (step 1, step 2 + collection, step 3); the final prediction."""
        self.fit_prior(on_step)
        schedule = Schedule([self], on_step)
        for stage in range(self.options.num_stages):
            schedule.run_stage(stage)
        return self.final()

    def refresh_state(self, flip: bool, refresh_mask: bool) -> None:
        with torch.no_grad():
            _, self.state = self.reconstruct_input(flip, refresh_mask=refresh_mask)

    def iterate(
        self, name: str, mirror_step1: bool, mirror_step3: bool
    ) -> tuple[torch.Tensor, Prediction | None]:
        """One iteration's loss of step ``name``; ``mirror_step1``/``mirror_step3``: whether steps 1
        and 3 also fit the mirrored canonical depth and albedo (the options ``flip1``/``flip3``)."""
        if name == "step1":
            return self.reconstruct_input(mirror_step1, refresh_mask=False)
        if name == "step2":
            return self.projection_loss(self.options.batch)[0], None
        return self.joint_loss(mirror_step3)

    @torch.no_grad()
    def final(self) -> Prediction:
        """Prediction of the trained nets for the input (no mirroring), with a fresh canonical mask,
        its depth smoothed on the object when ``depth_smoothing`` asks for it."""
        _, state = self.reconstruct_input(False, refresh_mask=False)
        sigma = self.options.depth_smoothing
        if sigma > 0:
            on_object = self.mask_in_canon(state.depth, state.view)[:, 0] > 0.5
            depth = smooth_depth(state.depth, on_object, sigma)
            state = self.render(depth, state.albedo, state.view, state.light)
        # the input mask seen through the final relief (through the raw one, the rim the smoothing
        # moved would cost about 2 % of the relief's input-view IoU)
        self.canon_mask = self.mask_in_canon(state.depth, state.view)
        self.state = state
        return state


def check_finite(loss: torch.Tensor, kind: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"GAN2Shape {kind} loss became {loss.item()} at step {step}")


class ImageCycle:
    """Which run takes the next iteration: the only one, or every image once per shuffled cycle
    (the official joint training's ``next_image``)."""

    def __init__(self, count: int, rng: torch.Generator) -> None:
        self.count, self.rng, self.order, self.index = count, rng, [0], 0

    def next(self) -> int:
        if self.count == 1:
            return 0
        if self.index == 0:
            self.order = torch.randperm(self.count, generator=self.rng, device=self.rng.device).tolist()
        image = self.order[self.index]
        self.index = (self.index + 1) % self.count
        return image


class Schedule:
    """The published stages for one image, or for several runs sharing one ``ShapeNets``.

    Several runs are the paper's joint (pre-)training: each iteration uses the next image of a
    shuffled cycle that runs on across stages; after step 1 every image's state is refreshed,
    after step 2 every image gets its own buffer of projections. The caller fits the ellipsoid
    prior first (``GAN2ShapeRun.fit_prior``, on the first image only, as published) and runs the
    stages in order; a run resumed after stages already trained starts at a later stage (states
    and buffers are then rebuilt on demand).
    """

    def __init__(self, runs: list[GAN2ShapeRun], on_step: StepCallback) -> None:
        self.runs, self.on_step = runs, on_step
        self.cycle = ImageCycle(len(runs), runs[0].rng)
        self.done: dict[str, int] | None = None
        """Steps taken per step kind; the first stage run counts those of the stages before it."""

    def run_stage(self, stage: int) -> None:
        """Step 1, step 2 and the collection of projections, step 3 of stage ``stage``."""
        runs, on_step, cycle = self.runs, self.on_step, self.cycle
        lead = runs[0]
        opts = lead.options
        if self.done is None:
            self.done = {
                name: sum(opts.stage_lengths(s)[i] for s in range(stage)) for i, name in enumerate(STEP_NAMES)
            }
        done = self.done
        totals = {name: opts.total_steps(i) for i, name in enumerate(STEP_NAMES)}
        mirror_step1, mirror_step3 = opts.flips(stage)
        lengths = dict(zip(STEP_NAMES, opts.stage_lengths(stage), strict=True))
        for name in STEP_NAMES:
            if name == "step2":
                for run in runs:
                    if run.state is None:
                        run.refresh_state(mirror_step1, refresh_mask=False)
            if name == "step3":
                for run in runs:
                    if run.projected is None:
                        run.collect()
            if name == "step2" and lead.research.projection == "optimise":
                lead.train_only(())  # only the per-sample offsets learn

                def tick(loss: float) -> None:
                    done["step2"] += 1
                    on_step("step2", done["step2"], totals["step2"] * len(runs), loss, None)

                for run in runs:
                    run.optimise_projections(lengths[name], tick)
                continue
            optimizer = lead.optimizer(TRAINED_NETS[name])
            for _ in range(lengths[name]):
                run = runs[cycle.next()]
                prediction = run.train_step(optimizer, name, mirror_step1, mirror_step3, done[name])
                done[name] += 1
                on_step(name, done[name], totals[name], run.history.losses[name][-1], prediction)
            if name == "step1":
                for run in runs:
                    run.refresh_state(mirror_step1, refresh_mask=False)
            if name == "step2":
                on_step("collect", 0, opts.collect_iters * opts.accumulate, None, None)
                for run in runs:
                    run.collect()
            if name == "step3":
                for run in runs:
                    run.refresh_state(False, refresh_mask=True)
