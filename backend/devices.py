"""Choosing the torch device and CPU threads for a job, and describing them for the handshake and doctor."""

from __future__ import annotations

import os
from typing import Any

import torch

from backend.protocol import UserError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without CUDA is an error, not a CPU fallback."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only torch build" if torch.version.cuda is None else "no usable NVIDIA GPU/driver"
            raise UserError(
                "no_cuda",
                f"CUDA was requested but is not available ({build})",
                "use --device cpu or auto, or install the CUDA build of torch (see README)",
            )
        return torch.device("cuda")
    raise UserError("bad_device", f"unknown device {name!r}", "use auto, cpu or cuda")


def configure_threads() -> int:
    """CPU threads for the backend: ``RFI_THREADS`` if set, torch's own choice if ``OMP_NUM_THREADS``
    is set, else one fewer than torch's default (its physical cores).

    The backend shares the machine with Blender's UI and whatever else the artist runs. A torch
    thread pool as wide as the cores stalls at every parallel region when one core is taken: on
    this project's 2-core CI machine a MeshInversion ``fast`` job took 383 s with 2 threads beside
    one busy process and 16 s with 1 thread. Leaving one core free costs a little on an idle
    machine and avoids that collapse; returns the count in use.
    """
    explicit = os.environ.get("RFI_THREADS", "").strip()
    if explicit:
        if not explicit.isdigit() or int(explicit) < 1:
            raise UserError("bad_threads", f"RFI_THREADS must be a positive integer, got {explicit!r}",
                              "unset it to let the backend choose")
        torch.set_num_threads(int(explicit))
    elif not os.environ.get("OMP_NUM_THREADS", "").strip():
        torch.set_num_threads(max(1, torch.get_num_threads() - 1))
    return torch.get_num_threads()


def describe_device(device: torch.device) -> dict[str, Any]:
    """What the handshake and ``doctor`` report: device, CUDA name and memory, CPU threads."""
    info: dict[str, Any] = {
        "device": device.type,
        "cuda_available": torch.cuda.is_available(),
        "cuda_name": None,
        "cuda_memory_gb": None,
        "threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["cuda_name"] = props.name
        info["cuda_memory_gb"] = round(props.total_memory / 2**30, 2)
    return info


OUT_OF_MEMORY_PHRASES = ("out of memory", "can't allocate memory", "not enough memory")
"""How torch words allocation failures: CUDA ("out of memory") and the CPU allocator (the others)."""


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA (or CPU allocator) out-of-memory, whichever exception class torch used."""
    if isinstance(exc, torch.cuda.OutOfMemoryError | MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(phrase in text for phrase in OUT_OF_MEMORY_PHRASES)


def release_memory(device: torch.device) -> None:
    """Give cached CUDA blocks back after a failed job so the next one starts clean."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
