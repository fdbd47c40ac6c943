"""A result's Blender camera (``result.json["camera"]``) as a camera of ``backend.render.cameras``.

The importer (``blender_addon/importer.py::camera_frame``) sets the Blender camera up so that its
optical axis goes through the centre of the square ``crop_box`` and ``ortho_scale`` (ORTHO) or
``angle`` (PERSP) spans that square; the render frame then widens to the whole photo by lens shift.
So the renderer's NDC square here is the crop square: x_ndc = -1 and +1 are its left and right
edges, y_ndc = +1 its top, and a photo crop of ``crop_box`` (``inputs.crop_box``) lines up with it.

Frames: the camera object looks along its local -Z with +Y up; the renderer's view frame has y
down and z forward, so view = D R^T (p - c) with D = diag(1, -1, -1), R the camera's axes and c
its position, both in the mesh's frame (``matrix_world`` is relative to the imported object).
Blender ignores the camera object's scale, so the axes are normalised.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from backend.render.cameras import OrthographicCamera, PerspectiveCamera

VIEW_FROM_CAMERA = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
"""Blender camera local frame (y up, looking along -Z) -> renderer view frame (y down, z forward)."""


def renderer_camera(
    camera: dict[str, Any], device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> OrthographicCamera | PerspectiveCamera:
    """A batch-of-one renderer camera whose NDC square is ``camera["crop_box"]``."""
    matrix = torch.tensor(camera["matrix_world"], dtype=torch.float64)
    axes = torch.nn.functional.normalize(matrix[:3, :3], dim=0)
    rotation = VIEW_FROM_CAMERA @ axes.T
    translation = -rotation @ matrix[:3, 3]
    if camera["type"] == "ORTHO":
        scale = 2.0 / float(camera["ortho_scale"])
        return OrthographicCamera(
            rotation[None].to(device, dtype),
            torch.tensor([scale], device=device, dtype=dtype),
            (scale * translation)[None].to(device, dtype),
        )
    focal = 1.0 / math.tan(float(camera["angle"]) / 2.0)
    return PerspectiveCamera(rotation[None].to(device, dtype), translation[None].to(device, dtype), focal)
