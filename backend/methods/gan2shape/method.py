"""The GAN2Shape ``Method``: load weights, reconstruct one photo, export a relief mesh.

A job runs: crop the photo at the nets' resolution -> ``invert`` (find the StyleGAN2 W code of
the photo) -> ``prior`` (depth net fitted to the mask's ellipsoid; skipped when the category's
joint-pretrained nets are registered, which then start instead) -> ``step1``/``step2``/
``collect``/``step3`` per stage -> ``export`` (relief mesh, camera, previews). Auxiliary
weights (VGG16/LPIPS, pretrained nets, view/light priors, a mask network) are picked from those
the job hands to ``load`` at the first job (``extras.py``); what was on or off is reported in
``info``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from backend.categories import scale_rule
from backend.inputs import Crop, InputImage, crop_to_object, photo_side
from backend.methods.base import AuxiliaryWeights, Converted, MeshResult, Method, Progress
from backend.methods.gan2shape import depth_render
from backend.methods.gan2shape.auxiliary import AUXILIARY_KINDS, AuxiliaryNets, find_auxiliary_nets, validate
from backend.methods.gan2shape.config import AUTO_MESH_RESOLUTION, MODEL_FIELDS, Research, resolve
from backend.methods.gan2shape.convert import convert_official
from backend.methods.gan2shape.depthmap import extend_depth
from backend.methods.gan2shape.export import (
    MASK_LEVEL,
    RIM_RINGS,
    Relief,
    blender_camera,
    relief_mesh,
    relief_shading,
    relief_with_faces,
    towards_light,
)
from backend.methods.gan2shape.inversion import invert
from backend.methods.gan2shape.networks import ShapeNets, net_widths
from backend.methods.gan2shape.options import VIEW_TEXTURES, Options
from backend.methods.gan2shape.previews import make_previews, to_uint8
from backend.methods.gan2shape.schedule import GAN2ShapeRun, Prediction, Target, ViewLightPrior
from backend.methods.gan2shape.stylegan2 import Discriminator, Generator, StyleGAN2Config, build_gan
from backend.protocol import UserError
from backend.render.srgb import linear_to_srgb, srgb_to_linear

MAX_NET_SIZE = 128
"""The 3D nets run at the GAN's size up to 128 px (the official choice for 256/512 px GANs)."""
MIN_SHADING = 0.05
"""``albedo`` texture: the recovered shading is not trusted below this (the photo / shading ratio
would blow up noise in the darkest pixels)."""
ALBEDO_CLIP = 0.01
"""``albedo`` texture: the fraction of the object's texels allowed to clip at 1 (a few specks of the
photo's noise over a dark shading must not dim the whole texture)."""
MAX_EXPOSURE = 16.0
"""``albedo`` texture: at most this much headroom in linear light (white divided by 16 is sRGB 71 of
255, so the texture keeps 72 levels)."""
RELIEF_SIZE_NOTE = "a relief shows one side only and has no reliable length: its largest extent is sized"


@dataclass
class Reconstruction:
    """A finished optimisation: final prediction, the run (canonical mask, losses), the crop."""

    state: Prediction
    run: GAN2ShapeRun
    crop: Crop
    image: torch.Tensor
    options: Options
    info: dict[str, Any]
    photo: Crop
    """The same square as ``crop`` at the photo's own resolution (``inputs.photo_side``)."""


def crop_input(image: InputImage, size: int, options: Options) -> Crop:
    """The square the nets see: around the object (``crop='object'``) or the whole, padded image."""
    if options.crop == "object":
        return crop_to_object(image, size, options.crop_margin)
    everything = np.ones_like(image.mask, dtype=bool)
    whole = InputImage(image.rgb, everything, image.path, [], image.original_size)
    frame = crop_to_object(whole, size, 0.0)
    whole.rgb = np.repeat(image.mask[..., None].astype(np.float32), 3, axis=2)
    mask = crop_to_object(whole, size, 0.0, fill=0.0)
    return Crop(frame.rgb, mask.rgb[..., 0], frame.box, frame.image_size)


class GAN2Shape(Method):
    """StyleGAN2 + Unsup3d-style nets; one instance per loaded GAN (or validated auxiliary file)."""

    name: ClassVar[str] = "gan2shape"

    def __init__(
        self, entry: Any, device: torch.device, auxiliary: AuxiliaryWeights,
        generator: Generator | None = None, discriminator: Discriminator | None = None,
    ) -> None:
        self.entry, self.device, self.auxiliary = entry, device, auxiliary
        self.generator, self.discriminator = generator, discriminator
        self.kind = entry.config.get("kind", "stylegan2")
        gan_size = int(entry.config.get("size", MAX_NET_SIZE))
        self.image_size = int(entry.config.get("image_size", min(gan_size, MAX_NET_SIZE)))
        self.extras: AuxiliaryNets | None = None

    @classmethod
    def is_model_entry(cls, entry: Any) -> bool:
        """Only StyleGAN2 entries reconstruct; VGG16, LPIPS, pretrained nets, priors and masks assist."""
        return entry.config.get("kind", "stylegan2") not in AUXILIARY_KINDS

    @classmethod
    def convert_official(cls, checkpoint: dict[str, Any], category: str) -> Converted:
        """A StyleGAN2, pretrained nets, a view/light prior, VGG16 or LPIPS heads (``convert.py``)."""
        return convert_official(checkpoint, category)

    @classmethod
    def load(
        cls, entry: Any, state_dict: dict[str, Any], device: Any, auxiliary: AuxiliaryWeights
    ) -> GAN2Shape:
        """Build from ``entry.config`` and load strictly; auxiliary files are validated, not runnable."""
        kind = entry.config.get("kind", "stylegan2")
        device = torch.device(device)
        if kind in AUXILIARY_KINDS:
            validate(kind, entry.config, state_dict)
            return cls(entry, device, auxiliary)
        generator, discriminator = build_gan(StyleGAN2Config.from_dict(entry.config), state_dict, device)
        return cls(entry, device, auxiliary, generator, discriminator)

    def build_nets(self, options: Options, seed: int, extras: AuxiliaryNets) -> ShapeNets:
        """Nets initialised from ``seed``, or the category's pretrained ones when registered."""
        pretrained = extras.pretrained_nets()
        width = extras.pretrained_width() if extras.pretrained_depth() else options.net_width
        nf, gn_base = net_widths(self.image_size, width)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            latent_dim = self.generator.config.style_dim
            nets = ShapeNets(self.image_size, nf=nf, gn_base=gn_base, latent_dim=latent_dim)
        if pretrained is not None:
            nets.load_official(pretrained)
        return nets.to(self.device)

    def resolve_options(self, options: Options, extras: AuxiliaryNets) -> Options:
        """``options`` as this GAN runs them (``config.resolve``): its category's published values,
        its entry's view prior and what the category's pretrained nets were made for."""
        model = {k: self.entry.config[k] for k in MODEL_FIELDS if self.entry.config.get(k) is not None}
        return resolve(self.entry.category, options, {**model, **extras.option_defaults()})

    def view_light_prior(self, options: Options, extras: AuxiliaryNets) -> ViewLightPrior:
        """The diagonal view prior of resolved ``options``, replaced by registered official priors."""
        assert options.view_std is not None, "resolve the options first"
        prior = ViewLightPrior.default(tuple(float(v) for v in options.view_std), self.device)
        if options.view_mean is not None:
            prior.view_mean = torch.tensor([float(v) for v in options.view_mean], device=self.device)
        if extras.has("view_mvn"):
            prior.view_mean = extras.state("view_mvn")["mean"].to(self.device)
            prior.view_cov = extras.state("view_mvn")["cov"].to(self.device)
        if extras.has("light_mvn"):
            prior.light_mean = extras.state("light_mvn")["mean"].to(self.device)
        return prior

    def object_mask(
        self, photo: InputImage, crop: Crop, image: torch.Tensor, extras: AuxiliaryNets
    ) -> tuple[torch.Tensor, str]:
        """The crop's mask from the inputs module, or the category's mask network when the job asked
        for none (mask source ``none``: the input's mask is then the whole image)."""
        mask = torch.from_numpy(crop.mask)[None, None].to(self.device)
        if photo.mask_source != "none":
            return mask, "input"
        network = extras.mask_network(self.device)
        if network is None:
            return mask, "whole image (no mask given and no mask network registered)"
        predicted = network.predict(image)
        if not bool((predicted >= 0.5).any()):
            raise UserError("empty_mask", "the category's mask network found no object in the image",
                             "give a mask: an alpha channel, a mask file or GrabCut (--mask)")
        return predicted, "mask network"

    def run(self, image: InputImage, options: Options, seed: int, progress: Progress) -> MeshResult:
        outcome = self.reconstruct(image, options, seed, progress)
        progress("export", 0, 1)
        result = self.export(outcome)
        progress("export", 1, 1)
        return result

    def reconstruct(
        self, image: InputImage, options: Options, seed: int, progress: Progress,
        research: Research | None = None,
    ) -> Reconstruction:
        """The optimisation half of ``run``: everything up to the final prediction (``export`` is the
        other half); benchmarks read depth and masks from here and may turn on ``research``
        experiments."""
        if self.generator is None:
            raise ValueError(f"weights {self.entry.id!r} hold {self.kind} data, not a GAN: choose a "
                             "GAN2Shape StyleGAN2 entry (this one is used automatically when present)")
        category = self.entry.category
        started = time.perf_counter()
        if self.extras is None:
            self.extras = find_auxiliary_nets(self.entry, self.image_size, self.auxiliary)
        extras = self.extras
        opts = self.resolve_options(options, extras)
        research = research or Research()
        perceptual = extras.perceptual(self.device)
        rng = torch.Generator(device=self.device).manual_seed(seed)
        crop = crop_input(image, self.image_size, opts)
        photo = crop_input(image, photo_side(image, crop.box[2], self.image_size), opts)
        target_image = torch.from_numpy(crop.rgb).permute(2, 0, 1)[None].to(self.device) * 2 - 1
        mask, mask_source = self.object_mask(image, crop, target_image, extras)

        def report(stage: str, step: int, total: int, loss: float | None, state: Prediction | None) -> None:
            preview = None
            if state is not None and (step % opts.preview_every == 0 or step == total):
                preview = to_uint8(torch.cat([target_image, state.recon[:1]]))
            progress(stage, step, total, loss=loss, preview=preview)

        progress("invert", 0, opts.invert_steps)
        inversion = invert(
            self.generator, self.discriminator, target_image, opts.invert_steps, rng, perceptual,
            lr=opts.invert_lr, w_plus=research.invert_w_plus, gan_crop=opts.gan_crop,
            on_step=lambda s, loss: report("invert", s + 1, opts.invert_steps, loss, None),
        )
        timings = {"invert": time.perf_counter() - started}
        run = GAN2ShapeRun(
            self.build_nets(opts, seed, extras), self.generator, self.discriminator,
            Target(target_image, mask, inversion.latent, inversion.noise), opts, category,
            self.view_light_prior(opts, extras), rng, perceptual, pretrained_depth=extras.pretrained_depth(),
            research=research,
        )
        state = run.run(report)
        timings["gan2shape"] = time.perf_counter() - started - timings["invert"]
        info = describe(state, run, inversion.losses, opts, extras, timings)
        info.update({"mask_source": mask_source, "image_size": self.image_size, "seed": seed})
        return Reconstruction(state, run, crop, target_image, opts, info, photo)

    def export(self, outcome: Reconstruction) -> MeshResult:
        """Relief mesh, texture, Blender camera and previews of a finished reconstruction."""
        state, opts, canon_mask = outcome.state, outcome.options, outcome.run.canon_mask
        in_view = opts.texture in VIEW_TEXTURES
        mask = photo_mask(outcome)
        rule = scale_rule({"scale": opts.scale, "size_m": opts.size_m}, self.entry.category, None)
        view = state.view[0]
        if opts.faces is None:
            resolution = opts.mesh_resolution or min(mask.shape[-1], AUTO_MESH_RESOLUTION)
            depth = meshed_depth(outcome, resolution)
            relief = relief_mesh(depth, view, mask, resolution, view_uvs=in_view, rule=rule, quads=opts.quads)
        else:
            relief, resolution = relief_with_faces(
                meshed_depth(outcome, None), view, mask, opts.faces, in_view, rule, quads=opts.quads
            )
        camera = blender_camera(state.view[0], relief, self.image_size)
        camera["crop_box"] = [float(v) for v in outcome.crop.box]
        camera["image_size"] = [int(v) for v in outcome.crop.image_size]
        texture = exported_texture(outcome, relief, camera, mask)
        view_mask = outcome.run.target.mask
        previews = {}
        if opts.previews:
            previews = make_previews(state, outcome.image, view_mask, canon_mask, texture.canonical)
        mesh_info = {**outcome.info["mesh"], "resolution": resolution,
                     "texture_size": int(texture.image.shape[-1]), "faces": len(relief.faces)}  # fmt: skip
        placement = {**rule.describe(self.entry.category), "note": RELIEF_SIZE_NOTE}
        light = {**outcome.info["light"], "towards": towards_light(outcome.info["light"]["direction"]),
                 "exposure": texture.exposure}  # fmt: skip
        info = {**outcome.info, "mesh": mesh_info, "placement": placement, "light": light}
        uvs, image = relief.uvs, to_uint8(texture.image)
        return MeshResult(relief.vertices, relief.faces, uvs, image, camera, info, previews, relief.polygons)


def photo_mask(outcome: Reconstruction) -> torch.Tensor:
    """(S, S) the object mask at the photo's resolution: the input's own, or the mask network's
    (which only exists at the nets' resolution) scaled up."""
    size = outcome.photo.mask.shape[-1]
    if outcome.info["mask_source"] == "input":
        return torch.from_numpy(outcome.photo.mask).to(outcome.image.device)
    mask = outcome.run.target.mask.float()
    return F.interpolate(mask, size=(size, size), mode="bilinear", align_corners=False)[0, 0]


def meshed_depth(outcome: Reconstruction, resolution: int | None) -> torch.Tensor:
    """(H, W) the canonical depth the relief is meshed from: the object's carried past its canonical
    mask, so that the rim's vertices, which slide up to a grid cell outwards, find the object's
    depth there (``export``): ``RIM_RINGS`` pixels, or a cell and a pixel on a coarser grid of
    ``resolution`` vertices across (None: the ``faces`` option's grids, never that coarse)."""
    depth = outcome.state.depth[0]
    rings = RIM_RINGS
    if resolution is not None:
        rings = max(RIM_RINGS, math.ceil((depth.shape[-1] - 1) / max(resolution - 1, 1)) + 1)
    return extend_depth(depth, outcome.run.canon_mask[0, 0] > MASK_LEVEL, rings)


@dataclass
class ExportedTexture:
    """The texture of the ``texture`` option and what goes with it."""

    image: torch.Tensor
    """(1, 3, S, S) in [-1, 1], what the relief's UVs address."""
    canonical: torch.Tensor
    """The same texture in the canonical frame at the nets' resolution (what the previews turn)."""
    exposure: float = 1.0
    """A de-lit texture holds the albedo divided by ``exposure`` in linear light: 8 bits hold nothing
    above 1, so where the recovered light is too dim for a bright surface (a white roof it grazes)
    the texture is scaled down, and Blender's light that shows it as the photo is ``exposure``
    times brighter (``blender_addon/lighting.py``)."""


def exported_texture(
    outcome: Reconstruction, relief: Relief, camera: dict, mask: torch.Tensor
) -> ExportedTexture:
    """The texture of the ``texture`` option; ``relief`` and its ``camera`` are the exported ones
    (the ``albedo`` texture is de-lit with their shading), ``mask`` is ``photo_mask(outcome)``."""
    state = outcome.state
    if outcome.options.texture not in VIEW_TEXTURES:
        texture = (state.texture if outcome.options.texture == "shaded" else state.albedo)[:1]
        return ExportedTexture(texture, texture)
    photo = torch.from_numpy(outcome.photo.rgb).permute(2, 0, 1)[None].to(outcome.image.device)
    image, exposure = photo, 1.0
    if outcome.options.texture == "albedo":
        image, exposure = delit_photo(outcome, photo, relief, camera, mask)
    image = image * 2 - 1
    small = F.interpolate(image, size=outcome.image.shape[-2:], mode="area")
    grid = depth_render.view_to_canon_grid(state.depth[:1], state.view[:1])
    return ExportedTexture(image, depth_render.sample(small, grid), exposure)


def delit_photo(
    outcome: Reconstruction, photo: torch.Tensor, relief: Relief, camera: dict, mask: torch.Tensor
) -> tuple[torch.Tensor, float]:
    """(1, 3, S, S) sRGB in [0, 1]: the ``photo`` crop divided by the shading the recovered light
    gives the exported ``relief`` seen through its ``camera`` (under that light in Blender the
    relief looks like the photo again), then divided in linear light by the exposure that keeps all
    but the brightest ``ALBEDO_CLIP`` of the object's texels at most 1 (``ExportedTexture.exposure``)."""
    light = outcome.info["light"]
    towards = towards_light(light["direction"])
    shading = relief_shading(relief, camera, light["ambient"], light["diffuse"], towards, photo.shape[-1])
    linear = srgb_to_linear(photo / shading.to(photo).clamp(min=MIN_SHADING))
    brightest = linear.amax(dim=1)[0][mask > MASK_LEVEL]
    exposure = 1.0
    if brightest.numel():
        exposure = min(max(float(brightest.quantile(1 - ALBEDO_CLIP)), 1.0), MAX_EXPOSURE)
    return linear_to_srgb(linear / exposure).clamp(0, 1), exposure


def describe(
    state: Prediction, run: GAN2ShapeRun, invert_losses: list[float], opts: Options, extras: AuxiliaryNets,
    timings: dict[str, float],
) -> dict[str, Any]:
    """What result.json records: recovered view and light, losses, what was on or off."""
    view = state.view[0].detach().cpu()
    ambient, diffuse, direction = depth_render.light_terms(state.light[:1].detach().cpu())
    notes = []
    if not extras.has("vgg16"):
        notes.append("perceptual (LPIPS) loss off: no VGG16 weights registered "
                     "(import torchvision's vgg16 with --method gan2shape --category vgg16)")
    elif not extras.has("lpips"):
        notes.append("LPIPS with equal channel weights: no LPIPS v0.1 heads registered (category lpips)")
    curves = {"invert": invert_losses, **run.history.losses}
    return {
        "view": {"rotation_deg": [math.degrees(float(v)) for v in view[:3]],
                 "translation": [float(v) for v in view[3:]]},
        "light": {"ambient": float(ambient[0]), "diffuse": float(diffuse[0]),
                  "direction": [float(v) for v in direction[0]]},
        "losses": {k: (v[-1] if v else None) for k, v in curves.items()},
        "loss_curves": curves,
        "perceptual": extras.has("vgg16"),
        "pretrained_nets": sorted(extras.pretrained_nets() or {}),
        "relative_enc": opts.relative_enc,
        "pseudo_pose": "sampled" if run.sampled_pose else "predicted",
        "batch": {"size": opts.batch, "accumulate": opts.accumulate,
                  "projected_per_stage": opts.collect_iters * opts.batch * opts.accumulate},
        "view_prior": "view_mvn" if extras.has("view_mvn") else "diagonal normal",
        "view_mean": [round(v, 4) for v in run.prior.view_mean.tolist()],
        "view_std": [round(v, 4) for v in run.prior.view_cov.diag().sqrt().tolist()],
        "timings_s": timings,
        "mesh": {"resolution": opts.mesh_resolution, "texture": opts.texture, "faces_requested": opts.faces},
        "notes": notes,
    }


METHOD = GAN2Shape
