"""Where the weights store meets the methods: loading an entry as a ``Method``, importing checkpoints.

``backend/weights.py`` knows files and manifests, the methods know architectures; neither imports
the other. This module joins them for the job, the CLI and the training tools: it hands a method
its state dict plus the store's auxiliary entries (``AuxiliaryWeights``), and runs an official
checkpoint through ``Method.convert_official`` before the store registers it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from backend.categories import canonical_category
from backend.methods import METHOD_MODULES, method_class
from backend.methods.base import AuxiliaryWeights, Method
from backend.protocol import UserError
from backend.weights import Registry, WeightsEntry, safe_torch_load, sha256_file


def auxiliary_weights(store: Registry, method: str) -> AuxiliaryWeights:
    """The store's entries of ``method`` for its auxiliary weights; manifests are listed and files
    read (verified, on the CPU) only when the method asks."""
    return AuxiliaryWeights(
        entries=lambda: [e for e in store.entries() if e.method == method],
        read=lambda entry: store.load_state_dict(entry, "cpu"),
    )


def default_entry(store: Registry, method: str) -> WeightsEntry:
    """The first entry of ``method`` in ``store`` that can reconstruct (``Method.is_model_entry``)."""
    return store.default_for(method, method_class(method).is_model_entry)


def load_model(store: Registry, entry: WeightsEntry, device: str | torch.device) -> Method:
    """``entry`` verified and read onto ``device``, built by its method with the store's auxiliary
    weights."""
    state_dict = store.load_state_dict(entry, device)
    return build_model(entry, state_dict, device, auxiliary_weights(store, entry.method))


def build_model(
    entry: WeightsEntry, state_dict: dict[str, torch.Tensor], device: str | torch.device,
    auxiliary: AuxiliaryWeights,
) -> Method:
    """``Method.load`` with a mismatched architecture (one line naming the first tensor) or an
    invalid config turned into ``UserError``."""
    try:
        return method_class(entry.method).load(entry, state_dict, torch.device(device), auxiliary)
    except RuntimeError as exc:
        if "state_dict" not in str(exc):
            raise
        details = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        first = details[0] if details else str(exc)
        raise UserError(
            "architecture_mismatch",
            f"weights {entry.id!r} do not fit the {entry.method} model: {first[:300]}",
            "the manifest config does not match the file; re-import the checkpoint",
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(
            "bad_config",
            f"weights {entry.id!r}: the manifest config does not describe a {entry.method} model ({exc})",
            "fix its [weights.config] table or re-import the checkpoint",
        ) from None


def import_official(
    store: Registry, checkpoint: Path | str, method: str, category: str, weights_id: str | None = None
) -> WeightsEntry:
    """Convert an official ``.pth``/``.pt`` checkpoint to safetensors and register it in ``store``.

    ``Method.convert_official`` picks and validates the tensors; the model is then built with
    ``Method.load`` (strict), so a wrong file fails here, once.
    """
    checkpoint = Path(checkpoint)
    category = canonical_category(category)
    if not category:
        raise UserError("bad_category", "the category is empty", "pass --category, e.g. car, bird or face")
    if method not in METHOD_MODULES:
        raise UserError(
            "unknown_method",
            f"unknown method {method!r}",
            f"use one of {', '.join(sorted(METHOD_MODULES))}",
        )
    raw = safe_torch_load(checkpoint)
    original_sha = sha256_file(checkpoint)
    weights_id = store.check_new_id(weights_id or f"{method}-{category}-{original_sha[:8]}")
    convert = method_class(method).convert_official
    try:
        state_dict, config = convert(raw, category)
    except (KeyError, ValueError, TypeError) as exc:
        raise UserError(
            "not_a_checkpoint",
            f"{checkpoint.name} is not a {method} checkpoint for {category!r}: {exc}",
            "check --method and --category, and that the file is the official release",
        ) from None
    auxiliary = auxiliary_weights(store, method)
    return store.add_user_weights(
        f"imported from {checkpoint.resolve()} (sha256 {original_sha})",
        "as the original checkpoint (see its source)", weights_id, method, category, state_dict, config,
        check=lambda entry, tensors: build_model(entry, tensors, "cpu", auxiliary),
    )
