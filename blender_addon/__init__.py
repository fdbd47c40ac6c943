"""Reconstruct from Image: one photo of an object -> a textured, editable mesh.

The add-on is the Blender side only (bpy, the standard library and Blender's numpy); the
reconstruction runs in a separate PyTorch backend process (see ``client.py``). Blender-facing
modules are imported in ``register`` so that the bpy-free ones (``client``, ``backend_env``) can
be imported and tested without Blender.
"""

from __future__ import annotations

from typing import Any


def reconstruct(image: Any, **options: Any) -> Any:
    """Blocking Python API: see ``api.reconstruct``; returns the new object."""
    from . import api

    return api.reconstruct(image, **options)


def _modules() -> list[Any]:
    from . import history, operators, panels, preferences, properties, session

    return [session, history, properties, operators, preferences, panels]


def register() -> None:
    for module in _modules():
        module.register()


def unregister() -> None:
    for module in reversed(_modules()):
        module.unregister()
