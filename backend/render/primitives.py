"""Meshes the renderer is tested and benchmarked on, and that callers can start from.

``uv_sphere(32, 16)`` has the size of MeshInversion's template (482 vertices, 960 faces, poles
on +-y; here u = 0 at +z); ``grid_faces`` triangulates a depth map the way GAN2Shape does;
``sample_surface`` draws points uniformly over any mesh's area.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def uv_sphere(segments: int, rings: int, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor, Tensor]:
    """Unit sphere, welded, wound counter-clockwise seen from outside.

    Returns vertices (2 + (rings - 1) * segments, 3), faces (2 * segments * (rings - 1), 3) and
    per-corner uvs (F, 3, 2) with v = 1 at the north pole (+y) and a seam at u = 0 = 1, where
    the seam faces use u = 1 so the texture does not wrap backwards across them.
    """
    polar = torch.arange(1, rings, dtype=torch.float32, device=device) * (math.pi / rings)
    azimuth = torch.arange(segments, dtype=torch.float32, device=device) * (2 * math.pi / segments)
    sin_p, cos_p = polar.sin()[:, None], polar.cos()[:, None]
    ring_points = torch.stack(
        (sin_p * azimuth.sin(), cos_p.expand(-1, segments), sin_p * azimuth.cos()), dim=-1
    ).reshape(-1, 3)
    poles = torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]], device=device)
    vertices = torch.cat((poles[:1], ring_points, poles[1:]), dim=0)
    south = vertices.shape[0] - 1

    ring = torch.arange(rings - 1, device=device)[:, None]
    column = torch.arange(segments, device=device)[None, :]
    next_column = (column + 1) % segments

    def vid(r: Tensor, c: Tensor) -> Tensor:
        return 1 + r * segments + c

    def uv(r: Tensor, c: Tensor) -> Tensor:
        return torch.stack((c / segments, 1 - (r + 1) / rings), dim=-1).float()

    top_ring, top_col = ring[:-1].expand(-1, segments), column.expand(rings - 2, -1)
    bottom_ring = top_ring + 1
    quads_a = torch.stack(
        (vid(top_ring, top_col), vid(bottom_ring, top_col), vid(bottom_ring, next_column.expand_as(top_col))),
        -1,
    )
    quads_b = torch.stack(
        (
            vid(top_ring, top_col),
            vid(bottom_ring, next_column.expand_as(top_col)),
            vid(top_ring, next_column),
        ),
        -1,
    )
    uv_a = torch.stack((uv(top_ring, top_col), uv(bottom_ring, top_col), uv(bottom_ring, top_col + 1)), -2)
    uv_b = torch.stack((uv(top_ring, top_col), uv(bottom_ring, top_col + 1), uv(top_ring, top_col + 1)), -2)

    cols = column[0]
    pole_u = (cols + 0.5) / segments
    north_faces = torch.stack((torch.zeros_like(cols), vid(0, cols), vid(0, next_column[0])), -1)
    last = rings - 2
    south_faces = torch.stack((vid(last, cols), torch.full_like(cols, south), vid(last, next_column[0])), -1)
    north_uv = torch.stack(
        (
            torch.stack((pole_u, torch.ones_like(pole_u)), -1),
            uv(torch.zeros_like(cols), cols),
            uv(torch.zeros_like(cols), cols + 1),
        ),
        -2,
    )
    south_uv = torch.stack(
        (
            uv(torch.full_like(cols, last), cols),
            torch.stack((pole_u, torch.zeros_like(pole_u)), -1),
            uv(torch.full_like(cols, last), cols + 1),
        ),
        -2,
    )
    faces = torch.cat((north_faces, quads_a.reshape(-1, 3), quads_b.reshape(-1, 3), south_faces), dim=0)
    uvs = torch.cat((north_uv, uv_a.reshape(-1, 3, 2), uv_b.reshape(-1, 3, 2), south_uv), dim=0)
    return vertices, faces, uvs


def grid_faces(height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
    """(2 (H-1)(W-1), 3) triangles over a row-major H x W vertex grid, two per quad:
    (i, j), (i+1, j), (i, j+1) and (i, j+1), (i+1, j), (i+1, j+1) (GAN2Shape's order). With rows
    running down the image they are counter-clockwise on screen, i.e. front-facing."""
    index = torch.arange(height * width, device=device).reshape(height, width)
    top_left, top_right = index[:-1, :-1], index[:-1, 1:]
    bottom_left, bottom_right = index[1:, :-1], index[1:, 1:]
    first = torch.stack((top_left, bottom_left, top_right), dim=-1).reshape(-1, 3)
    second = torch.stack((top_right, bottom_left, bottom_right), dim=-1).reshape(-1, 3)
    return torch.cat((first, second), dim=0)


def sample_surface(
    vertices: torch.Tensor, faces: torch.Tensor, count: int, generator: torch.Generator
) -> torch.Tensor:
    """(count, 3) points uniform on a triangle mesh: faces drawn by area, then uniform barycentrics.

    ``generator`` must live on the vertices' device; a fixed seed makes Chamfer numbers repeatable.
    """
    corners = vertices[faces.long()]
    edges_cross = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=-1)
    face = torch.multinomial(edges_cross.norm(dim=-1), count, replacement=True, generator=generator)
    r1 = torch.rand(count, 1, generator=generator, device=vertices.device).sqrt()
    r2 = torch.rand(count, 1, generator=generator, device=vertices.device)
    a, b, c = corners[face].unbind(1)
    return (1 - r1) * a + r1 * (1 - r2) * b + r1 * r2 * c
