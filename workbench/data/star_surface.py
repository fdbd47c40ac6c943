"""Cast a car's distance field into a star-shaped surface around its centre.

MeshInversion's mesh is a unit sphere pushed along its normals, so it can only represent surfaces
that every ray from the centre leaves exactly once. We take the outermost crossing along each ray:
this is the car itself wherever the car is star-shaped, and its visible hull from the centre where
it is not (under the wheel arches), so the ground truth is exact in the template parametrisation.
"""

from __future__ import annotations

import torch

from workbench.data.car_sdf import Params, car_centre, car_sdf

MAX_RADIUS = 1.45
"""No car point is further than this from its centre (half length <= 1, corners included)."""


def star_radius(p: Params, dirs: torch.Tensor, coarse: int = 72, refine: int = 14) -> torch.Tensor:
    """(B, N) distance from each car's centre to its outermost surface along unit ``dirs`` (N, 3).

    A coarse march finds the last inside sample along each ray, then bisection refines the crossing
    to MAX_RADIUS / coarse / 2**refine (about 1e-6 with the defaults).
    """
    B, device = p["half_length"].shape[0], dirs.device
    centre = car_centre(p)[:, None, None, :]  # (B, 1, 1, 3)
    radii = torch.linspace(0, MAX_RADIUS, coarse + 1, device=device)[1:]
    pts = centre + radii[None, None, :, None] * dirs[None, :, None, :]  # (B, N, K, 3)
    inside = car_sdf(pts.reshape(B, -1, 3), p).reshape(B, dirs.shape[0], coarse) < 0
    k = torch.arange(coarse, device=device)
    last = torch.where(inside, k, -1).max(dim=-1).values  # (B, N); -1 would mean the centre is outside
    if (last < 0).any() or (last == coarse - 1).any():
        raise ValueError("car does not fit the casting range; its parameters are out of range")
    step = MAX_RADIUS / coarse
    lo, hi = (last + 1).float() * step, (last + 2).float() * step
    for _ in range(refine):
        mid = 0.5 * (lo + hi)
        mid_inside = car_sdf((centre[:, :, 0] + mid[..., None] * dirs[None]), p) < 0
        lo, hi = torch.where(mid_inside, mid, lo), torch.where(mid_inside, hi, mid)
    return 0.5 * (lo + hi)
