"""Normals from geometry and GAN2Shape's shading model, a + b * max(0, n . l).

Normals point outward for faces wound counter-clockwise seen from outside. Use them in the frame
the light direction is given in (``render_mesh`` uses the camera's view frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.render.gather import face_corners


def face_normals(vertices: Tensor, faces: Tensor, unit: bool = True) -> Tensor:
    """(B, F, 3) normals of (B, V, 3) ``vertices``; ``unit=False`` keeps length = twice the area."""
    corners = face_corners(vertices, faces.long())
    normals = torch.linalg.cross(corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0])
    return F.normalize(normals, dim=-1, eps=1e-12) if unit else normals


def vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """(B, V, 3) unit normals: area-weighted mean of the adjacent face normals."""
    faces = faces.long()
    weighted = face_normals(vertices, faces, unit=False)
    return _normalised_corner_sum(vertices, faces, [weighted] * 3)


def angle_weighted_vertex_normals(vertices: Tensor, faces: Tensor) -> Tensor:
    """(B, V, 3) unit normals: the adjacent faces' unit normals weighted by their corner angle at the
    vertex, which is how Blender smooth-shades a mesh (on a grid of split quads the area weighting
    of ``vertex_normals`` counts the right-angled corners' faces the same as the others)."""
    faces = faces.long()
    corners = face_corners(vertices, faces)
    unit = face_normals(vertices, faces)
    per_corner = []
    for corner in range(3):  # three corners, not a loop over faces
        to_next = corners[:, :, (corner + 1) % 3] - corners[:, :, corner]
        to_prev = corners[:, :, (corner + 2) % 3] - corners[:, :, corner]
        sine = torch.linalg.cross(to_next, to_prev).norm(dim=-1)
        per_corner.append(unit * torch.atan2(sine, (to_next * to_prev).sum(dim=-1))[..., None])
    return _normalised_corner_sum(vertices, faces, per_corner)


def _normalised_corner_sum(vertices: Tensor, faces: Tensor, per_corner: list[Tensor]) -> Tensor:
    """(B, V, 3) the unit direction of each vertex's sum of ``per_corner[k]`` (B, F, 3) over the faces
    whose corner k it is."""
    summed = torch.zeros_like(vertices)
    for corner, values in enumerate(per_corner):
        summed = summed.index_add(1, faces[:, corner], values)
    return F.normalize(summed, dim=-1, eps=1e-12)


@dataclass
class DirectionalLight:
    """Ambient + Lambertian light: shading = ambient + diffuse * max(0, n . direction).

    ``direction`` (B, 3) points from the surface towards the light, in the frame of the normals
    (for ``render_mesh``: the view frame, x right, y down, z forward, so (0, 0, -1) is a headlight);
    ``ambient`` and ``diffuse`` are (B,) tensors or floats.

    GAN2Shape computes n . d with depth-map normals that point away from the camera and
    d = normalize(l2, l3, 1); with our outward normals use ``direction = -d``.
    """

    direction: Tensor
    ambient: Tensor | float = 0.0
    diffuse: Tensor | float = 1.0


def lambertian_shading(normals: Tensor, light: DirectionalLight) -> Tensor:
    """(B, H, W, 1) shading of a (B, H, W, 3) normal image under ``light``."""
    direction, ambient, diffuse = _light_terms(light, normals)
    return _lambert(normals, direction[:, None, None], ambient[:, None, None], diffuse[:, None, None])


def lambertian_shading_points(normals: Tensor, light: DirectionalLight, batch_index: Tensor) -> Tensor:
    """(P, 1) shading of (P, 3) normals at covered pixels of batch items ``batch_index`` (P,)."""
    direction, ambient, diffuse = _light_terms(light, normals)
    if direction.shape[0] > 1:
        direction = direction.index_select(0, batch_index)
    if ambient.shape[0] > 1:
        ambient = ambient.index_select(0, batch_index)
    if diffuse.shape[0] > 1:
        diffuse = diffuse.index_select(0, batch_index)
    return _lambert(normals, direction, ambient, diffuse)


def _light_terms(light: DirectionalLight, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Unit direction (B, 3), ambient (B, 1) and diffuse (B, 1) (B may be 1) as tensors."""
    direction = F.normalize(light.direction.to(like.dtype), dim=-1)
    ambient = torch.as_tensor(light.ambient, dtype=like.dtype, device=like.device).reshape(-1, 1)
    diffuse = torch.as_tensor(light.diffuse, dtype=like.dtype, device=like.device).reshape(-1, 1)
    return direction, ambient, diffuse


def _lambert(normals: Tensor, direction: Tensor, ambient: Tensor, diffuse: Tensor) -> Tensor:
    cosine = (normals * direction).sum(dim=-1, keepdim=True).clamp(min=0.0)
    return ambient + diffuse * cosine
