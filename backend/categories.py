"""Real-world size per category, and the similarity that places a result in Blender at that size.

Results are in metres at the category's typical size with the origin at their bottom centre,
resting on the ground plane Z = 0 (``scale = "metres"``, the default), or centred on their
bounding box with largest extent 1 (``scale = "unit"``, the output before sizes existed). Each
weights entry's category picks its size from ``CATEGORY_SIZE_M``; the job option ``size_m``
overrides it. Every method applies the same ``Placement`` to its vertices and its camera, so the
aligned camera keeps overlaying the photo at any scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.options import SCALE_MODES, check_size_m

CATEGORY_SIZE_M: dict[str, float] = {
    "car": 4.5, "bird": 0.2, "face": 0.25, "synface": 0.25, "cat": 0.45, "church": 20.0,
}  # fmt: skip
"""Typical size in metres: the length (front to back) of objects with a front axis, the largest
extent of reliefs. Imported official checkpoints and demo weights look their category up here."""
DATASET_NAMES: dict[str, str] = {
    "cub": "bird", "cub200": "bird", "birds": "bird", "cars": "car", "p3d": "car", "p3d_car": "car",
    "pascal3d": "car", "pascal3d_car": "car", "lsun_car": "car", "celeba": "face", "faces": "face",
    "cats": "cat", "lsun_cat": "cat", "churches": "church", "lsun_church": "church",
}  # fmt: skip
"""Dataset and plural names a checkpoint may be imported under, and the category each one is."""
FALLBACK_SIZE_M = 1.0
"""Size of a category missing from the table (a user-trained one) unless ``size_m`` says."""
LENGTH_AXIS = 1
"""Blender Y, the front axis (the front faces -Y): its extent is an object's length."""


@dataclass(frozen=True)
class Placement:
    """Blender vertices = ``scale`` * (points - ``centre``), points already in Blender's axes."""

    centre: np.ndarray
    scale: float
    extent: float
    """Largest extent of the placed mesh (cameras stand off in proportion to it)."""


@dataclass(frozen=True)
class ScaleRule:
    """How a method sizes its mesh: ``axis`` is the Blender axis measured (None: the largest extent)."""

    mode: str = "unit"
    size_m: float = 1.0
    axis: int | None = None
    source: str = "unit box"
    """Where ``size_m`` came from: the ``size_m`` option, the category table, or the fallback."""

    def place(self, points: np.ndarray) -> Placement:
        """The similarity for (V, 3) Blender-axis ``points``; vectorised, no copy of the points."""
        low, high = points.min(axis=0), points.max(axis=0)
        extent = high - low
        if self.mode == "unit":
            scale = 1.0 / max(float(extent.max()), 1e-8)
            return Placement((low + high) / 2, scale, float(extent.max()) * scale)
        measured = float(extent.max() if self.axis is None else extent[self.axis])
        scale = self.size_m / max(measured, 1e-8)
        centre = np.array([(low[0] + high[0]) / 2, (low[1] + high[1]) / 2, low[2]])
        return Placement(centre, scale, float(extent.max()) * scale)

    def describe(self, category: str) -> dict[str, Any]:
        """What ``result.json`` records about the placement."""
        if self.mode == "unit":
            return {"scale": "unit", "category": category, "size_m": None,
                    "measured": "largest extent = 1", "origin": "bounding-box centre"}  # fmt: skip
        measured = "length (extent along Y, the front axis)" if self.axis == LENGTH_AXIS else "largest extent"
        return {"scale": "metres", "category": category, "size_m": self.size_m, "size_source": self.source,
                "measured": measured, "origin": "bottom centre, resting on Z = 0"}  # fmt: skip


def canonical_category(name: str) -> str:
    """The category a weights entry records for ``name``: lower case, dataset names resolved (``cub``
    is a bird, ``p3d`` a car), so the size table and the methods' per-category settings find it.
    Other names (``vgg19``, a user's own category) stay as they are, lower-cased."""
    key = name.strip().lower()
    return DATASET_NAMES.get(key, key)


def check_scale_options(options: dict[str, Any]) -> None:
    """Raise ``ValueError`` (one line) for a bad ``scale`` or ``size_m`` before any work starts."""
    mode = options.get("scale", "metres")
    if mode not in SCALE_MODES:
        raise ValueError(f"scale must be one of {', '.join(SCALE_MODES)}, got {mode!r}")
    check_size_m(options.get("size_m"))


def scale_rule(options: dict[str, Any], category: str, axis: int | None) -> ScaleRule:
    """The rule of a job: its ``scale`` mode, at ``size_m`` or the category's typical size."""
    check_scale_options(options)
    if options.get("size_m") is not None:
        size, source = options["size_m"], "size_m option"
    elif category in CATEGORY_SIZE_M:
        size, source = CATEGORY_SIZE_M[category], f"typical {category} size"
    else:
        size, source = FALLBACK_SIZE_M, f"no typical size for {category!r}: {FALLBACK_SIZE_M} m (set size_m)"
    return ScaleRule(options.get("scale", "metres"), float(size), axis, source)


UNIT_BOX = ScaleRule()
"""Centred, largest extent 1: the placement before sizes existed."""
