"""Registry of reconstruction methods: name -> module exposing ``METHOD`` (a ``Method`` subclass)
and its ``options`` module (the method's typed ``Options`` with its presets).

Modules are imported lazily so listing methods costs nothing and a broken optional method
cannot stop the others from loading. A new method is one module plus one line here. This module
and every ``options`` module are standard library only: the Blender add-on reads them to offer
methods, presets and option names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backend.methods.base import Method

METHOD_MODULES: dict[str, str] = {
    "meshinversion": "backend.methods.meshinversion",
    "gan2shape": "backend.methods.gan2shape",
}


def method_class(name: str) -> type[Method]:
    """The ``Method`` subclass registered under ``name``; ``KeyError`` names the known ones."""
    _check(name)
    return importlib.import_module(METHOD_MODULES[name]).METHOD


def options_class(name: str) -> type[Any]:
    """The ``Options`` dataclass of method ``name`` (torch-free; relative, so it also loads where the
    add-on bundles ``backend`` as its sub-package)."""
    _check(name)
    return importlib.import_module(f"{__name__}.{name}.options").Options


def _check(name: str) -> None:
    if name not in METHOD_MODULES:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(METHOD_MODULES))}")


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A package's ``__getattr__`` that imports ``exports[name]`` (``"module:attribute"`` inside
    ``package``) on first use, so a method package imports without torch until its model is needed."""

    def attribute(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attr = exports[name].partition(":")
        return getattr(importlib.import_module(f"{package}.{module}"), attr)

    return attribute
