"""``python -m backend doctor``: one screen that says whether this machine can run a job.

Each line is ``[ok]``, ``[--]`` (fine but worth knowing, e.g. no CUDA) or ``[FAIL]`` with what to
do; the exit status is 1 when anything failed, so scripts and the add-on can rely on it.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import tempfile
from typing import Any

import torch

from backend import __version__, salient_mask
from backend.devices import describe_device, resolve_device
from backend.methods import METHOD_MODULES
from backend.protocol import PROTOCOL_VERSION, UserError
from backend.published_terms import term_status
from backend.weights import Registry


def _checks(registry: Registry) -> list[tuple[str, str]]:
    """(status, text) pairs; status is ``ok``, ``--`` or ``FAIL``."""
    lines = [
        ("ok", f"backend {__version__}, protocol {PROTOCOL_VERSION}"),
        (
            "ok" if sys.version_info[:2] == (3, 11) else "--",
            f"python {platform.python_version()} ({sys.executable})",
        ),
        ("ok", f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s), OMP_NUM_THREADS="
         f"{os.environ.get('OMP_NUM_THREADS', 'unset')}"),
    ]  # fmt: skip
    device = describe_device(resolve_device("auto"))
    if device["cuda_name"]:
        lines.append(
            ("ok", f"CUDA {torch.version.cuda}: {device['cuda_name']}, {device['cuda_memory_gb']} GB")
        )
    else:
        cuda = "CPU-only torch build" if torch.version.cuda is None else "no usable GPU/driver"
        lines.append(("--", f"CUDA not available ({cuda}); jobs run on the CPU"))
    lines.append(("ok", f"device auto -> {device['device']}"))
    for name, module in sorted(METHOD_MODULES.items()):
        try:
            importlib.import_module(module).METHOD  # noqa: B018 - importing is the check
            lines.append(("ok", f"method {name}"))
        except Exception as exc:
            lines.append(("FAIL", f"method {name} cannot be loaded: {type(exc).__name__}: {exc}"))
    try:
        entries = registry.entries()
    except UserError as exc:
        entries = []
        lines.append(("FAIL", f"{exc.message} ({exc.hint})"))
    for entry in entries:
        try:
            registry.verify(entry)
            lines.append(
                ("ok", f"weights {entry.id} ({entry.method}, {entry.category}, {entry.origin}) verified")
            )
        except UserError as exc:
            lines.append(("FAIL", f"weights {entry.id}: {exc.message} ({exc.hint})"))
    methods_with_weights = {e.method for e in entries}
    lines += [("--", f"no weights for {m}") for m in sorted(set(METHOD_MODULES) - methods_with_weights)]
    lines += _published_terms(entries)
    lines.append(_user_dir_check(registry))
    lines.append(_salient_check())
    return lines


def _published_terms(entries: list[Any]) -> list[tuple[str, str]]:
    """Which published loss terms will run, and how to switch on the ones that will not."""
    return [
        ("ok", f"{t['method']} {t['term']} ({t['detail']}): on")
        if t["on"]
        else ("--", f"{t['method']} {t['term']} ({t['detail']}): off (import it: `{t['import_command']}`)")
        for t in term_status(entries)
    ]


def _salient_check() -> tuple[str, str]:
    """Not a failure when missing: ``--mask auto`` then falls back to GrabCut (and says so)."""
    try:
        return "ok", f"salient-object mask net: {salient_mask.describe()}"
    except salient_mask.SalientUnavailable as exc:
        return "--", f"salient-object mask net unavailable ({exc}): --mask auto uses GrabCut instead"


def _user_dir_check(registry: Registry) -> tuple[str, str]:
    try:
        registry.user_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=registry.user_dir, prefix=".doctor-"):
            pass
    except OSError as exc:
        return "FAIL", f"user weights folder {registry.user_dir} is not writable: {exc.strerror}"
    return "ok", f"user weights folder {registry.user_dir} is writable"


def run_doctor(registry: Registry) -> int:
    lines = _checks(registry)
    for status, text in lines:
        print(f"[{status}] {text}")
    return 1 if any(status == "FAIL" for status, _ in lines) else 0
