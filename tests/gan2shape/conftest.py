"""The tiny GAN registered as GAN2Shape weights in a private user weights folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from backend.methods.base import AuxiliaryWeights
from backend.models import auxiliary_weights
from backend.weights import Registry, WeightsEntry, sha256_file, write_manifest
from tests.gan2shape.helpers import TINY, tiny_state


@pytest.fixture
def auxiliary(tmp_path: Path) -> AuxiliaryWeights:
    """The auxiliary entries of the private weights folder (``tiny_entry``'s, and what a test adds
    there); the shipped weights (demo GAN, mask network) are left out so tests see only what they
    register."""
    store = Registry(user_dir=tmp_path, shipped_dir=tmp_path / "no-shipped-weights")
    return auxiliary_weights(store, "gan2shape")


@pytest.fixture
def tiny_entry(tmp_path: Path) -> tuple[WeightsEntry, dict[str, torch.Tensor]]:
    """The tiny GAN written and registered in a private user weights folder."""
    state = tiny_state()
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, path)
    entry = WeightsEntry(
        id="tiny-car", method="gan2shape", category="car", file=path.name, sha256=sha256_file(path),
        size=path.stat().st_size, source="test", licence="test", config=TINY.to_dict(), root=tmp_path,
        origin="user",
    )
    write_manifest(tmp_path, [entry])
    return entry, state
