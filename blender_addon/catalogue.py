"""The backend's methods, presets, job defaults and option names, as every add-on front end offers them.

Read from the backend's own declarations (``backend.methods``, each method's ``options`` module,
``backend.protocol.JobRequest``), which are standard library only, so the panel, the Python API
and the batch script never repeat a method name, a preset or a default.
"""

from __future__ import annotations

from typing import Any

try:
    from .backend import methods, options, protocol
except ImportError:  # source tree: backend/ is the sibling of blender_addon/ (tests put it on sys.path)
    from backend import methods, options, protocol  # type: ignore[no-redef]

METHODS: tuple[str, ...] = tuple(methods.METHOD_MODULES)
PRESETS: tuple[str, ...] = protocol.PRESETS
MASK_SOURCES: tuple[str, ...] = protocol.MASK_SOURCES
DEVICES: tuple[str, ...] = protocol.DEVICES
JOB_DEFAULTS: dict[str, Any] = options.JOB_DEFAULTS
"""``method``, ``preset``, ``device``, ``seed``, ``mask``...: the defaults of a job request."""
FACES_RANGE: tuple[int, int] = options.FACES_RANGE
"""Triangles a user may ask of the exported mesh (the ``faces`` option of every method)."""
SCALE_MODES: tuple[str, ...] = options.SCALE_MODES
"""How every method places its mesh (the ``scale`` option): metres at the category's size, or a unit box."""


def with_mesh_options(
    overrides: dict[str, Any],
    faces: int | None = None,
    scale: str | None = None,
    size_m: float | None = None,
    quads: bool = False,
) -> dict[str, Any]:
    """``overrides`` plus the mesh options every method declares, each only when asked for: ``faces``
    (None or 0: the method's mesh), ``quads`` (False: the method's default, triangles only), ``scale``
    (None: the method's default) and ``size_m`` (None or 0: the category's typical size)."""
    chosen = {
        "faces": int(faces) if faces else None,
        "quads": True if quads else None,
        "scale": scale,
        "size_m": float(size_m) if size_m else None,
    }
    return {**overrides, **{key: value for key, value in chosen.items() if value is not None}}


def option_names(method: str) -> tuple[str, ...]:
    """The options method ``method`` declares (what ``key=value`` overrides may name)."""
    return options.option_names(methods.options_class(method))


def turnable(method: str) -> bool:
    """Whether ``method`` can start from the other side of the object (declares ``TURN_OPTION``)."""
    return options.TURN_OPTION in option_names(method)


def turned(method: str, preset: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` with the start turned to the other side of the one a job of ``method`` at
    ``preset`` with them ran from (read as the backend reads them: typed text such as "false" too)."""
    ran = options.parse_options(methods.options_class(method), preset, overrides)
    return {**overrides, options.TURN_OPTION: not getattr(ran, options.TURN_OPTION)}


def unknown_options(method: str, overrides: dict[str, Any]) -> list[str]:
    """Override names ``method`` does not declare, sorted (empty when all are known)."""
    return sorted(set(overrides) - set(option_names(method)))
