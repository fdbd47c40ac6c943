"""Weights store with real files: manifests, verification, safetensors loading, safe import; the
store and the methods know nothing of each other."""

from __future__ import annotations

import ast
import hashlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from backend import weights as weights_module
from backend.categories import CATEGORY_SIZE_M, DATASET_NAMES, canonical_category
from backend.models import default_entry, import_official
from backend.protocol import UserError
from backend.weights import (
    Registry,
    WeightsEntry,
    safe_torch_load,
)
from tests.core.backend_process import ROOT, backend_env
from tests.core.tiny_models import write_entry


def save_entry(
    root: Path, tensors: dict[str, torch.Tensor], weights_id: str = "tiny", **config
) -> WeightsEntry:
    """Write a safetensors file plus a manifest listing it; returns the entry."""
    return write_entry(root, weights_id, "meshinversion", tensors, config, source="test",
                       train_command="python -m workbench.train ...")  # fmt: skip


@pytest.fixture
def tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"fc.weight": torch.randn(8, 4, generator=g), "fc.bias": torch.zeros(8)}


def test_manifest_round_trip_and_find(tmp_path: Path, tensors: dict[str, torch.Tensor]) -> None:
    entry = save_entry(tmp_path / "user", tensors, latent_dim=64, symmetric=True, width=0.25, norm="batch")
    registry = Registry(user_dir=tmp_path / "user", shipped_dir=tmp_path / "shipped")
    found = registry.find("tiny")
    assert found == entry and found.config == {
        "latent_dim": 64,
        "symmetric": True,
        "width": 0.25,
        "norm": "batch",
    }
    assert default_entry(registry, "meshinversion").id == "tiny"
    with pytest.raises(UserError) as err:
        registry.find("nope")
    assert err.value.code == "unknown_weights" and "tiny" in err.value.message
    with pytest.raises(UserError) as err:
        default_entry(registry, "gan2shape")
    assert err.value.code == "no_weights"


def test_nested_config_and_odd_strings_survive(tmp_path: Path, tensors: dict[str, torch.Tensor]) -> None:
    config = {
        "stylegan": {"size": 512, "odd key.x": 2},
        "name": 'a "quoted" \\ path é',
        "lr": [0.1, 1e-4],
    }
    save_entry(tmp_path, tensors, **config)
    assert Registry(user_dir=tmp_path, shipped_dir=tmp_path / "none").find("tiny").config == config


def test_shipped_before_user_and_duplicate_ids(tmp_path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_entry(tmp_path / "shipped", tensors, "demo")
    save_entry(tmp_path / "user", tensors, "mine")
    registry = Registry(user_dir=tmp_path / "user", shipped_dir=tmp_path / "shipped")
    assert [(e.id, e.origin) for e in registry.entries()] == [("demo", "shipped"), ("mine", "user")]
    save_entry(tmp_path / "user", tensors, "demo")
    with pytest.raises(UserError) as err:
        registry.entries()
    assert err.value.code == "duplicate_id"


def test_load_good_file(tmp_path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_entry(tmp_path, tensors)
    registry = Registry(user_dir=tmp_path, shipped_dir=tmp_path / "none")
    loaded = registry.load_state_dict(registry.find("tiny"))
    assert set(loaded) == set(tensors) and torch.equal(loaded["fc.weight"], tensors["fc.weight"])


def test_wrong_sha_refused(tmp_path: Path, tensors: dict[str, torch.Tensor]) -> None:
    entry = save_entry(tmp_path, tensors)
    data = bytearray(entry.path.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    entry.path.write_bytes(bytes(data))
    registry = Registry(user_dir=tmp_path, shipped_dir=tmp_path / "none")
    with pytest.raises(UserError) as err:
        registry.load_state_dict(registry.find("tiny"))
    assert err.value.code == "sha_mismatch"


def test_truncated_file_refused_by_size(tmp_path: Path, tensors: dict[str, torch.Tensor]) -> None:
    entry = save_entry(tmp_path, tensors)
    entry.path.write_bytes(entry.path.read_bytes()[:50])
    with pytest.raises(UserError) as err:
        Registry(user_dir=tmp_path, shipped_dir=tmp_path / "none").verify(entry)
    assert err.value.code == "size_mismatch"


def test_truncated_safetensors_with_matching_manifest(
    tmp_path: Path, tensors: dict[str, torch.Tensor]
) -> None:
    """A file truncated *before* it was registered passes the hash but must not load."""
    path = tmp_path / "cut.safetensors"
    save_file(tensors, path)
    path.write_bytes(path.read_bytes()[:-16])
    entry = WeightsEntry(
        "cut", "meshinversion", "car", path.name, hashlib.sha256(path.read_bytes()).hexdigest(),
        path.stat().st_size, "test", "MIT", root=tmp_path,
    )  # fmt: skip
    with pytest.raises(UserError) as err:
        Registry(user_dir=tmp_path, shipped_dir=tmp_path / "none").load_state_dict(entry)
    assert err.value.code == "corrupt_weights"


def test_missing_file(tmp_path: Path, tensors: dict[str, torch.Tensor]) -> None:
    entry = save_entry(tmp_path, tensors)
    entry.path.unlink()
    with pytest.raises(UserError) as err:
        Registry(user_dir=tmp_path, shipped_dir=tmp_path / "none").verify(entry)
    assert err.value.code == "missing_file"


def test_verification_is_cached(
    tmp_path: Path, tensors: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = save_entry(tmp_path, tensors)
    registry = Registry(user_dir=tmp_path, shipped_dir=tmp_path / "none")
    calls = []
    real = weights_module.sha256_file
    monkeypatch.setattr(weights_module, "_VERIFIED", {})
    monkeypatch.setattr(weights_module, "sha256_file", lambda p: calls.append(p) or real(p))
    registry.verify(entry)
    registry.verify(entry)
    assert len(calls) == 1
    os.utime(entry.path, ns=(1, 1))  # new mtime -> hashed again
    registry.verify(entry)
    assert len(calls) == 2


def test_bad_manifest(tmp_path: Path) -> None:
    (tmp_path / "manifest.toml").write_text('[[weights]]\nid = "x"\n')
    with pytest.raises(UserError) as err:
        Registry(user_dir=tmp_path, shipped_dir=tmp_path / "none").entries()
    assert err.value.code == "bad_manifest" and "missing" in err.value.message
    (tmp_path / "manifest.toml").write_text("[[weights]\n")
    with pytest.raises(UserError) as err:
        Registry(user_dir=tmp_path, shipped_dir=tmp_path / "none").entries()
    assert err.value.code == "bad_manifest"


def test_shipped_manifest_parses_and_its_files_verify() -> None:
    registry = Registry(user_dir="/nonexistent-rfi-user-dir")
    for entry in registry.entries():
        assert entry.origin == "shipped"
        registry.verify(entry)


def test_shipped_weights_stay_within_the_60_mb_budget() -> None:
    """The demo models ship with the add-on; the training checkpoints in weights/training are not
    registered and are not counted."""
    entries = Registry(user_dir="/nonexistent-rfi-user-dir").entries()
    assert sum(entry.size for entry in entries) <= 60_000_000


class _Payload:
    """Unpickling this calls ``os.system`` with a command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"generator_running_avg": {"w": torch.zeros(2)}, "x": _Payload(marker)}, evil)
    legacy = tmp_path / "evil_legacy.pth"
    legacy.write_bytes(pickle.dumps({"x": _Payload(marker)}))
    for path in (evil, legacy):
        with pytest.raises(UserError) as err:
            safe_torch_load(path)
        assert err.value.code in ("unsafe_checkpoint", "corrupt_checkpoint")
        assert not marker.exists()
    with pytest.raises(UserError) as err:
        safe_torch_load(evil)
    assert err.value.code == "unsafe_checkpoint" and "not executed" in err.value.hint
    store = Registry(user_dir=tmp_path / "user", shipped_dir=tmp_path / "none")
    with pytest.raises(UserError) as err:
        import_official(store, evil, "meshinversion", "car")
    assert err.value.code == "unsafe_checkpoint"
    assert not marker.exists() and not (tmp_path / "user" / "manifest.toml").exists()


def test_official_style_checkpoint_with_namespace_loads(tmp_path: Path) -> None:
    import argparse

    import numpy as np

    path = tmp_path / "ok.pth"
    torch.save(
        {
            "generator_running_avg": {"w": torch.ones(3)},
            "args": argparse.Namespace(lr=1e-4, name="x"),
            "curve": [np.float64(0.5)],
            "epoch": 3,
        },
        path,
    )
    raw = safe_torch_load(path)
    assert raw["args"].lr == 1e-4 and torch.equal(raw["generator_running_avg"]["w"], torch.ones(3))


def test_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(UserError) as err:
        safe_torch_load(tmp_path / "junk.pth")
    assert err.value.code == "corrupt_checkpoint"
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(UserError) as err:
        safe_torch_load(tmp_path / "list.pth")
    assert err.value.code == "not_a_checkpoint"


def test_default_skips_auxiliary_entries(
    tmp_path: Path, tensors: dict[str, torch.Tensor], monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.methods import method_class

    save_entry(tmp_path, tensors, "aux-vgg", kind="auxiliary")
    save_entry(tmp_path, tensors, "generator")
    registry = Registry(user_dir=tmp_path, shipped_dir=tmp_path / "none")
    assert default_entry(registry, "meshinversion").id == "aux-vgg"  # the base class accepts every entry
    method = method_class("meshinversion")
    monkeypatch.setattr(
        method, "is_model_entry", classmethod(lambda cls, e: e.config.get("kind") != "auxiliary")
    )
    assert default_entry(registry, "meshinversion").id == "generator"
    assert registry.default_for("meshinversion", lambda e: e.id != "aux-vgg").id == "generator"


def test_the_store_imports_no_method() -> None:
    """``backend.weights`` alone, in a fresh interpreter, loads nothing of ``backend.methods``."""
    code = "import sys, backend.weights; print([m for m in sys.modules if m.startswith('backend.methods')])"
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=backend_env(), capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def imported_modules(path: Path) -> set[str]:
    """Every module a source file imports (``from backend import weights`` counts as ``backend.weights``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_methods_never_import_the_store() -> None:
    """Auxiliary weights reach a method through ``load``; no method module imports the store, or the
    module that joins the store and the methods."""
    forbidden = {"backend.weights", "backend.models"}
    sources = sorted((ROOT / "backend" / "methods").rglob("*.py"))
    assert len(sources) > 10
    offending = {}
    for path in sources:
        bad = {m for m in imported_modules(path) if ".".join(m.split(".")[:2]) in forbidden}
        if bad:
            offending[str(path.relative_to(ROOT))] = sorted(bad)
    assert offending == {}


def test_dataset_names_become_the_categories_they_are(tmp_path: Path) -> None:
    assert canonical_category("CUB") == "bird" and canonical_category("p3d") == "car"
    assert canonical_category(" LSUN_Church ") == "church" and canonical_category("celeba") == "face"
    assert canonical_category("vgg19") == "vgg19" and canonical_category("My_Teapots") == "my_teapots"
    assert set(DATASET_NAMES.values()) <= set(CATEGORY_SIZE_M)
    # an entry imported under a dataset name before names were resolved reads as its category
    write_entry(tmp_path, "old-cub", "meshinversion", {"w": torch.zeros(1)}, {}, category="cub")
    manifest = tmp_path / "manifest.toml"
    assert 'category = "cub"' in manifest.read_text()
    store = Registry(user_dir=tmp_path, shipped_dir=tmp_path / "none")
    (entry,) = store.entries()
    assert entry.category == "bird"
    with pytest.raises(UserError) as err:
        import_official(store, manifest, "meshinversion", " ")
    assert err.value.code == "bad_category"
