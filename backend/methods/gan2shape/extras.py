"""Auxiliary GAN2Shape weights from the registry: VGG16/LPIPS, pretrained nets, view/light priors, masks.

They are separate registry entries of method ``gan2shape`` told apart by ``config.kind``; a
GAN entry uses those of its category (VGG16 and LPIPS serve every category; a GAN entry may
name its mask network with ``config.mask_weights``). Each is validated strictly when imported
(``validate``), so a wrong file fails at import and never mid-job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from backend.methods.gan2shape.convert import check_shapes, unprefixed
from backend.methods.gan2shape.masknet import MaskNet, MaskNetConfig, load_masknet
from backend.methods.gan2shape.networks import NET_NAMES, ShapeNets
from backend.methods.gan2shape.perceptual import TAP_WIDTHS, PerceptualDistance
from backend.weights import Registry, WeightsEntry

AUXILIARY_KINDS = ("pretrain", "view_mvn", "light_mvn", "vgg16", "lpips", "mask")
SHARED_KINDS = ("vgg16", "lpips")
"""Kinds that serve every category."""


@dataclass
class Extras:
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
        """``{'netD': state, ...}`` of registered joint-pretrained nets, or None."""
        if not self.has("pretrain"):
            return None
        state = self.state("pretrain")
        return {name: part for name in NET_NAMES if (part := unprefixed(f"nets.{name}", state))}


def find_extras(gan: WeightsEntry, image_size: int) -> Extras:
    """The first registered entry of every auxiliary kind that fits ``gan`` (category, net size)."""
    registry = Registry(user_dir=gan.root if gan.origin == "user" else None)
    extras = Extras()
    mask_id = gan.config.get("mask_weights")
    for entry in registry.entries():
        kind = entry.config.get("kind")
        if entry.method != gan.method or kind not in AUXILIARY_KINDS or extras.has(kind):
            continue
        if kind not in SHARED_KINDS and entry.category != gan.category:
            continue
        if kind == "mask" and mask_id is not None and entry.id != mask_id:
            continue
        if kind == "pretrain" and int(entry.config.get("image_size", 0)) != image_size:
            continue
        extras.found[kind] = (dict(entry.config), registry.load_state_dict(entry, "cpu"))
    return extras


def validate(kind: str, config: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """Strict check of an auxiliary entry against the model it feeds (raises on the first mismatch)."""
    if kind == "pretrain":
        nets = ShapeNets(int(config["image_size"]), latent_dim=int(config.get("latent_dim", 512)))
        parts = {name: unprefixed(f"nets.{name}", state) for name in NET_NAMES}
        if not parts["netD"] or len(state) != sum(len(p) for p in parts.values()):
            raise KeyError("pretrain weights need nets.netD.* and only nets.<netX>.* tensors")
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
