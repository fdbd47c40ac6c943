"""The soft-silhouette experiment: 1 on the object, decaying outside it, empty off screen."""

from __future__ import annotations

import torch

from backend.render import OrthographicCamera, build_edge_topology, rasterize
from backend.render.primitives import uv_sphere
from workbench.experiments.soft_mask import render_soft_mask, soft_silhouette


def test_soft_silhouette_is_one_inside_and_decays_outside() -> None:
    angle = torch.linspace(0, 2 * torch.pi, 65)[:-1]
    ring = torch.stack((0.5 * angle.cos(), 0.5 * angle.sin(), torch.ones_like(angle)), dim=1)
    screen = torch.cat((torch.tensor([[0.0, 0.0, 1.0]]), ring))[None]
    index = torch.arange(64)
    faces = torch.stack((torch.zeros_like(index), 1 + index, 1 + (index + 1) % 64), dim=1)
    topology = build_edge_topology(faces)
    mask = rasterize(screen, faces, 64).mask
    soft = soft_silhouette(screen, faces, topology, mask, sigma=4.0)
    assert torch.equal(soft[mask], torch.ones(int(mask.sum())))
    rows = torch.arange(64)[:, None].expand(64, 64)
    cols = torch.arange(64)[None, :].expand(64, 64)
    radius = ((cols - 31.5).square() + (rows - 31.5).square()).sqrt()  # pixels from the centre
    just_outside = ~mask[0] & (radius < 16 + 1.5)
    far = radius > 16 + 8
    assert (soft[0][just_outside] > 0.3).all() and (soft[0][just_outside] < 1).all()
    assert (soft[0][far] == 0).all()
    outside = ~mask[0] & ~far
    closer = soft[0][outside][radius[outside].argsort()]
    assert closer[0] > closer[-1]


def test_off_screen_and_non_finite_meshes_give_an_empty_or_finite_soft_mask() -> None:
    vertices, faces, _ = uv_sphere(16, 8)
    camera = OrthographicCamera(torch.eye(3).expand(2, 3, 3), 0.5, torch.tensor([[9.0, 0.0, 0.0]] * 2))
    fragments, soft = render_soft_mask(vertices.expand(2, -1, -1), faces, camera, 16, sigma=1.0)
    assert not fragments.mask.any() and (soft == 0).all()
    broken = vertices.clone()
    broken[5] = float("nan")
    broken[6] = float("inf")
    centred = OrthographicCamera(torch.eye(3)[None], 0.5, torch.zeros(1, 3))
    fragments, soft = render_soft_mask(broken[None], faces, centred, 16, sigma=1.0)
    assert fragments.mask.any() and torch.isfinite(soft).all()
