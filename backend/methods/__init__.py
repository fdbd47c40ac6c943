"""The reconstruction methods by name: name -> module exposing ``METHOD`` (a ``Method`` subclass).

Modules are imported lazily so listing methods costs nothing and a broken optional method
cannot stop the others from loading. A new method is one module plus one line here.
"""

from __future__ import annotations

import importlib

from backend.methods.base import Method

METHOD_MODULES: dict[str, str] = {
    "meshinversion": "backend.methods.meshinversion",
    "gan2shape": "backend.methods.gan2shape",
}


def method_class(name: str) -> type[Method]:
    """The ``Method`` subclass registered under ``name``; ``KeyError`` names the known ones."""
    if name not in METHOD_MODULES:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(METHOD_MODULES))}")
    return importlib.import_module(METHOD_MODULES[name]).METHOD
