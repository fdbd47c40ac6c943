"""The one parser of method options: a preset name plus overrides -> the method's typed ``Options``.

Each method declares its options once, as a frozen dataclass whose fields carry the type, the
``paper`` value as default, and metadata made by ``option`` (allowed choices, a range, a one-line
doc); its ``PRESETS`` class attribute holds the values each preset changes. Standard library only:
the Blender add-on reads the same declarations to offer methods, presets and option names.

Overrides arrive as strings (``--set``, the panel) or JSON values; each is typed by its preset's
value, so a typo never silently runs the default and an absurd count never runs for days.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
from typing import Any, TypeVar

from .protocol import JobRequest, UserError

ABSURD_FACTOR = 100
ABSURD_FLOOR = 10
"""An integer override may be up to ``ABSURD_FACTOR`` times the largest preset value of that option
(or of ``ABSURD_FLOOR`` when the presets use less): more than that is a typo, not a schedule."""
SET_HINT = "fix the --set value"
CHECK_HINT = "fix the --set value (see the README's options)"
SCALE_MODES = ("metres", "unit")
"""Placement of a result, an option of every method (``backend/categories.py`` applies it)."""
FACES_RANGE = (1_000, 200_000)
"""Triangles a user may ask of an exported mesh (``faces``, an option of every method)."""
TURN_OPTION = "turn_start"
"""The boolean option of a method whose start can be turned to its front/back twin (MeshInversion's);
front ends offer it where a method declares it, to reconstruct a result that faces the wrong way."""
QUADS_DOC = (
    "also export the mesh's quads (and the triangles it cannot pair) as polygons; the triangles stay, "
    "faces still counts triangles (about half as many polygons)"
)
"""What ``quads``, an option of every method, does (each method's ``options.py`` declares it)."""

JOB_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(JobRequest) if f.default is not dataclasses.MISSING
}
"""A job's defaults (``method``, ``preset``, ``device``, ``seed``, ``mask``...), owned by ``JobRequest``."""

OptionsT = TypeVar("OptionsT")


def option(
    default: Any,
    doc: str,
    *,
    choices: tuple[str, ...] | None = None,
    low: float | None = None,
    high: float | None = None,
) -> Any:
    """A dataclass field with its one-line ``doc`` and, checked by ``check_fields``, the allowed
    ``choices`` or the inclusive range ``low``..``high`` (``None`` stays allowed where the default is)."""
    metadata = {"doc": doc, "choices": choices, "low": low, "high": high}
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def check_fields(options: Any) -> None:
    """Raise ``ValueError`` (one line) for a value outside its field's choices or range."""
    for f in dataclasses.fields(options):
        value, meta = getattr(options, f.name), f.metadata
        if value is None:  # allowed only where a preset says None; the parser refuses it elsewhere
            continue
        if meta.get("choices") and value not in meta["choices"]:
            raise ValueError(f"{f.name} must be one of {', '.join(meta['choices'])}, got {_shown(value)}")
        low, high = meta.get("low"), meta.get("high")
        if low is None and high is None:
            continue
        kind = int if str(f.type).startswith("int") else int | float
        number = isinstance(value, kind) and not isinstance(value, bool) and _finite(value)
        if not number or (low is not None and value < low) or (high is not None and value > high):
            span = f"within {low}..{high}" if high is not None else f">= {low}"
            noun = "an integer" if kind is int else "a number"
            raise ValueError(f"{f.name} must be {noun} {span}, got {_shown(value)}")


def check_size_m(size: Any) -> None:
    """``size_m``: a positive number of metres, or ``None`` for the category's typical size."""
    number = isinstance(size, int | float) and not isinstance(size, bool)
    if size is not None and not (number and _finite(size) and size > 0):
        raise ValueError(f"size_m must be a positive number of metres (or null), got {size!r}")


def preset_values(cls: type[Any]) -> dict[str, dict[str, Any]]:
    """Every preset of an ``Options`` class as a full ``{option: value}`` dict, in field order."""
    defaults = {f.name: getattr(cls(), f.name) for f in dataclasses.fields(cls)}
    return {name: {**defaults, **copy.deepcopy(changes)} for name, changes in cls.PRESETS.items()}


def option_names(cls: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def describe_options(cls: type[Any]) -> list[dict[str, Any]]:
    """Per option: name, type, each preset's value, doc, choices and range (``python -m backend options``)."""
    presets = preset_values(cls)
    return [
        {
            "name": f.name,
            "type": str(f.type),
            "presets": {name: values[f.name] for name, values in presets.items()},
            **{key: value for key, value in f.metadata.items() if value is not None},
        }
        for f in dataclasses.fields(cls)
    ]


def parse_options(cls: type[OptionsT], preset: str, overrides: dict[str, Any]) -> OptionsT:
    """``cls`` at ``preset`` with ``overrides`` applied and checked; every failure is a ``UserError``
    (``bad_preset``, ``bad_option``) with a one-line message."""
    values = resolve_options(preset_values(cls), preset, overrides)
    try:
        return cls(**values)
    except ValueError as exc:
        raise UserError("bad_option", str(exc).splitlines()[0], CHECK_HINT) from None


def preset_options(cls: type[OptionsT], preset: str, **changes: Any) -> OptionsT:
    """``cls`` at ``preset`` with ``changes`` from code (tests, benchmarks): already typed, so only
    checked, not coerced like a user's overrides."""
    return dataclasses.replace(parse_options(cls, preset, {}), **changes)


def as_dict(options: Any) -> dict[str, Any]:
    """The option values by name, as ``result.json`` records them."""
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


def _shown(value: Any, limit: int = 60) -> str:
    """A value as it goes into a one-line message, cut short (a pasted 400-digit number stays readable)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _finite(value: int | float) -> bool:
    """``math.isfinite`` that also says no to JSON integers too large for a float (10**400)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _coerce(key: str, value: Any, default: Any, nullable: bool = False) -> Any:
    """Make an override the type of the preset's value (CLI values arrive as strings, JSON text).

    A ``None`` default takes any JSON value (the method validates it); a list/tuple default takes
    a list of the same length element by element, or of any non-zero length when its elements
    share one type and it is a list or a sequence of sequences (e.g. elevations, a schedule of
    stages). A flat tuple of scalars is a fixed-size record (e.g. three stage lengths), so its
    length is kept. ``nullable``: ``None`` stays allowed (the preset itself says ``None``).
    """
    if isinstance(value, str) and not isinstance(default, str):
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(value)
    if default is None or (value is None and nullable):
        return value
    bad = UserError(
        "bad_option",
        f"option {key}={_shown(value)} must be a {type(default).__name__} like {default!r}",
        SET_HINT,
    )
    number = isinstance(value, int | float) and not isinstance(value, bool) and _finite(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad
    elif isinstance(default, int):
        if not number or value != int(value):
            raise bad
        value = int(value)
    elif isinstance(default, float):
        if not number:
            raise bad
        value = float(value)
    elif isinstance(default, list | tuple):
        if not isinstance(value, list | tuple):
            raise bad
        if len(value) == len(default):
            return type(default)(_coerce(key, v, d) for v, d in zip(value, default, strict=True))
        record = isinstance(default, tuple) and not any(isinstance(d, list | tuple) for d in default)
        if not value or not default or record or len({type(d) for d in default}) != 1:
            raise bad
        return type(default)(_coerce(key, v, default[0]) for v in value)
    elif not isinstance(value, type(default)):
        raise bad
    return value


def resolve_options(
    presets: dict[str, dict[str, Any]], preset: str, overrides: dict[str, Any]
) -> dict[str, Any]:
    """``presets[preset]`` with ``overrides`` applied; unknown keys and bad values are errors, so a
    typo never silently runs the default."""
    if preset not in presets:
        raise UserError("bad_preset", f"unknown preset {preset!r}", f"use one of {', '.join(presets)}")
    options = dict(presets[preset])
    unknown = sorted(set(overrides) - set(options))
    if unknown:
        raise UserError(
            "bad_option",
            f"unknown option(s): {', '.join(unknown)}",
            f"known options: {', '.join(sorted(options))}",
        )
    for key, value in overrides.items():
        typed = _typed_default(key, options[key], presets)
        options[key] = _coerce(key, value, typed, nullable=options[key] is None)
        _check_count_range(key, options[key], presets)
    return options


def _typed_default(key: str, default: Any, presets: dict[str, dict[str, Any]]) -> Any:
    """The value an override is typed by: the chosen preset's, or where that is ``None`` (e.g. "the
    category's published value") another preset's concrete value of the same option."""
    if default is not None:
        return default
    return next((p[key] for p in presets.values() if p.get(key) is not None), None)


def _int_leaves(value: Any) -> list[int]:
    """Every integer in a (nested) option value; booleans are switches, not counts."""
    if isinstance(value, list | tuple):
        return [leaf for item in value for leaf in _int_leaves(item)]
    return [value] if isinstance(value, int) and not isinstance(value, bool) else []


def _check_count_range(key: str, value: Any, presets: dict[str, dict[str, Any]]) -> None:
    """Integer options (steps, points, candidates, sizes) stay within what the presets make plausible.

    Methods loop ``range(n)`` over them, so a negative count would silently skip work (a result that
    was never optimised) and a typo like 10**9 would run for days; both are refused up front.
    """
    reference = [leaf for options in presets.values() for leaf in _int_leaves(options.get(key))]
    given = _int_leaves(value)
    if not reference or not given:
        return
    if min(reference) >= 0 and min(given) < 0:
        raise UserError("bad_option", f"option {key}={_shown(value)} must not be negative", "counts are >= 0")
    limit = ABSURD_FACTOR * max(*reference, ABSURD_FLOOR)
    if max(given) > limit:
        raise UserError(
            "bad_option",
            f"option {key}={_shown(value)} is implausibly large (above {limit})",
            f"the presets use at most {max(reference)}; check for a typo",
        )
