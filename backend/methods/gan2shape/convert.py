"""Official GAN2Shape files converted for the weights store (``weights import FILE --method gan2shape``).

What a file is follows from its content, validated strictly against the model it feeds:

- a rosinality StyleGAN2 checkpoint ``{'g_ema', 'd', ...}`` for an official category
  (``face``/``celeba``, ``cat``, ``car``, ``church``, ``synface``) -> the method's main weights,
  with the margin its samples leave around the object (``framing.py``) as the entry's ``crop_margin``;
- a joint-pretrained ``*_pretrain.pth`` (``{'netD', 'netA', 'netV', 'netL', 'netEnc', ...}``) ->
  starting weights of the depth/albedo/view/light nets and encoder for that category;
- ``view_mvn.pth`` / ``light_mvn.pth`` (``{'mean', 'cov'}``) -> that category's view/light prior;
- ``--category vgg16``: torchvision's ``vgg16`` ImageNet state dict (turns the LPIPS term on);
- ``--category lpips``: LPIPS v0.1 ``vgg.pth`` linear heads (optional, refines that term).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from backend.methods.gan2shape.config import CATEGORY_SETTINGS
from backend.methods.gan2shape.framing import checkpoint_margin
from backend.methods.gan2shape.networks import NET_NAMES, ShapeNets
from backend.methods.gan2shape.perceptual import TAP_WIDTHS, PerceptualDistance, split_vgg_state
from backend.methods.gan2shape.stylegan2 import (
    GAN_PARTS,
    OFFICIAL_CONFIGS,
    Discriminator,
    Generator,
    StyleGAN2Config,
    flatten_checkpoint,
)

CATEGORY_ALIASES = {"face": "celeba", "celeba": "celeba", "cat": "cat", "car": "car", "church": "church",
                    "synface": "synface"}
NET_IMAGE_SIZE = {"celeba": 128, "cat": 128, "car": 128, "church": 128, "synface": 64}
"""Resolution of the depth/albedo/view/light nets per official config (``image_size``)."""


def check_shapes(expected: dict[str, tuple[int, ...]], state: dict[str, Any], what: str) -> None:
    """Raise ``KeyError``/``ValueError`` naming the first missing, unexpected or mis-shaped tensor."""
    for key, shape in expected.items():
        if key not in state:
            raise KeyError(f"{what}: tensor {key!r} is missing")
        got = state[key]
        if not isinstance(got, torch.Tensor):
            raise ValueError(f"{what}: {key!r} is a {type(got).__name__}, not a tensor")
        if tuple(got.shape) != shape:
            raise ValueError(f"{what}: tensor {key!r} has shape {tuple(got.shape)}, expected {shape}")
    extra = sorted(set(state) - set(expected))
    if extra:
        raise KeyError(f"{what}: unexpected tensor {extra[0]!r}")


def check_strict(module: nn.Module, state: dict[str, Any], what: str) -> None:
    """``check_shapes`` against everything ``module`` stores (parameters and buffers)."""
    check_shapes({k: tuple(v.shape) for k, v in module.state_dict().items()}, state, what)


def prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in state.items()}


def unprefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    start = prefix + "."
    return {k[len(start) :]: v for k, v in state.items() if k.startswith(start)}


def strip_module(state: dict[str, Any]) -> dict[str, Any]:
    """Drop a DataParallel/DDP ``module.`` prefix."""
    return {str(k).removeprefix("module."): v for k, v in state.items()}


def gan_config(category: str) -> StyleGAN2Config:
    official = CATEGORY_ALIASES.get(category)
    if official is None:
        raise ValueError(f"no official GAN2Shape StyleGAN2 for category {category!r}; use one of "
                         f"{', '.join(sorted(CATEGORY_ALIASES))}")
    return OFFICIAL_CONFIGS[official]


def convert_gan(raw: dict[str, Any], category: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    config = gan_config(category)
    parts = {part: strip_module(raw[part]) for part in GAN_PARTS}
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        generator, discriminator = Generator(config), Discriminator(config)
    check_strict(generator, parts["g_ema"], "g_ema")
    check_strict(discriminator, parts["d"], "d")
    image_size = NET_IMAGE_SIZE[CATEGORY_ALIASES[category]]
    entry_config = {"kind": "stylegan2", **config.to_dict(), "image_size": image_size}
    crop = CATEGORY_SETTINGS.get(CATEGORY_ALIASES[category], {}).get("gan_crop", 1.0)
    margin = checkpoint_margin(config, parts["g_ema"], crop)
    if margin is not None:
        entry_config["crop_margin"] = round(margin, 4)
    return flatten_checkpoint(parts), entry_config


def convert_pretrain(raw: dict[str, Any], category: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    official = CATEGORY_ALIASES.get(category, category)
    preferred = NET_IMAGE_SIZE.get(official, 128)
    sizes = [preferred, 64 if preferred == 128 else 128]
    nets_raw = {name: strip_module(raw[name]) for name in NET_NAMES if name in raw}
    if "netD" not in nets_raw:
        raise KeyError("no 'netD' in the checkpoint: not a GAN2Shape pretrain file")
    latent_dim = 512
    if "netEnc" in nets_raw:
        weights = [k for k in nets_raw["netEnc"] if k.endswith(".weight")]
        latent_dim = nets_raw["netEnc"][max(weights, key=lambda k: int(k.split(".")[1]))].shape[0]
    first_error: Exception | None = None
    for size in sizes:
        with torch.device("meta"):
            nets = ShapeNets(size, latent_dim=latent_dim)
        try:
            for name, state in nets_raw.items():
                check_strict(getattr(nets, name), state, name)
        except (KeyError, ValueError) as exc:
            first_error = first_error or exc
            continue
        state = {k: v for name, s in nets_raw.items() for k, v in prefixed(f"nets.{name}", s).items()}
        config = {"kind": "pretrain", "image_size": size, "latent_dim": latent_dim, "nets": sorted(nets_raw)}
        return state, config
    raise first_error


def convert_mvn(raw: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    mean, cov = raw["mean"], raw["cov"]
    n = mean.numel()
    if n not in (4, 6) or tuple(cov.shape) != (n, n):
        shapes = f"{tuple(mean.shape)} and {tuple(cov.shape)}"
        raise ValueError(f"expected mean (6,), cov (6, 6) (view) or (4,), (4, 4) (light); got {shapes}")
    kind = "view_mvn" if n == 6 else "light_mvn"
    return {"mean": mean.reshape(n).float(), "cov": cov.float()}, {"kind": kind}


def convert_vgg16(raw: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    features = split_vgg_state(strip_module(raw.get("state_dict", raw)))
    with torch.device("meta"):
        reference = PerceptualDistance().features
    check_strict(reference, features, "vgg16 features")
    return prefixed("features", features), {"kind": "vgg16"}


def convert_lpips(raw: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    heads = {k: v for k, v in strip_module(raw).items() if k.startswith("lin")}
    expected = {f"lin{i}.model.1.weight": (1, w, 1, 1) for i, w in enumerate(TAP_WIDTHS)}
    check_shapes(expected, heads, "lpips")
    return heads, {"kind": "lpips"}


def convert_official(raw: dict[str, Any], category: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Official file -> (state dict, config) for the store; see the module docstring for the kinds."""
    if not isinstance(raw, dict):
        raise TypeError("the checkpoint is not a dict")
    if category == "vgg16":
        return convert_vgg16(raw)
    if category == "lpips":
        return convert_lpips(raw)
    if "g_ema" in raw:
        if "d" not in raw:
            raise KeyError("the checkpoint has 'g_ema' but no 'd': GAN2Shape needs the discriminator too")
        return convert_gan(raw, category)
    if any(name in raw for name in NET_NAMES):
        return convert_pretrain(raw, category)
    if set(raw) >= {"mean", "cov"}:
        return convert_mvn(raw)
    raise KeyError(f"unrecognised checkpoint (top-level keys: {', '.join(sorted(map(str, raw))[:8])})")
