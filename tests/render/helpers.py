"""Shared test material: a brute-force rasteriser to check the fast one against, and random data."""

from __future__ import annotations

import torch
from torch import Tensor

from backend.render.cameras import quaternion_matrix
from backend.render.rasterize import EDGE_TOLERANCE


def brute_force_rasterize(
    screen: Tensor, faces: Tensor, height: int, width: int, perspective: bool, cull: bool
) -> tuple[Tensor, Tensor]:
    """Every pixel against every face in float64, written independently of the fast path:
    barycentrics by solving the 2x2 system per face. Returns (pix_to_face, depth)."""
    screen = screen.double()
    batch = screen.shape[0]
    cols = torch.arange(width, dtype=torch.float64)
    rows = torch.arange(height, dtype=torch.float64)
    ndc_x = (2 * cols + 1 - width) / width
    ndc_y = (height - 2 * rows - 1) / height
    py, px = torch.meshgrid(ndc_y, ndc_x, indexing="ij")  # (H, W) NDC of pixel centres
    tri = screen[:, faces.long()]  # (B, F, 3, 3)
    a, b, c = tri[:, :, 0], tri[:, :, 1], tri[:, :, 2]
    # p = a + s (b - a) + t (c - a)  ->  [b-a, c-a] [s, t]^T = p - a, solved with Cramer's rule.
    e1, e2 = (b - a)[..., :2], (c - a)[..., :2]
    det = e1[..., 0] * e2[..., 1] - e1[..., 1] * e2[..., 0]  # (B, F)
    rel_x = px[None, None] - a[..., 0, None, None]
    rel_y = py[None, None] - a[..., 1, None, None]
    det_ = det[..., None, None]
    s = (rel_x * e2[..., 1, None, None] - rel_y * e2[..., 0, None, None]) / det_
    t = (e1[..., 0, None, None] * rel_y - e1[..., 1, None, None] * rel_x) / det_
    w = torch.stack((1 - s - t, s, t), dim=-1)  # (B, F, H, W, 3)
    inside = (w >= -EDGE_TOLERANCE).all(dim=-1) & (det != 0)[..., None, None]
    if cull:
        inside &= (det > 0)[..., None, None]
    z = tri[..., 2][:, :, None, None, :]
    if perspective:
        inside &= (tri[..., 2].min(dim=-1).values > 1e-4)[..., None, None]
        depth = 1.0 / (w / z).sum(dim=-1)
    else:
        depth = (w * z).sum(dim=-1)
    depth = torch.where(inside, depth, torch.full_like(depth, float("inf")))
    nearest, face = depth.min(dim=1)
    covered = torch.isfinite(nearest)
    pix_to_face = torch.where(covered, face, torch.full_like(face, -1))
    assert pix_to_face.shape == (batch, height, width)
    return pix_to_face, torch.where(covered, nearest, torch.zeros_like(nearest))


def random_triangles(
    generator: torch.Generator, batch: int, num_faces: int, perspective: bool
) -> tuple[Tensor, Tensor]:
    """Unconnected random triangles of varied size, partly off-screen, in screen space."""
    centres = torch.rand(batch, num_faces, 1, 2, generator=generator) * 2.4 - 1.2
    sizes = torch.rand(batch, num_faces, 1, 1, generator=generator) * 0.8 + 0.05
    corners = centres + sizes * (torch.rand(batch, num_faces, 3, 2, generator=generator) * 2 - 1)
    depth = torch.rand(batch, num_faces, 3, 1, generator=generator)
    depth = depth * 2 + 0.5 if perspective else depth * 2 - 1
    screen = torch.cat((corners, depth), dim=-1).reshape(batch, num_faces * 3, 3)
    faces = torch.arange(num_faces * 3).reshape(num_faces, 3)
    return screen, faces


def random_rotation(generator: torch.Generator, batch: int = 1) -> Tensor:
    """(B, 3, 3) rotations from random unit quaternions."""
    quaternion = torch.randn(batch, 4, generator=generator)
    return quaternion_matrix(quaternion / quaternion.norm(dim=1, keepdim=True))
