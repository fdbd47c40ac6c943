"""Procedural cars: determinism, symmetry, and ground truth that the template reproduces."""

from __future__ import annotations

import math

import torch

from backend.methods.meshinversion.template import sphere_template
from workbench.data.car_maps import car_maps
from workbench.data.car_paint import paint_car
from workbench.data.car_params import SHAPE_RANGES, car_params
from workbench.data.car_sdf import (
    body_top,
    car_centre,
    car_sdf,
    roof_height,
    wheel_centres_z,
    wheel_outer_x,
)
from workbench.data.star_surface import star_radius
from workbench.data.uv_grid import mirror_half, texel_directions

SEEDS = [3, 11, 42]


def mirror_columns(width: int) -> torch.Tensor:
    """Column of a full UV map that is the x -> -x mirror of each column (u -> 0.5 - u)."""
    return (width // 2 - 1 - torch.arange(width)) % width


def test_car_depends_on_its_seed_only():
    alone = car_maps([11], texture_size=64)
    in_batch = car_maps(SEEDS, texture_size=64)
    assert torch.equal(alone.displacement[0], in_batch.displacement[1])
    assert torch.equal(alone.texture[0], in_batch.texture[1])
    other = car_maps([12], texture_size=64)
    assert not torch.equal(alone.texture, other.texture)


def test_shape_parameters_vary_across_their_ranges():
    p = car_params(list(range(200)))
    assert len(SHAPE_RANGES) >= 6
    for name, (lo, hi) in SHAPE_RANGES.items():
        assert p[name].min() >= lo and p[name].max() <= hi
        assert p[name].max() - p[name].min() > 0.8 * (hi - lo), name
    assert len({tuple(c) for c in (p["paint"] * 10).round().tolist()}) > 20


def test_maps_are_mirror_symmetric():
    maps = car_maps(SEEDS, texture_size=64)
    for uv_map in (maps.displacement, maps.texture):
        assert torch.equal(uv_map, uv_map[..., mirror_columns(uv_map.shape[-1])])


def test_mirror_half_matches_the_generator_symmetrisation():
    from backend.methods.meshinversion.generator import symmetrize_map

    half = torch.randn(2, 3, 8, 16)
    assert torch.equal(mirror_half(half), symmetrize_map(half))


def test_sdf_is_symmetric_in_x():
    p = car_params(SEEDS)
    q = torch.randn(3, 500, 3) * 0.7
    flipped = q * torch.tensor([-1.0, 1.0, 1.0])
    assert torch.allclose(car_sdf(q, p), car_sdf(flipped, p), atol=1e-6)


def test_star_surface_lies_on_the_car_and_is_its_outermost_crossing():
    p = car_params(SEEDS)
    dirs = texel_directions(32, 32).reshape(-1, 3)
    r = star_radius(p, dirs)
    centre = car_centre(p)[:, None]
    on = car_sdf(centre + r[..., None] * dirs, p)
    assert on.abs().max() < 1e-4
    further = r[..., None] + torch.linspace(0.01, 0.6, 20)  # (B, N, K)
    points = centre[:, :, None] + further[..., None] * dirs[None, :, None]
    assert (car_sdf(points.reshape(3, -1, 3), p) > 0).all()


def test_displacement_map_reproduces_the_surface_through_the_template():
    """Vertices from the template's own displacement sampler land on the car surface at the
    template's vertex directions (up to bilinear interpolation between texels)."""
    maps = car_maps(SEEDS, texture_size=64)
    template = sphere_template(16)
    vertices = template.displace(maps.displacement)
    dirs = template.vertices / template.vertices.norm(dim=-1, keepdim=True)
    exact = star_radius(maps.params, dirs)
    radius = vertices.norm(dim=-1)
    # Each vertex moves only along its own normal, so the directions are kept exactly.
    assert torch.allclose(vertices / radius[..., None], dirs.expand_as(vertices), atol=1e-5)
    error = (radius - exact).abs()
    assert error.median() < 0.01 and error.max() < 0.15
    poles = torch.tensor([0, template.vertices.shape[0] - 1])
    assert torch.allclose(radius[:, poles], exact[:, poles], atol=1e-5)


def test_texel_directions_follow_the_template_uv_layout():
    d = texel_directions(32, 32)
    assert torch.allclose(d[0, 5], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)  # row 0: north pole
    u = (torch.arange(32) + 0.5) / 32
    azimuth = torch.atan2(d[16, :, 0], d[16, :, 2])
    assert torch.allclose(torch.remainder(0.25 + azimuth / (2 * math.pi), 1.0), u, atol=1e-5)


def test_painter_puts_wheels_glass_lights_and_paint_where_they_belong():
    p = car_params(list(range(40)))
    top, ch = body_top(p), p["cabin_height"]
    wz = wheel_centres_z(p)[:, 0]
    hub = torch.stack([wheel_outer_x(p), p["wheel_radius"], wz], -1)
    tread = torch.stack([wheel_outer_x(p) - 0.05, torch.full_like(wz, 0.002), wz], -1)
    roof = torch.stack([torch.zeros_like(wz), roof_height(p), p["cabin_offset"]], -1)
    window_y = top + p["beltline"] + 0.3 * ch * (1 - p["window_margin"])
    window_z = p["cabin_offset"] + 0.6 * p["cabin_half_length"]
    side_window = torch.stack([p["half_width"] * 0.7, window_y, window_z], -1)
    points = torch.stack([hub, tread, roof, side_window], 1)
    normals = torch.tensor([[1.0, 0, 0], [0, -1, 0], [0, 1, 0], [1, 0, 0]]).expand(40, -1, -1)
    colour = paint_car(points, normals, p)
    paint = p["paint"]
    assert (colour[:, 1] < 0.1).all()  # tyre tread is black
    hub_differs = (colour[:, 0] - paint).abs().amax(-1) > 0.05
    assert hub_differs.float().mean() > 0.9  # rims are not body paint (unless the paint matches)
    off_paint = (colour[:, 2] - paint).abs().amax(-1)
    off_roof_paint = (colour[:, 2] - p["roof_paint"]).abs().amax(-1)
    plain = p["stripe"] == 0
    assert (torch.minimum(off_paint, off_roof_paint)[plain] < 1e-6).all()
    assert (colour[:, 3].amax(-1) < 0.45).all()  # glass is dark
