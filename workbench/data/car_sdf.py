"""Signed distance of a procedural car: a smooth union of a sloped rounded body, a raked cabin and
four wheels, all mirror-symmetric in x (every term uses |x|).

Frame: x = left-right, y = up, z = the car's front. The ground is y = 0 and the body is centred at
z = 0; ``car_centre`` gives the point the star-shaped surface is cast from.
"""

from __future__ import annotations

import torch

Params = dict[str, torch.Tensor]


def _col(p: Params, name: str) -> torch.Tensor:
    """A (B,) parameter as (B, 1) so it broadcasts over the points of each car."""
    return p[name][:, None]


def rounded_box(q: torch.Tensor, half: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Distance to a box of half extents ``half`` (B,1,3) with edges rounded by ``radius`` (B,1)."""
    d = q.abs() - (half - radius[..., None])
    outside = d.clamp(min=0).norm(dim=-1)
    inside = d.max(dim=-1).values.clamp(max=0)
    return outside + inside - radius


def smooth_union(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    """Polynomial smooth minimum: a fillet of size ``k`` where the shapes meet."""
    h = (0.5 + 0.5 * (b - a) / k).clamp(0, 1)
    return b + (a - b) * h - k * h * (1 - h)


def smooth_intersection(a: torch.Tensor, b: torch.Tensor, k: float) -> torch.Tensor:
    """Smooth maximum: cuts ``a`` by ``b`` with a rounded crease."""
    return -smooth_union(-a, -b, k)


def plane(q: torch.Tensor, normal: torch.Tensor, point: torch.Tensor) -> torch.Tensor:
    """Signed distance to the plane through ``point`` with (unnormalised) ``normal``, both (B,1,3)."""
    n = normal / normal.norm(dim=-1, keepdim=True)
    return ((q - point) * n).sum(-1)


def body_top(p: Params) -> torch.Tensor:
    """(B,) height of the body's top (the waist line), above the ground."""
    return p["clearance"] + 2 * p["body_half_height"]


def roof_height(p: Params) -> torch.Tensor:
    """(B,) height of the roof above the ground."""
    return body_top(p) + p["cabin_height"]


def car_centre(p: Params) -> torch.Tensor:
    """(B, 3) centre the surface is cast from: mid-height between ground and roof, z = 0.

    It lies inside the body for every parameter in range, because the cabin is never taller than
    the body plus the clearance."""
    zero = torch.zeros_like(p["half_length"])
    return torch.stack([zero, 0.5 * roof_height(p), zero], -1)


def wheel_centres_z(p: Params) -> torch.Tensor:
    """(B, 2) z of the front and rear axles."""
    wz = p["wheelbase"] * p["half_length"]
    return torch.stack([wz, -wz], -1)


def wheel_outer_x(p: Params) -> torch.Tensor:
    """(B,) x of a wheel's outer face (slightly inside the body side)."""
    return p["half_width"] - 0.01


def body_sdf(q: torch.Tensor, p: Params) -> torch.Tensor:
    """The lower body: a rounded box with a sloped bonnet and boot lid."""
    B = q.shape[0]
    zero = torch.zeros(B, 1, device=q.device)
    hl, hw, hh = _col(p, "half_length"), _col(p, "half_width"), _col(p, "body_half_height")
    top = _col(p, "clearance") + 2 * hh
    centre = torch.stack([zero, _col(p, "clearance") + hh, zero], -1)
    half = torch.stack([hw, hh, hl], -1)
    box = rounded_box(q - centre, half, _col(p, "body_roundness") * hh)
    one = torch.ones_like(zero)
    hood = plane(q, torch.stack([zero, one, _col(p, "hood_slope")], -1),
                 torch.stack([zero, top, hl - _col(p, "nose_length")], -1))
    boot = plane(q, torch.stack([zero, one, -_col(p, "tail_slope")], -1),
                 torch.stack([zero, top, -hl + _col(p, "tail_length")], -1))
    return smooth_intersection(smooth_intersection(box, hood, 0.04), boot, 0.04)


def cabin_sdf(q: torch.Tensor, p: Params) -> torch.Tensor:
    """The greenhouse: a rounded box cut by the windscreen, the rear window and the tumblehome."""
    B = q.shape[0]
    zero = torch.zeros(B, 1, device=q.device)
    one = torch.ones_like(zero)
    top, ch = _col(p, "clearance") + 2 * _col(p, "body_half_height"), _col(p, "cabin_height")
    cz, cl = _col(p, "cabin_offset"), _col(p, "cabin_half_length")
    cw = _col(p, "cabin_width") * _col(p, "half_width")
    sink = 0.05  # the cabin box reaches into the body so the union has no seam
    centre = torch.stack([zero, top + 0.5 * (ch - sink), cz], -1)
    half = torch.stack([cw, 0.5 * (ch + sink), cl], -1)
    box = rounded_box(q - centre, half, 0.35 * ch)
    screen = plane(q, torch.stack([zero, _col(p, "windshield_rake"), one], -1),
                   torch.stack([zero, top, cz + cl], -1))
    rear = plane(q, torch.stack([zero, _col(p, "rear_rake"), -one], -1),
                 torch.stack([zero, top, cz - cl], -1))
    side = plane(q.abs(), torch.stack([one, _col(p, "tumblehome"), zero], -1),
                 torch.stack([cw, top, zero], -1))
    cut = smooth_intersection(smooth_intersection(box, screen, 0.03), rear, 0.03)
    return smooth_intersection(cut, side, 0.02)


def wheels_sdf(q: torch.Tensor, p: Params) -> torch.Tensor:
    """Four tyres: capped cylinders along x with a rounded tread."""
    r, hw = _col(p, "wheel_radius"), _col(p, "wheel_half_width")
    wx = wheel_outer_x(p)[:, None] - hw
    yz = q[..., 1:][:, :, None, :]  # (B, N, 1, 2)
    axle = torch.stack([r.expand(-1, 2), wheel_centres_z(p)], -1)[:, None]  # (B, 1, 2, 2)
    radial = (yz - axle).norm(dim=-1).min(dim=-1).values - r
    axial = (q[..., 0].abs() - wx).abs() - hw
    corner = 0.03
    d = torch.stack([radial + corner, axial + corner], -1)
    return d.clamp(min=0).norm(dim=-1) + d.max(dim=-1).values.clamp(max=0) - corner


def car_sdf(q: torch.Tensor, p: Params) -> torch.Tensor:
    """(B, N) signed distance of points ``q`` (B, N, 3), ground frame, negative inside."""
    shell = smooth_union(body_sdf(q, p), cabin_sdf(q, p), 0.05)
    return smooth_union(shell, wheels_sdf(q, p), 0.015)


def car_normals(q: torch.Tensor, p: Params, eps: float = 2e-3) -> torch.Tensor:
    """(B, N, 3) outward unit normals from central differences of the distance field."""
    offsets = torch.eye(3, device=q.device) * eps
    grads = [car_sdf(q + o, p) - car_sdf(q - o, p) for o in offsets]
    g = torch.stack(grads, -1)
    return g / g.norm(dim=-1, keepdim=True).clamp(min=1e-12)
