"""Weights store: shipped demo weights and user-imported official checkpoints, found by id.

Two manifests with the same format are read: ``weights/manifest.toml`` next to this package
(shipped, read-only) and ``manifest.toml`` in the user weights directory (default
``~/.local/share/reconstruct-from-image/weights``, env ``RFI_WEIGHTS_DIR``, or per call), which
``Registry.add_user_weights`` appends to. Each ``[[weights]]`` entry has: id, method, category, file
(relative to its manifest), sha256, size, source, licence, train_command and a ``config`` table
(the architecture, passed to ``Method.load``).

This module knows files, not methods: it never imports ``backend.methods``. Building a model
from an entry, and converting an official checkpoint, go through the ``Method`` interface in
``backend/models.py``.

Nothing here unpickles arbitrary objects: weights are loaded from safetensors, and official
``.pth`` files go through ``torch.load(weights_only=True)`` with a small explicit allow-list, so a
checkpoint carrying code is refused without running it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pickle
import re
import tomllib
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from backend.categories import canonical_category
from backend.protocol import UserError

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "weights"
USER_DIR_ENV = "RFI_WEIGHTS_DIR"
MANIFEST = "manifest.toml"
BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
WEIGHTS_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")
ENTRY_FIELDS = ("id", "method", "category", "file", "sha256", "size", "source", "licence", "train_command")
SAFE_GLOBALS: list[Any] = [
    argparse.Namespace,  # official training scripts store their arguments in the checkpoint
    np.core.multiarray.scalar,  # numpy scalars in loss curves
    np.dtype,
    type(np.dtype(np.float64)),
    type(np.dtype(np.float32)),
    type(np.dtype(np.int64)),
]
"""The only non-tensor classes an imported checkpoint may contain; everything else is refused."""


@dataclass(frozen=True)
class WeightsEntry:
    """One registered model; ``root`` is the directory of the manifest that lists it."""

    id: str
    method: str
    category: str
    file: str
    sha256: str
    size: int
    source: str
    licence: str
    config: dict[str, Any] = field(default_factory=dict)
    train_command: str = ""
    root: Path = SHIPPED_DIR
    origin: str = "shipped"

    @property
    def path(self) -> Path:
        return self.root / self.file

    def to_dict(self) -> dict[str, Any]:
        """The manifest fields (no ``root``/``origin``, which come from where it is listed)."""
        return {**{name: getattr(self, name) for name in ENTRY_FIELDS}, "config": dict(self.config)}


def default_user_dir() -> Path:
    env = os.environ.get(USER_DIR_ENV)
    if env:
        return Path(env).expanduser()
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "reconstruct-from-image" / "weights"


def read_manifest(root: Path, origin: str) -> list[WeightsEntry]:
    """Entries of ``root/manifest.toml`` (none if the file does not exist)."""
    path = root / MANIFEST
    if not path.exists():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(
            "bad_manifest", f"{path} is not valid TOML: {exc}", "fix or remove the file"
        ) from None
    entries = []
    for index, raw in enumerate(data.get("weights", [])):
        missing = [name for name in ENTRY_FIELDS if name not in raw and name != "train_command"]
        unknown = sorted(set(raw) - set(ENTRY_FIELDS) - {"config"})
        if missing or unknown:
            what = f"missing {', '.join(missing)}" if missing else f"unknown {', '.join(unknown)}"
            raise UserError("bad_manifest", f"{path}: entry {index + 1} has {what}", "fix the manifest")
        if isinstance(raw["category"], str):  # entries imported under a dataset name before it was resolved
            raw = {**raw, "category": canonical_category(raw["category"])}
        entries.append(WeightsEntry(**raw, root=root, origin=origin))
    return entries


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"non-finite number {value} cannot be stored")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ValueError(f"cannot store {type(value).__name__} in the manifest")


def _toml_key(key: str) -> str:
    """Bare when TOML allows it (readable manifests), quoted otherwise."""
    return key if BARE_KEY.match(key) else json.dumps(key)


def toml_table(header: str, table: dict[str, Any]) -> list[str]:
    """Scalars first, then nested tables as ``[header.key]`` sections (TOML requires this order)."""
    lines = [header] if header else []
    nested = {k: v for k, v in table.items() if isinstance(v, dict)}
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items() if k not in nested]
    base = header.strip("[]")
    for key, sub in nested.items():
        lines += toml_table(f"[{base}.{_toml_key(key)}]", sub)
    return lines


def write_manifest(root: Path, entries: list[WeightsEntry]) -> None:
    """Rewrite ``root/manifest.toml`` atomically, checked by parsing it back."""
    lines = ["# Imported weights, written by `python -m backend weights import`.", ""]
    for entry in entries:
        lines += toml_table("[[weights]]", {k: v for k, v in entry.to_dict().items() if k != "config"})
        lines += toml_table("[weights.config]", entry.config)
        lines.append("")
    text = "\n".join(lines)
    if [WeightsEntry(**e, root=root).to_dict() for e in tomllib.loads(text)["weights"]] != [
        e.to_dict() for e in entries
    ]:
        raise UserError("bad_manifest", "manifest did not survive a TOML round trip", "report this bug")
    _atomic_write(root / MANIFEST, text.encode("utf-8"))


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_VERIFIED: dict[tuple[str, int, int], str] = {}
"""sha256 by (path, mtime_ns, size): a warm server verifies a file once, not on every job."""


def cached_sha256(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _VERIFIED:
        _VERIFIED[key] = sha256_file(path)
    return _VERIFIED[key]


class Registry:
    """Shipped plus user weights; ids are unique across both."""

    def __init__(self, user_dir: Path | str | None = None, shipped_dir: Path = SHIPPED_DIR) -> None:
        self.shipped_dir = shipped_dir
        self.user_dir = Path(user_dir).expanduser() if user_dir else default_user_dir()

    def entries(self) -> list[WeightsEntry]:
        """Shipped entries first (in manifest order), then user-imported ones."""
        shipped = read_manifest(self.shipped_dir, "shipped")
        user = read_manifest(self.user_dir, "user")
        taken = {e.id for e in shipped}
        clash = [e.id for e in user if e.id in taken]
        if clash:
            raise UserError(
                "duplicate_id",
                f"user weights reuse shipped id(s): {', '.join(clash)}",
                f"rename them in {self.user_dir / MANIFEST}",
            )
        return shipped + user

    def find(self, weights_id: str) -> WeightsEntry:
        entries = self.entries()
        for entry in entries:
            if entry.id == weights_id:
                return entry
        known = ", ".join(e.id for e in entries) or "none"
        raise UserError(
            "unknown_weights",
            f"no weights with id {weights_id!r} (known: {known})",
            "list them with `python -m backend weights list`, or import an official checkpoint",
        )

    def default_for(self, method: str, accepts: Callable[[WeightsEntry], bool]) -> WeightsEntry:
        """The first listed entry for ``method`` that ``accepts`` (``Method.is_model_entry``, which
        skips auxiliary entries); shipped demo weights come before user imports."""
        for entry in self.entries():
            if entry.method == method and accepts(entry):
                return entry
        raise UserError(
            "no_weights",
            f"no weights registered for method {method!r}",
            f"import a checkpoint with `python -m backend weights import FILE --method {method} ...`",
        )

    def verify(self, entry: WeightsEntry) -> None:
        """Check presence, size and sha256 (hash cached by path, mtime and size)."""
        path = entry.path
        if not path.is_file():
            raise UserError(
                "missing_file",
                f"weights file for {entry.id!r} not found: {path}",
                "re-run `python3 build.py setup` or re-import the checkpoint",
            )
        size = path.stat().st_size
        if size != entry.size:
            raise UserError(
                "size_mismatch",
                f"weights {entry.id!r}: {path.name} has {size} bytes, the manifest says {entry.size}",
                "the file is truncated or replaced; restore it or re-import",
            )
        if cached_sha256(path) != entry.sha256:
            raise UserError(
                "sha_mismatch",
                f"weights {entry.id!r}: sha256 of {path.name} does not match the manifest",
                "the file is corrupt or replaced; restore it or re-import",
            )

    def load_state_dict(
        self, entry: WeightsEntry, device: str | torch.device = "cpu"
    ) -> dict[str, torch.Tensor]:
        """Verify, then read the safetensors file onto ``device``."""
        self.verify(entry)
        try:
            return load_file(entry.path, device=str(device))
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(
                "corrupt_weights",
                f"cannot read {entry.path.name} as safetensors: {exc}",
                "re-import the weights",
            ) from None

    def check_new_id(self, weights_id: str) -> str:
        """``weights_id`` when it can name a new entry (a plain name no entry uses yet)."""
        if not WEIGHTS_ID.match(weights_id):
            raise UserError(
                "bad_id",
                f"weights id {weights_id!r} is not a plain name",
                "use letters, digits, '.', '_' and '-' (it also names the file)",
            )
        if any(e.id == weights_id for e in self.entries()):
            raise UserError(
                "duplicate_id", f"weights id {weights_id!r} exists already", "pass another --id"
            )
        return weights_id

    def add_user_weights(
        self,
        source: str,
        licence: str,
        weights_id: str,
        method: str,
        category: str,
        state_dict: dict[str, torch.Tensor],
        config: dict[str, Any],
        check: Callable[[WeightsEntry, dict[str, torch.Tensor]], object],
    ) -> WeightsEntry:
        """Register weights in the user folder (a converted official checkpoint, or a net trained here
        for one): the safetensors file, then the manifest entry. ``check(entry, tensors read back)``
        (building the model) runs before the file takes its name, so a file that fails it is never
        registered."""
        tensors = {
            k: v.detach().to("cpu", torch.float32 if v.is_floating_point() else v.dtype).contiguous().clone()
            for k, v in state_dict.items()
        }
        target = self.user_dir / f"{weights_id}.safetensors"
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        try:
            self.user_dir.mkdir(parents=True, exist_ok=True)
            try:
                save_file(tensors, tmp)
                entry = WeightsEntry(
                    id=weights_id,
                    method=method,
                    category=category,
                    file=target.name,
                    sha256=sha256_file(tmp),
                    size=tmp.stat().st_size,
                    source=source,
                    licence=licence,
                    config=config,
                    root=self.user_dir,
                    origin="user",
                )
                check(entry, load_file(tmp))
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            write_manifest(self.user_dir, [*read_manifest(self.user_dir, "user"), entry])
        except (OSError, SafetensorError) as exc:
            raise UserError(
                "not_writable",
                f"cannot write the imported weights to {self.user_dir}: {exc}",
                f"free disk space, or choose a writable folder with --weights-dir or ${USER_DIR_ENV}",
            ) from None
        return entry


def safe_torch_load(path: Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with only ``SAFE_GLOBALS`` allowed; code is never run."""
    if not path.is_file():
        raise UserError("missing_file", f"checkpoint not found: {path}", "check the path")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        globals_named = [line for line in lines if "GLOBAL" in line]
        if globals_named:
            raise UserError(
                "unsafe_checkpoint",
                f"refused {path.name}: it holds objects that could run code ({globals_named[0][:200]})",
                "it was not executed; only import official checkpoints from their original source",
            ) from None
        reason = next(
            (line for line in lines if "error" in line.lower() or "unsupported" in line.lower()), ""
        )
        raise UserError(
            "corrupt_checkpoint",
            f"cannot read {path.name} as a PyTorch checkpoint: {reason[:200]}",
            "re-download it",
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        raise UserError(
            "corrupt_checkpoint",
            f"cannot read {path.name} as a PyTorch checkpoint: {str(exc)[:200]}",
            "re-download it",
        ) from None
    if not isinstance(raw, dict):
        raise UserError(
            "not_a_checkpoint",
            f"{path.name} holds a {type(raw).__name__}, not a checkpoint dict",
            "check the file",
        )
    return raw
