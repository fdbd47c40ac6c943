"""The GAN2Shape ``Method``: load weights, reconstruct one photo, export a relief mesh.

A job runs: crop the photo around its mask at the nets' resolution -> ``invert`` (find the
StyleGAN2 W code of the photo) -> ``prior`` (depth net fitted to the mask's ellipsoid) ->
``step1``/``step2``/``collect``/``step3`` per stage -> relief mesh, camera and previews.
Optional extras are looked up in the weights registry when the first job runs: VGG16
(``--category vgg16``, turns the LPIPS term on), LPIPS heads (``lpips``), pretrained
nets and view/light priors for the GAN's category. Their state is reported in ``info``.
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar

import torch

from backend.inputs import InputImage, crop_to_object
from backend.methods.base import MeshResult, Method, Progress
from backend.methods.gan2shape import warp
from backend.methods.gan2shape.config import PRESETS, Options, resolve
from backend.methods.gan2shape.convert import check_strict, unprefixed
from backend.methods.gan2shape.export import blender_camera, relief_mesh
from backend.methods.gan2shape.inversion import invert
from backend.methods.gan2shape.networks import NET_NAMES, ShapeNets, official_widths
from backend.methods.gan2shape.perceptual import PerceptualDistance
from backend.methods.gan2shape.pipeline import GAN2ShapeRun, Prediction, Target, ViewLightPrior
from backend.methods.gan2shape.previews import make_previews, to_uint8
from backend.methods.gan2shape.stylegan2 import Discriminator, Generator, StyleGAN2Config
from backend.weights import Registry

AUXILIARY_KINDS = ("pretrain", "view_mvn", "light_mvn", "vgg16", "lpips")
Extras = dict[str, dict[str, torch.Tensor]]
"""Auxiliary state dicts by kind."""


class GAN2Shape(Method):
    """StyleGAN2 + Unsup3d-style nets; one instance per loaded GAN (or validated auxiliary file)."""

    name: ClassVar[str] = "gan2shape"
    presets: ClassVar[dict[str, dict[str, Any]]] = PRESETS

    def __init__(
        self, entry: Any, device: torch.device, generator: Generator | None = None,
        discriminator: Discriminator | None = None,
    ) -> None:
        self.entry, self.device = entry, device
        self.generator, self.discriminator = generator, discriminator
        self.kind = entry.config.get("kind", "stylegan2")
        self.image_size = int(entry.config.get("image_size", 64))
        self.extras: Extras | None = None

    @classmethod
    def load(cls, entry: Any, state_dict: dict[str, Any], device: Any) -> GAN2Shape:
        """Build from ``entry.config`` and load strictly; auxiliary files are validated, not runnable."""
        kind = entry.config.get("kind", "stylegan2")
        device = torch.device(device)
        if kind in AUXILIARY_KINDS:
            validate_auxiliary(kind, entry.config, state_dict)
            return cls(entry, device)
        config = StyleGAN2Config.from_dict(entry.config)
        generator, discriminator = Generator(config), Discriminator(config)
        generator.load_state_dict(unprefixed("generator", state_dict), strict=True)
        discriminator.load_state_dict(unprefixed("discriminator", state_dict), strict=True)
        for net in (generator, discriminator):
            net.requires_grad_(False).eval().to(device)
        return cls(entry, device, generator, discriminator)

    # --------------------------------------------------------------------------- extras
    def find_extras(self) -> Extras:
        """State dicts of the registry's auxiliary gan2shape entries that fit this GAN's category."""
        if self.extras is not None:
            return self.extras
        registry = Registry(user_dir=self.entry.root if self.entry.origin == "user" else None)
        found: Extras = {}
        for entry in registry.entries():
            kind = entry.config.get("kind")
            general = kind in ("vgg16", "lpips")
            if entry.method != self.name or kind not in AUXILIARY_KINDS or kind in found:
                continue
            if general or entry.category == self.entry.category:
                if kind == "pretrain" and int(entry.config.get("image_size", 0)) != self.image_size:
                    continue
                found[kind] = registry.load_state_dict(entry, "cpu")
        self.extras = found
        return found

    def perceptual(self, extras: Extras) -> PerceptualDistance | None:
        if "vgg16" not in extras:
            return None
        model = PerceptualDistance.from_state_dicts(extras["vgg16"], extras.get("lpips"))
        return model.to(self.device)

    def view_light_prior(self, options: Options, extras: Extras) -> ViewLightPrior:
        prior = ViewLightPrior.default(options.view_std, self.device)
        if "view_mvn" in extras:
            prior.view_mean = extras["view_mvn"]["mean"].to(self.device)
            prior.view_cov = extras["view_mvn"]["cov"].to(self.device)
        if "light_mvn" in extras:
            prior.light_mean = extras["light_mvn"]["mean"].to(self.device)
        return prior

    def build_nets(self, options: Options, seed: int, extras: Extras) -> ShapeNets:
        """Fresh nets initialised from ``seed`` (or the category's pretrained ones when registered)."""
        latent_dim = self.generator.config.style_dim
        pretrained = extras.get("pretrain")
        nf = None if pretrained is not None else options.net_width
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gn = official_widths(self.image_size)[1] if nf is None else max(1, nf // 4)
            nets = ShapeNets(self.image_size, nf=nf, gn_base=gn, latent_dim=latent_dim)
        if pretrained is not None:
            nets.load_official({name: unprefixed(f"nets.{name}", pretrained) for name in NET_NAMES
                                if any(k.startswith(f"nets.{name}.") for k in pretrained)})
        return nets.to(self.device)

    # --------------------------------------------------------------------------- run
    def run(self, image: InputImage, options: dict[str, Any], seed: int, progress: Progress) -> MeshResult:
        if self.generator is None:
            raise ValueError(f"weights {self.entry.id!r} hold {self.kind} data, not a GAN: choose a "
                             "GAN2Shape StyleGAN2 entry (this one is used automatically when present)")
        category = self.entry.category
        opts = resolve(category, options)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        extras = self.find_extras()
        perceptual = self.perceptual(extras)
        rng = torch.Generator(device=self.device).manual_seed(seed)
        crop = crop_to_object(image, self.image_size, opts.crop_margin)
        target_image = torch.from_numpy(crop.rgb).permute(2, 0, 1)[None].to(self.device) * 2 - 1
        mask = torch.from_numpy(crop.mask)[None, None].to(self.device)

        def report(stage: str, step: int, total: int, loss: float | None, state: Prediction | None) -> None:
            preview = None
            if state is not None and (step % opts.preview_every == 0 or step == total):
                preview = to_uint8(torch.cat([target_image, state.recon[:1]]))
            progress(stage, step, total, loss=loss, preview=preview)

        progress("invert", 0, opts.invert_steps)
        inversion = invert(
            self.generator, self.discriminator, target_image, opts.invert_steps, rng, perceptual,
            lr=opts.invert_lr, on_step=lambda s, loss: report("invert", s + 1, opts.invert_steps, loss, None),
        )
        timings["invert"] = time.perf_counter() - started
        nets = self.build_nets(opts, seed, extras)
        target = Target(target_image, mask, inversion.latent, inversion.noise)
        run = GAN2ShapeRun(
            nets, self.generator, self.discriminator, target, opts, category,
            self.view_light_prior(opts, extras), rng, perceptual, pretrained_depth="pretrain" in extras,
        )
        state = run.run(report)
        timings["gan2shape"] = time.perf_counter() - started - timings["invert"]
        progress("export", 0, 1)
        result = self.export(state, run.canon_mask, target_image, crop, opts)
        result.info.update(self.describe(state, run, inversion.losses, opts, extras, timings, seed))
        progress("export", 1, 1)
        return result

    def export(self, state: Prediction, canon_mask: torch.Tensor, image: torch.Tensor, crop: Any,
               opts: Options) -> MeshResult:
        depth = state.depth[0].detach()
        relief = relief_mesh(depth, canon_mask[0, 0], opts.mesh_resolution)
        source = state.texture if opts.texture == "shaded" else state.albedo
        texture = to_uint8(source[:1])
        camera = blender_camera(state.view[0], relief, self.image_size)
        camera["crop_box"] = [float(v) for v in crop.box]
        camera["image_size"] = [int(v) for v in crop.image_size]
        previews = make_previews(state, image, canon_mask) if opts.previews else {}
        return MeshResult(relief.vertices, relief.faces, relief.uvs, texture, camera, {}, previews)

    def describe(self, state: Prediction, run: GAN2ShapeRun, invert_losses: list[float], opts: Options,
                 extras: dict[str, Any], timings: dict[str, float], seed: int) -> dict[str, Any]:
        """What result.json records: recovered view and light, losses, what was on or off."""
        view = state.view[0].detach().cpu()
        ambient, diffuse, direction = warp.light_terms(state.light[:1].detach().cpu())
        notes = []
        if "vgg16" not in extras:
            notes.append("perceptual (LPIPS) loss off: no VGG16 weights registered "
                         "(import torchvision's vgg16 with --method gan2shape --category vgg16)")
        elif "lpips" not in extras:
            notes.append("LPIPS with equal channel weights: no LPIPS v0.1 heads registered (category lpips)")
        return {
            "view": {"rotation_deg": [math.degrees(float(v)) for v in view[:3]],
                     "translation": [float(v) for v in view[3:]]},
            "light": {"ambient": float(ambient[0]), "diffuse": float(diffuse[0]),
                      "direction": [float(v) for v in direction[0]]},
            "losses": {"invert": invert_losses[-1] if invert_losses else None,
                       **{k: (v[-1] if v else None) for k, v in run.history.losses.items()}},
            "loss_curves": {"invert": invert_losses, **run.history.losses},
            "perceptual": "vgg16" in extras, "pretrained_nets": "pretrain" in extras,
            "view_prior": "view_mvn" if "view_mvn" in extras else f"diagonal, std {list(opts.view_std)}",
            "image_size": self.image_size, "seed": seed, "timings_s": timings,
            "mesh": {"resolution": opts.mesh_resolution, "texture": opts.texture, "extent": "largest = 1"},
            "notes": notes,
        }


def validate_auxiliary(kind: str, config: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """Strict checks of auxiliary entries, so a wrong file fails at import, not mid-job."""
    if kind == "pretrain":
        nets = ShapeNets(int(config["image_size"]), latent_dim=int(config.get("latent_dim", 512)))
        for name in NET_NAMES:
            part = unprefixed(f"nets.{name}", state)
            if part:
                getattr(nets, name).load_state_dict(part, strict=True)
    elif kind == "vgg16":
        PerceptualDistance().features.load_state_dict(unprefixed("features", state), strict=True)
    elif kind == "lpips":
        PerceptualDistance.from_state_dicts({"features." + k: v for k, v in
                                             PerceptualDistance().features.state_dict().items()}, state)
    else:
        n = 6 if kind == "view_mvn" else 4
        check_strict(_shape_holder(n), state, kind)


def _shape_holder(n: int) -> torch.nn.Module:
    holder = torch.nn.Module()
    holder.register_buffer("mean", torch.zeros(n))
    holder.register_buffer("cov", torch.zeros(n, n))
    return holder


METHOD = GAN2Shape
