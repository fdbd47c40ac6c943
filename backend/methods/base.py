"""What every reconstruction method provides, and what it gets.

A method is one package under ``backend/methods/`` with a ``Method`` subclass and an ``options``
module (its typed ``Options`` and presets), registered by name in ``backend/methods/__init__.py``.
The server, CLI, batch tools and benchmarks only talk
to this interface, so adding a method touches nothing else.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from backend.polygons import Polygons


@dataclass(frozen=True)
class AuxiliaryWeights:
    """Weights a method uses besides its model (VGG features for a loss, pretrained nets, priors, a
    mask network), taken from the weights store the job was given.

    Two callables instead of the store itself: a method sees only the manifest entries registered
    under its own name, never writes or imports, and needs no import of the store (which in turn
    knows no method). Both are lazy: ``entries()`` lists the manifests when called and ``read(entry)``
    (a verified state dict on the CPU) opens a file only when a preset needs it.
    """

    entries: Callable[[], list[Any]]
    read: Callable[[Any], dict[str, Any]]


class JobCancelled(Exception):
    """Raised from the progress callback when the client asked to cancel."""


Converted = tuple[dict[str, Any], dict[str, Any]]
"""What ``Method.convert_official`` returns: (state dict, architecture config) for the weights store."""

Progress = Callable[..., None]
"""``progress(stage, step, total, loss=None, preview=None)``; raises ``JobCancelled`` on cancel.
Methods call it between optimisation steps, so cancel latency is one step."""


@dataclass
class MeshResult:
    """A reconstructed, textured mesh in Blender's frame.

    Frame: Z up, the object's front towards -Y; placed by ``backend/categories.py`` (metres, origin at
    the bottom centre on Z = 0, or a unit box).
    ``uvs`` are per face corner (F, 3, 2) with v pointing up (Blender/OpenGL); ``texture`` is
    (H, W, 3) uint8 sRGB with row 0 at the top (v = 1). ``camera`` follows the schema in
    ``backend/results.py``; ``info`` holds losses, metrics and notes for ``result.json``.
    """

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    texture: np.ndarray
    camera: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)
    previews: dict[str, np.ndarray] = field(default_factory=dict)
    polygons: Polygons | None = None
    """The same surface as quads and triangles (the ``quads`` option), or None."""


class Method(ABC):
    """A loaded model that turns one prepared image into a ``MeshResult``."""

    name: ClassVar[str]

    @classmethod
    def is_model_entry(cls, entry: Any) -> bool:
        """False for auxiliary weights registered under this method that cannot reconstruct on
        their own (e.g. VGG features for a loss); a job's default weights are the first entry for
        which this is True. Methods with auxiliary entries override it."""
        return True

    @classmethod
    @abstractmethod
    def convert_official(cls, checkpoint: dict[str, Any], category: str) -> Converted:
        """An official checkpoint (the dict ``torch.load`` gave) -> (state dict, config) for the weights
        store; ``KeyError``, ``ValueError`` or ``TypeError`` (one line) when the file is not one for
        ``category``. The import then builds the model with ``load``, so a wrong file fails there, once."""

    @classmethod
    @abstractmethod
    def load(
        cls, entry: Any, state_dict: dict[str, Any], device: Any, auxiliary: AuxiliaryWeights
    ) -> Method:
        """Build the model from ``entry.config`` (a ``backend.weights.WeightsEntry``) on ``device``
        and load ``state_dict`` strictly, so a file that does not fit fails before any job runs.
        ``auxiliary``: the store's other entries of this method, read when a job needs them."""

    @abstractmethod
    def run(self, image: Any, options: Any, seed: int, progress: Progress) -> MeshResult:
        """Reconstruct ``image`` (a ``backend.inputs.InputImage``) with ``options``, the method's typed
        ``Options`` (``backend.methods.options_class``), already parsed and checked by the job."""
