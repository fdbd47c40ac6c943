"""Paint a car's colour at points of its surface: paint, two-tone roof, stripes, glass, lights, grille,
number plates, trim, tyres and rims, decided from the 3D position and normal of each point.

Everything is a mask over the points, composed in a fixed order (later layers cover earlier ones), so
the texture of a whole UV map is a handful of tensor operations.
"""

from __future__ import annotations

import math

import torch

from workbench.data.car_sdf import Params, body_top, roof_height, wheel_centres_z, wheel_outer_x


def _col(p: Params, name: str) -> torch.Tensor:
    return p[name][:, None]


def _rgb(values: tuple[float, float, float], like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, device=like.device, dtype=torch.float32)


def _layer(colour: torch.Tensor, mask: torch.Tensor, paint: torch.Tensor) -> torch.Tensor:
    """Put ``paint`` (B,N,3 or broadcastable) over ``colour`` where ``mask`` (B,N) is true."""
    return torch.where(mask[..., None], paint.expand_as(colour), colour)


def paint_car(q: torch.Tensor, n: torch.Tensor, p: Params) -> torch.Tensor:
    """(B, N, 3) colours in [0, 1] of surface points ``q`` (ground frame) with outward normals ``n``."""
    x, y, z = q[..., 0].abs(), q[..., 1], q[..., 2]
    nx, ny, nz = n[..., 0].abs(), n[..., 1], n[..., 2]
    hw, hh = _col(p, "half_width"), _col(p, "body_half_height")
    top, roof, clear = body_top(p)[:, None], roof_height(p)[:, None], _col(p, "clearance")
    shape = (*q.shape[:2], 3)

    colour = p["paint"][:, None, :].expand(shape)
    roof_band = (y > roof - 0.45 * _col(p, "cabin_height")) & (p["two_tone"][:, None] > 0)
    colour = _layer(colour, roof_band, p["roof_paint"][:, None, :])
    centre_stripe = (x > _col(p, "stripe_gap")) & (x < _col(p, "stripe_gap") + _col(p, "stripe_width"))
    stripe_on = centre_stripe & (ny > 0.2) & (p["stripe"][:, None] > 0)
    colour = _layer(colour, stripe_on, p["stripe_paint"][:, None, :])
    side_y = clear + 2 * hh * (0.3 + 0.45 * _col(p, "side_stripe_height"))
    side_stripe = ((y - side_y).abs() < 0.012) & (nx > 0.6) & (p["side_stripe"][:, None] > 0)
    colour = _layer(colour, side_stripe, p["stripe_paint"][:, None, :])

    trim = (y < clear + 0.35 * hh) & (p["trim_dark"][:, None] > 0)
    colour = _layer(colour, trim, _rgb((0.09, 0.09, 0.1), q))
    colour = _layer(colour, y < clear + 0.02, _rgb((0.05, 0.05, 0.05), q))

    glass = _glass(y, z, nx, p, top, roof)
    tint = 0.06 + 0.12 * _col(p, "glass_tint")
    reflection = 1.4 - (y - top) / (roof - top)  # glass darkens towards the roof
    glass_colour = torch.stack([tint, tint * 1.15, tint * 1.35], -1) * reflection[..., None]
    colour = torch.where(glass[..., None], glass_colour.expand(shape), colour)

    front, back = (nz > 0.45) & (z > 0), (nz < -0.45) & (z < 0)
    lamp_y = (y > top - 0.55 * hh) & (y < top - 0.08 * hh)
    lamp_x = (x > hw * (0.45 + 0.15 * _col(p, "light_style"))) & (x < 0.92 * hw)
    colour = _layer(colour, front & lamp_y & lamp_x, _rgb((0.95, 0.93, 0.82), q))
    colour = _layer(colour, back & lamp_y & lamp_x, _rgb((0.75, 0.05, 0.05), q))
    grille_y = (y > clear + 0.45 * hh) & (y < top - 0.45 * hh)
    grille = front & grille_y & (x < 0.38 * hw)
    slats = torch.sin(y * 2 * math.pi / 0.03) > 0
    colour = _layer(colour, grille, torch.where(slats[..., None], _rgb((0.05, 0.05, 0.06), q),
                                                _rgb((0.2, 0.2, 0.22), q)))
    plate = (x < 0.13) & (y > clear + 0.25 * hh) & (y < clear + 0.25 * hh + 0.07)
    colour = _layer(colour, (front | back) & plate, _rgb((0.9, 0.9, 0.86), q))

    return _paint_wheels(colour, q, n, p)


def _glass(y: torch.Tensor, z: torch.Tensor, nx: torch.Tensor, p: Params, top: torch.Tensor,
           roof: torch.Tensor) -> torch.Tensor:
    """Windscreen, side windows and rear window: a band round the cabin below the roof, with a B-pillar."""
    band = (y > top + _col(p, "beltline")) & (y < roof - _col(p, "window_margin") * _col(p, "cabin_height"))
    pillar_z = _col(p, "cabin_offset") + 0.3 * _col(p, "pillar_offset") * _col(p, "cabin_half_length")
    pillar = ((z - pillar_z).abs() < 0.025) & (nx > 0.5)
    return band & ~pillar


def _paint_wheels(colour: torch.Tensor, q: torch.Tensor, n: torch.Tensor, p: Params) -> torch.Tensor:
    """Black tyres, arch shadows and rims with spokes on the wheels' outer faces."""
    x, yz = q[..., 0].abs(), q[..., 1:]
    r = _col(p, "wheel_radius")
    axle = torch.stack([r.expand(-1, 2), wheel_centres_z(p)], -1)  # (B, 2, 2)
    rel = yz[:, :, None, :] - axle[:, None]  # (B, N, 2, 2)
    dist = rel.norm(dim=-1)
    nearest = dist.argmin(-1, keepdim=True)
    d = dist.gather(-1, nearest)[..., 0]
    rel = rel.gather(2, nearest[..., None].expand(-1, -1, 1, 2))[:, :, 0]
    outer = wheel_outer_x(p)[:, None]
    side = n[..., 0].abs() > 0.5
    on_wheel = d < r * 1.02
    arch = side & (d >= r * 1.02) & (d < r * 1.12) & (x < outer + 0.02)
    colour = _layer(colour, arch, _rgb((0.03, 0.03, 0.03), q))
    colour = _layer(colour, on_wheel, _rgb((0.07, 0.07, 0.08), q))
    rim = on_wheel & side & (d < 0.62 * r) & (x > outer - 0.03)
    dark, silver = _rgb((0.18, 0.18, 0.2), q), _rgb((0.7, 0.71, 0.73), q)
    rim_colour = torch.where(p["rim_dark"][:, None, None] > 0, dark, silver)
    angle = torch.atan2(rel[..., 0], rel[..., 1])
    spoke_gap = (torch.cos(angle * _col(p, "rim_spokes")) < -0.3) & (d > 0.2 * r) & (d < 0.55 * r)
    hub = rim_colour.expand_as(colour) * torch.where(spoke_gap, 0.35, 1.0)[..., None]
    return torch.where(rim[..., None], hub, colour)
