"""The MeshInversion ``Method``: load a ConvMesh generator, reconstruct photos, export meshes.

A job: crop the photo around its mask at ``render_size`` -> ``Inverter.run`` (candidate search,
camera search, 4-stage optimisation) -> ``to_mesh_result``. ``run_batch`` inverts several photos
in one batched optimisation. VGG19 weights for the feature loss come from the auxiliary weights the
job hands to ``load`` (an entry of this method with the VGG config, imported with category vgg19),
read at the first job that needs the term; without them the term is off and ``info`` says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from backend.categories import LENGTH_AXIS, scale_rule
from backend.inputs import MIN_SIDE, Crop, InputImage, crop_to_object, photo_side
from backend.methods.base import AuxiliaryWeights, Converted, MeshResult, Method, Progress
from backend.methods.meshinversion.appearance import compose, texture_size
from backend.methods.meshinversion.convert import convert_official
from backend.methods.meshinversion.encoder import ENCODER_KIND, EncoderConfig, PoseLatentEncoder
from backend.methods.meshinversion.export import to_mesh_result
from backend.methods.meshinversion.generator import Generator, GeneratorConfig
from backend.methods.meshinversion.invert import InversionResult, InversionSettings, Inverter
from backend.methods.meshinversion.mesh_gan import MeshGAN
from backend.methods.meshinversion.options import ENCODER_STARTS, Options
from backend.methods.meshinversion.vgg import VGG_CONFIG, VGG19Relu31
from backend.render.bake import bake_photo

UNSURE_POSE_BELOW = 0.8
"""``Guess.confidence`` under which a result warns that its front and back may be swapped: on 1,000
validation photos this flags 7 of the shipped encoder's 9 front/back swaps and 57 of its other 991
views (benchmarks/MESHINVERSION.md, session 14)."""


def is_vgg_entry(entry: Any) -> bool:
    return entry.config.get("network") == VGG_CONFIG["network"]


def is_encoder_entry(entry: Any) -> bool:
    return entry.config.get("kind") == ENCODER_KIND


class MeshInversion(Method):
    """One loaded generator, or a validated auxiliary entry: VGG19 (serves the feature loss) or a
    start encoder (serves the generator it was trained for)."""

    name: ClassVar[str] = "meshinversion"

    def __init__(
        self, entry: Any, device: torch.device, model: MeshGAN | None, auxiliary: AuxiliaryWeights
    ) -> None:
        self.entry, self.device, self.model, self.auxiliary = entry, device, model, auxiliary
        self.auxiliary_nets: dict[str, torch.nn.Module | None] = {}
        """Auxiliary networks by role, once looked up (None: none registered)."""

    @classmethod
    def is_model_entry(cls, entry: Any) -> bool:
        return not (is_vgg_entry(entry) or is_encoder_entry(entry))

    @classmethod
    def convert_official(cls, checkpoint: dict[str, Any], category: str) -> Converted:
        """A ConvMesh ``checkpoint_latest.pth``, or torchvision's VGG19 for category ``vgg19``
        (``convert.py``)."""
        return convert_official(checkpoint, category)

    @classmethod
    def load(
        cls, entry: Any, state_dict: dict[str, Any], device: Any, auxiliary: AuxiliaryWeights
    ) -> MeshInversion:
        """Build the generator from ``entry.config`` and load ``state_dict`` strictly."""
        device = torch.device(device)
        if is_vgg_entry(entry):
            VGG19Relu31().load_state_dict(state_dict, strict=True)
            return cls(entry, device, None, auxiliary)
        if is_encoder_entry(entry):
            encoder = PoseLatentEncoder(EncoderConfig.from_dict(dict(entry.config)))
            encoder.load_state_dict(state_dict, strict=True)
            return cls(entry, device, None, auxiliary)
        generator = Generator(GeneratorConfig.from_dict(dict(entry.config)))
        generator.load_state_dict(state_dict, strict=True)
        return cls(entry, device, MeshGAN(generator.to(device)), auxiliary)

    def feature_network(self) -> VGG19Relu31 | None:
        """The first auxiliary entry with the VGG config, read and loaded once."""
        return self._auxiliary_net("vgg", is_vgg_entry, lambda entry: VGG19Relu31())

    def start_encoder(self) -> PoseLatentEncoder | None:
        """The auxiliary start encoder trained for this very generator (same sha256), loaded once."""
        return self._auxiliary_net(
            "encoder",
            lambda e: is_encoder_entry(e) and e.config.get("generator_sha256") == self.entry.sha256,
            lambda entry: PoseLatentEncoder(EncoderConfig.from_dict(dict(entry.config))),
        )

    def _auxiliary_net(
        self, role: str, matches: Callable[[Any], bool], build: Callable[[Any], torch.nn.Module]
    ) -> Any:
        """The first auxiliary entry that ``matches``, built, loaded strictly and frozen on this device,
        or None; looked up once per ``role``."""
        if role not in self.auxiliary_nets:
            entry = next((e for e in self.auxiliary.entries() if matches(e)), None)
            net = None
            if entry is not None:
                net = build(entry)
                net.load_state_dict(self.auxiliary.read(entry), strict=True)
                net = net.eval().requires_grad_(False).to(self.device)
            self.auxiliary_nets[role] = net
        return self.auxiliary_nets[role]

    def inverter(self, settings: InversionSettings) -> Inverter:
        """An ``Inverter`` of this generator with the auxiliary networks ``settings`` call for."""
        assert self.model is not None
        vgg = self.feature_network() if settings.feature_weight > 0 else None
        encoder = self.start_encoder() if settings.start in ENCODER_STARTS else None
        return Inverter(self.model, settings, vgg, encoder)

    def run(self, image: InputImage, options: Options, seed: int, progress: Progress) -> MeshResult:
        return self.run_batch([image], options, seed, progress)[0]

    def run_batch(
        self, images: list[InputImage], options: Options, seed: int, progress: Progress
    ) -> list[MeshResult]:
        """Reconstruct several photos in one batched optimisation (the same result per image as a
        batch of one would give with the same random draws, at a lower cost per image)."""
        margin = options.crop_margin
        crops = [crop_to_object(image, options.render_size, margin) for image in images]
        photos = [
            crop_to_object(image, photo_side(image, crop.box[2], MIN_SIDE), margin)
            for image, crop in zip(images, crops, strict=True)
        ]
        return self.invert_crops(crops, options, seed, progress, photos)

    def invert_crops(
        self, crops: list[Crop], options: Options, seed: int, progress: Progress,
        photos: list[Crop] | None = None,
    ) -> list[MeshResult]:
        """The work of ``run_batch`` from its crops at the nets' resolution; ``photos``: the same crops
        at the photo's own resolution for the texture stage (default ``crops``)."""
        if self.model is None:
            raise ValueError(
                f"weights {self.entry.id!r} are auxiliary (VGG19 features or a start encoder), not a "
                "generator: choose a MeshInversion generator (auxiliary entries are used automatically)"
            )
        settings = InversionSettings.from_options(options)
        inverter = self.inverter(settings)
        vgg, encoder = inverter.vgg, inverter.encoder
        started = time.perf_counter()
        results = inverter.run(
            [c.rgb for c in crops], [c.mask for c in crops], seed, progress
        )
        elapsed = time.perf_counter() - started
        progress("export", 0, 1)
        notes = []
        if settings.start in ENCODER_STARTS and encoder is None:
            notes.append(
                "start: no encoder registered for this generator, so the camera search ran (train one "
                "from a clone of the repository: `python -m workbench.train meshinversion-encoder "
                f"--generator {self.entry.id} --out runs/encoder --export`)"
            )
        if settings.feature_weight > 0 and vgg is None:
            notes.append(
                "feature-level texture loss off: no VGG19 weights registered (import torchvision's "
                "vgg19 with `weights import FILE --method meshinversion --category vgg19`)"
            )
        info = {
            "feature_loss": vgg is not None,
            "notes": notes,
            "batch_size": len(crops),
            "optimisation_seconds_per_image": elapsed / len(crops),
            "template_rings": self.model.config.template_rings,
        }
        placement = {"scale": options.scale, "size_m": options.size_m}
        rule = scale_rule(placement, self.entry.category, LENGTH_AXIS)
        info["placement"] = rule.describe(self.entry.category)
        meshes = []
        for result, crop, photo in zip(results, crops, photos or crops, strict=True):
            texture, texture_info = self.final_texture(result, photo, options)
            own = {**info, "texture": texture_info,
                   "warnings": pose_warnings(result.pose_confidence, options.turn_start)}  # fmt: skip
            meshes.append(to_mesh_result(self.model, result, crop, own, texture,
                                         options.previews, rule, options.faces,
                                         options.faces_smoothing, options.quads))  # fmt: skip
        progress("export", 1, 1)
        return meshes

    def final_texture(
        self, result: InversionResult, photo: Crop, options: Options
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """The exported texture (3, N, N) in [-1, 1] of the ``texture`` mode, and what result.json says
        of it."""
        assert self.model is not None
        mode, gan_size = options.texture, self.model.config.texture_resolution
        if mode == "generated":
            return result.texture, {"mode": mode, "size": gan_size}
        size = texture_size(options.texture_size, photo.mask.shape[0], gan_size)
        device = result.texture.device
        rgb = torch.from_numpy(photo.rgb).to(device).permute(2, 0, 1)
        mask = torch.from_numpy(photo.mask).to(device)
        with torch.no_grad():
            model, camera = self.model, result.camera.camera()
            bake = bake_photo(result.vertices, model.faces, model.exported_uvs, camera, rgb, mask, size)
            appearance = compose(mode, result.texture, bake, self.model.config.symmetric)
        texture_info = {"mode": mode, "size": size, "photo_pixels": int(photo.mask.shape[0]),
                        "seen_fraction": round(appearance.seen, 4),
                        "mirrored_fraction": round(appearance.mirrored, 4)}  # fmt: skip
        return appearance.texture * 2 - 1, texture_info


def pose_warnings(confidence: float | None, turned: bool) -> list[str]:
    """A warning where the start encoder could hardly tell the object's front from its back."""
    if confidence is None or not math.isfinite(confidence) or confidence >= UNSURE_POSE_BELOW:
        return []
    state = "off" if turned else "on"
    return [
        f"pose: front and back are hard to tell in this photo (the start encoder's azimuth confidence "
        f"is {confidence:.2f}, below {UNSURE_POSE_BELOW}); if the object faces the wrong way, "
        f"reconstruct it again with turn_start {state} (in Blender: Again, Turn Front and Back)"
    ]


METHOD = MeshInversion
