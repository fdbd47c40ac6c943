"""Import of official MeshInversion / ConvMesh checkpoints (``checkpoint_latest.pth``).

The file is a dict (``generator``, ``generator_running_avg``, ``discriminator``, optimiser states,
curves and the training arguments under ``self.args`` (MeshInversion) or ``args`` (ConvMesh)).
Inversion uses the EMA generator, so only ``generator_running_avg`` is taken. Its variant is
read from the tensors themselves; the arguments only settle what the tensors cannot tell
(instance vs. no normalisation, which template a car model was trained with).
"""

from __future__ import annotations

from typing import Any

import torch

from backend.categories import canonical_category
from backend.methods.meshinversion.generator import BASE_CHANNELS, START_SIZE, Generator, GeneratorConfig
from backend.methods.meshinversion.vgg import VGG_CONFIG, vgg_state_from_torchvision


def _training_args(raw: dict[str, Any]) -> dict[str, Any]:
    """The stored training arguments (either key; a Namespace, or the plain dict ``vars(args)`` that
    ConvMesh saves) as a dict; empty when absent."""
    args = raw.get("self.args", raw.get("args"))
    if isinstance(args, dict):
        return dict(args)
    return dict(vars(args)) if args is not None and hasattr(args, "__dict__") else {}


def pick_generator(raw: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The EMA generator's state dict, with a ``module.`` prefix (DataParallel) removed."""
    if "generator_running_avg" in raw:
        state = raw["generator_running_avg"]
    elif "fc.weight" in raw or "module.fc.weight" in raw:
        state = raw  # already a bare generator state dict
    else:
        keys = ", ".join(sorted(map(str, raw))[:8])
        raise KeyError(f"no 'generator_running_avg' in the checkpoint (top-level keys: {keys})")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TypeError("'generator_running_avg' is not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def detect_config(state: dict[str, torch.Tensor], args: dict[str, Any], category: str) -> GeneratorConfig:
    """Read latent size, conditioning, texture resolution, symmetry, norm and width from the tensors."""
    if "att.conv_context.weight" in state:
        raise ValueError("the text-conditional ConvMesh model is not supported (needs a text encoder)")
    for key in ("fc.weight", "blk1.conv1.weight_orig"):
        if key not in state:
            raise KeyError(f"tensor {key!r} is missing: not a ConvMesh generator")
    trunk = state["blk1.conv1.weight_orig"].shape[0]
    n_colors = state["emb_color.weight"].shape[0] if "emb_color.weight" in state else 0
    if "emb_class.weight" in state:
        n_classes, class_dim = state["emb_class.weight"].shape
        latent_dim = 2 * class_dim if n_colors else class_dim
    else:
        n_classes, latent_dim = 0, state["fc.weight"].shape[1]
    cells = state["fc.weight"].shape[0] // trunk
    if cells not in (START_SIZE * START_SIZE, START_SIZE * START_SIZE // 2):
        outputs = state["fc.weight"].shape[0]
        raise ValueError(f"fc.weight has {outputs} outputs, not 8x8 or 8x4 cells of {trunk} channels")
    resolution = 256
    if "blk3b.conv1.weight_orig" in state:
        resolution = 1024 if "blk3c.conv1.weight_orig" in state else 512
    if any(k.endswith(".norm.running_mean") for k in state):
        norm = "batch"
    else:
        norm = {"instance": "instance", "none": "none"}.get(str(args.get("norm_g")), "")
        if not norm:
            raise ValueError("no normalisation statistics and no 'norm_g' argument: unknown norm layer")
    mesh_path = str(args.get("mesh_path", ""))
    # the Pascal3D car release uses the 31-ring template
    cars = "31rings" in mesh_path or args.get("dataset") == "p3d" or canonical_category(category) == "car"
    return GeneratorConfig(
        latent_dim=int(latent_dim),
        n_classes=int(n_classes),
        n_colors=int(n_colors),
        texture_resolution=resolution,
        symmetric=cells == START_SIZE * START_SIZE // 2,
        norm=norm,
        width=trunk / BASE_CHANNELS[0],
        template_rings=31 if cars else 16,
    )


def validate_state(state: dict[str, torch.Tensor], config: GeneratorConfig) -> dict[str, torch.Tensor]:
    """Compare with a freshly built generator; raise naming the first tensor that does not fit."""
    expected = Generator(config).state_dict()
    for key, ref in expected.items():
        if key not in state:
            raise KeyError(f"tensor {key!r} is missing")
        got = state[key]
        if tuple(got.shape) != tuple(ref.shape):
            raise ValueError(f"tensor {key!r} has shape {list(got.shape)}, expected {list(ref.shape)}")
        if got.is_floating_point() != ref.is_floating_point():
            raise ValueError(f"tensor {key!r} has dtype {got.dtype}, expected {ref.dtype}")
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise ValueError(f"tensor {key!r} contains NaN or Inf")
    unexpected = [k for k in state if k not in expected]
    if unexpected:
        raise KeyError(f"unexpected tensor {unexpected[0]!r} ({len(unexpected)} in all)")
    return {
        key: state[key].detach().to(torch.float32 if ref.is_floating_point() else ref.dtype).contiguous()
        for key, ref in expected.items()
    }


def convert_official(raw: dict[str, Any], category: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Official checkpoint dict -> (generator state dict in our key order, architecture config).

    Category ``vgg19`` takes torchvision's ImageNet VGG19 instead (for the feature-level loss).
    """
    if not isinstance(raw, dict):
        raise TypeError(f"expected a checkpoint dict, got {type(raw).__name__}")
    if category.lower() == "vgg19":
        return vgg_state_from_torchvision(raw), dict(VGG_CONFIG)
    state = pick_generator(raw)
    config = detect_config(state, _training_args(raw), category)
    return validate_state(state, config), config.to_dict()
