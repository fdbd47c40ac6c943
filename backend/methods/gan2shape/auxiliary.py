"""Auxiliary GAN2Shape weights: VGG16/LPIPS, pretrained nets, view/light priors, masks.

They are separate weights entries of method ``gan2shape`` told apart by ``config.kind``, handed to
``GAN2Shape.load`` by the job (``AuxiliaryWeights``); a
GAN entry uses those of its category (VGG16 and LPIPS serve every category; a GAN entry may
name its mask network with ``config.mask_weights``). Each is validated strictly when imported
(``validate``), so a wrong file fails at import and never mid-job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from backend.methods.base import AuxiliaryWeights
from backend.methods.gan2shape.convert import check_shapes, unprefixed
from backend.methods.gan2shape.masknet import MaskNet, MaskNetConfig, load_masknet
from backend.methods.gan2shape.networks import NET_NAMES, ShapeNets, net_widths
from backend.methods.gan2shape.perceptual import TAP_WIDTHS, PerceptualDistance

AUXILIARY_KINDS = ("pretrain", "view_mvn", "light_mvn", "vgg16", "lpips", "mask")
SHARED_KINDS = ("vgg16", "lpips")
"""Kinds that serve every category."""
PRETRAIN_JOB_OPTIONS = ("relative_enc", "f1_d", "lam_smooth")
"""Options a pretrain entry's config may set for the jobs that use it (the user's value still wins)."""


@dataclass
class AuxiliaryNets:
    """Loaded auxiliary entries by kind: (config, state dict)."""

    found: dict[str, tuple[dict[str, Any], dict[str, torch.Tensor]]] = field(default_factory=dict)

    def has(self, kind: str) -> bool:
        return kind in self.found

    def state(self, kind: str) -> dict[str, torch.Tensor]:
        return self.found[kind][1]

    def perceptual(self, device: torch.device) -> PerceptualDistance | None:
        """LPIPS(VGG16) when VGG16 weights are registered, with LPIPS heads when those are too."""
        if not self.has("vgg16"):
            return None
        heads = self.state("lpips") if self.has("lpips") else None
        return PerceptualDistance.from_state_dicts(self.state("vgg16"), heads).to(device)

    def mask_network(self, device: torch.device) -> MaskNet | None:
        if not self.has("mask"):
            return None
        config, state = self.found["mask"]
        return load_masknet(MaskNetConfig.from_dict(config), state, device)

    def pretrained_nets(self) -> dict[str, dict[str, torch.Tensor]] | None:
        """``{'netD': state, ...}`` of registered pretrained nets (all five for the official joint
        pretraining, only ``netEnc`` for an encoder pretrained on GAN samples), or None."""
        if not self.has("pretrain"):
            return None
        state = self.state("pretrain")
        return {name: part for name in NET_NAMES if (part := unprefixed(f"nets.{name}", state))}

    def pretrained_width(self) -> int | None:
        """``nf`` of the pretrained depth/albedo/view/light nets (None: the official width)."""
        width = self.found["pretrain"][0].get("net_width") if self.has("pretrain") else None
        return None if width is None else int(width)

    def pretrained_depth(self) -> bool:
        """A pretrained depth net replaces the per-image ellipsoid prior (and implies view/light nets)."""
        return "netD" in (self.pretrained_nets() or {})

    def option_defaults(self) -> dict[str, Any]:
        """Options the pretrained nets were made for (``PRETRAIN_JOB_OPTIONS``); a user's explicit
        value still wins."""
        if not self.has("pretrain"):
            return {}
        config = self.found["pretrain"][0]
        return {k: config[k] for k in PRETRAIN_JOB_OPTIONS if k in config}


def find_auxiliary_nets(gan: Any, image_size: int, auxiliary: AuxiliaryWeights) -> AuxiliaryNets:
    """The first entry of ``auxiliary`` of every kind that fits ``gan`` (a weights entry: category,
    net size), read from its file."""
    extras = AuxiliaryNets()
    mask_id = gan.config.get("mask_weights")
    for entry in auxiliary.entries():
        kind = entry.config.get("kind")
        if kind not in AUXILIARY_KINDS:
            continue
        if kind != "pretrain" and extras.has(kind):
            continue
        if kind not in SHARED_KINDS and entry.category != gan.category:
            continue
        if kind == "mask" and mask_id is not None and entry.id != mask_id:
            continue
        if kind == "pretrain" and not fits_gan(entry, gan, image_size):
            continue
        state = auxiliary.read(entry)
        if kind == "pretrain" and (held := extras.found.get(kind)) and len(held[1]) >= len(state):
            continue  # a joint-pretrained file (all five nets) wins over an encoder-only one
        extras.found[kind] = (dict(entry.config), state)
    return extras


def fits_gan(pretrain: Any, gan: Any, image_size: int) -> bool:
    """A pretrain file fits its net size; one trained on a particular GAN's samples (``gan`` and
    ``gan_sha256`` in its config) fits only that exact GAN file."""
    config = pretrain.config
    if int(config.get("image_size", 0)) != image_size:
        return False
    return "gan" not in config or (config["gan"] == gan.id and config.get("gan_sha256") == gan.sha256)


def validate(kind: str, config: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """Strict check of an auxiliary entry against the model it feeds (raises on the first mismatch)."""
    if kind == "pretrain":
        size, width = int(config["image_size"]), config.get("net_width")
        nf, gn_base = net_widths(size, None if width is None else int(width))
        nets = ShapeNets(size, nf=nf, gn_base=gn_base, latent_dim=int(config.get("latent_dim", 512)))
        parts = {name: unprefixed(f"nets.{name}", state) for name in NET_NAMES}
        if not any(parts.values()) or len(state) != sum(len(p) for p in parts.values()):
            raise KeyError("pretrain weights need nets.<netX>.* tensors (X: D, A, V, L, Enc), nothing else")
        nets.load_official({name: part for name, part in parts.items() if part})
    elif kind == "vgg16":
        PerceptualDistance().features.load_state_dict(unprefixed("features", state), strict=True)
    elif kind == "lpips":
        heads = {f"lin{i}.model.1.weight": (1, w, 1, 1) for i, w in enumerate(TAP_WIDTHS)}
        check_shapes(heads, state, "lpips")
    elif kind == "mask":
        load_masknet(MaskNetConfig.from_dict(config), state, "cpu")
    else:
        n = 6 if kind == "view_mvn" else 4
        check_shapes({"mean": (n,), "cov": (n, n)}, state, kind)
