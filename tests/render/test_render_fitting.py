"""Optimisation through the renderer: shape from a silhouette, texture from an image."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from backend.render import (
    EdgeTopology,
    OrthographicCamera,
    build_edge_topology,
    render_mesh,
)
from backend.render.primitives import uv_sphere

from .helpers import random_rotation


def _laplacian(vertices: torch.Tensor, topology: EdgeTopology) -> torch.Tensor:
    """Uniform Laplacian: each vertex minus the mean of its neighbours."""
    first, second = topology.edges[:, 0], topology.edges[:, 1]
    total = (
        torch.zeros_like(vertices)
        .index_add(1, first, vertices[:, second])
        .index_add(1, second, vertices[:, first])
    )
    degree = torch.zeros(vertices.shape[1]).index_add(0, first, torch.ones(len(first)))
    degree = degree.index_add(0, second, torch.ones(len(second)))
    return vertices - total / degree[None, :, None]


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a & b).sum() / (a | b).sum()).item()


def test_sphere_fits_an_ellipsoid_silhouette() -> None:
    vertices, faces, _ = uv_sphere(32, 16)
    topology = build_edge_topology(faces)
    camera = OrthographicCamera(random_rotation(torch.Generator().manual_seed(2)), 1.0, torch.zeros(1, 3))
    size = 64
    ellipsoid = vertices * torch.tensor([0.8, 0.45, 0.6])
    target = render_mesh(ellipsoid[None], faces, camera, size, topology=topology).mask

    offsets = torch.zeros(1, *vertices.shape, requires_grad=True)
    optimiser = torch.optim.Adam([offsets], lr=0.01)
    start = 0.5 * vertices[None]
    initial = render_mesh(start, faces, camera, size, topology=topology).mask
    for _ in range(150):
        shape = start + offsets
        out = render_mesh(shape, faces, camera, size, topology=topology)
        loss = (
            F.mse_loss(out.alpha, target.float()) + 0.5 * _laplacian(shape, topology).square().sum(-1).mean()
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    final = render_mesh(start + offsets.detach(), faces, camera, size, topology=topology).mask
    assert _iou(initial, target) < 0.7
    assert _iou(final, target) >= 0.97


def test_texture_fits_a_target_image() -> None:
    vertices, faces, uvs = uv_sphere(32, 16)
    topology = build_edge_topology(faces)
    camera = OrthographicCamera(random_rotation(torch.Generator().manual_seed(3)), 0.8, torch.zeros(1, 3))
    coarse = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    target_texture = F.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
    target = render_mesh(
        vertices[None], faces, camera, 64, texture=target_texture, uvs=uvs, topology=topology
    )

    texture = torch.full((1, 3, 32, 32), 0.5, requires_grad=True)
    optimiser = torch.optim.Adam([texture], lr=0.05)
    for _ in range(80):
        out = render_mesh(vertices[None], faces, camera, 64, texture=texture, uvs=uvs, topology=topology)
        loss = (out.rgb - target.rgb).abs().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    first = (
        (
            render_mesh(
                vertices[None],
                faces,
                camera,
                64,
                texture=torch.full_like(texture, 0.5),
                uvs=uvs,
                topology=topology,
            ).rgb
            - target.rgb
        )
        .abs()[target.mask]
        .mean()
    )
    final = (out.rgb - target.rgb).abs()[target.mask].mean()
    assert first > 0.1
    assert final < 0.1 * first
