"""Gradients: finite-difference checks (float64) through the whole render, and the silhouette
derivative against finite differences and the analytic area of the projected polygon."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from backend.render import (
    DirectionalLight,
    OrthographicCamera,
    build_edge_topology,
    pivot_perspective_camera,
    rasterize,
    render_mesh,
    weak_perspective_camera,
)
from backend.render.primitives import uv_sphere
from workbench.experiments.soft_mask import render_soft_mask

from .helpers import random_rotation

SIZE = 24


def _scene() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    vertices, faces, uvs = uv_sphere(8, 6)
    bumpy = vertices * (1 + 0.1 * torch.rand(vertices.shape[0], 1, generator=generator))
    return {
        "vertices": bumpy.double()[None],
        "faces": faces,
        "uvs": uvs.double(),
        "texture": torch.rand(1, 3, 8, 8, generator=generator, dtype=torch.float64),
        "weights_rgb": torch.rand(1, SIZE, SIZE, 3, generator=generator, dtype=torch.float64),
        "weights_alpha": torch.rand(1, SIZE, SIZE, generator=generator, dtype=torch.float64),
        "quaternion": torch.tensor([[0.9, 0.3, -0.2, 0.1]], dtype=torch.float64),
        "scale": torch.tensor([0.55], dtype=torch.float64),
        "translation": torch.tensor([[0.04, -0.07, 0.0]], dtype=torch.float64),
    }


def _loss(scene: dict[str, torch.Tensor], camera, light: DirectionalLight | None = None, **overrides):
    """A weighted sum of every output pixel (colour, coverage, depth, normals): its gradient checks
    all of them at once."""
    values = {**scene, **overrides}
    out = render_mesh(
        values["vertices"],
        scene["faces"],
        camera,
        SIZE,
        texture=values["texture"],
        uvs=scene["uvs"],
        light=light,
        background=values.get("background", 0.25),
        topology=build_edge_topology(scene["faces"]),
    )
    geometry = (out.depth * scene["weights_alpha"]).sum() + (out.normals * scene["weights_rgb"]).sum()
    return (out.rgb * scene["weights_rgb"]).sum() + (out.alpha * scene["weights_alpha"]).sum() + geometry


def _check(function: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> None:
    inputs = tuple(value.detach().clone().requires_grad_(True) for value in inputs)
    assert torch.autograd.gradcheck(function, inputs, eps=1e-6, atol=1e-5, rtol=1e-3)


def _mi_camera(scene: dict[str, torch.Tensor]):
    return weak_perspective_camera(scene["quaternion"], scene["scale"], scene["translation"])


def test_gradients_to_vertices() -> None:
    scene = _scene()
    _check(lambda vertices: _loss(scene, _mi_camera(scene), vertices=vertices), scene["vertices"])


def test_gradients_to_texture_and_background() -> None:
    scene = _scene()
    _check(
        lambda texture, background: _loss(scene, _mi_camera(scene), texture=texture, background=background),
        scene["texture"],
        torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64),
    )


def test_gradients_to_weak_perspective_camera() -> None:
    scene = _scene()
    _check(
        lambda q, s, t: _loss(scene, weak_perspective_camera(q, s, t)),
        scene["quaternion"],
        scene["scale"],
        scene["translation"],
    )


def test_gradients_to_perspective_camera_and_light() -> None:
    scene = _scene()
    vertices = scene["vertices"] * 0.08 + torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)

    def loss(view: torch.Tensor, direction: torch.Tensor, ambient: torch.Tensor, diffuse: torch.Tensor):
        light = DirectionalLight(direction, ambient, diffuse)
        return _loss(scene, pivot_perspective_camera(view, SIZE), light, vertices=vertices)

    _check(
        loss,
        torch.tensor([[0.1, -0.2, 0.05, 0.01, -0.02, 0.0]], dtype=torch.float64),
        torch.tensor([[0.3, -0.4, -1.0]], dtype=torch.float64),
        torch.tensor([0.3], dtype=torch.float64),
        torch.tensor([0.6], dtype=torch.float64),
    )


@pytest.mark.parametrize("size", [128, 256])
def test_silhouette_area_derivative_with_respect_to_scale(size: int) -> None:
    """d(sum alpha)/d(scale) against (a) central differences of the hard pixel count and (b) the
    analytic derivative 2 A / s of the projected polygon area A (exact for a convex mesh under
    orthographic projection, where the area is quadratic in s). Differences of alpha itself are
    no reference at this scale: alpha jumps by up to half a pixel when a silhouette vertex crosses
    a pixel row or column (the crossing pair passes from a steep to a shallow edge), as in
    nvdiffrast; the gradchecks above cover alpha's derivative between such events."""
    vertices, faces, _ = uv_sphere(32, 33)  # 2,048 faces
    topology = build_edge_topology(faces)
    rotation = random_rotation(torch.Generator().manual_seed(1))
    translation = torch.tensor([[0.05, -0.03, 0.0]])
    scale = 0.6

    def camera(value: float | torch.Tensor) -> OrthographicCamera:
        return OrthographicCamera(rotation, torch.as_tensor(value).reshape(1), translation)

    scale_tensor = torch.tensor([scale], requires_grad=True)
    render_mesh(vertices[None], faces, camera(scale_tensor), size, topology=topology).alpha.sum().backward()
    autograd = scale_tensor.grad.item()

    def hard_area(value: float) -> float:
        return rasterize(camera(value).project(vertices[None]), faces, size).mask.sum().item()

    step = 0.1  # central differences are exact on a quadratic; a wide step averages pixel noise
    finite_hard = (hard_area(scale + step) - hard_area(scale - step)) / (2 * step)

    corners = camera(1.0).project(vertices[None])[0, faces][..., :2] * (size / 2)
    edge_a, edge_b = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
    twice_area = edge_a[:, 0] * edge_b[:, 1] - edge_a[:, 1] * edge_b[:, 0]
    analytic = 2 * scale * (twice_area.clamp(min=0).sum().item() / 2)

    assert abs(autograd - finite_hard) / finite_hard < 0.02
    assert abs(autograd - analytic) / analytic < 0.01


def test_gradients_through_the_soft_silhouette() -> None:
    scene = _scene()

    def loss(vertices: torch.Tensor) -> torch.Tensor:
        soft = render_soft_mask(vertices, scene["faces"], _mi_camera(scene), SIZE, sigma=2.0)[1]
        return (soft * scene["weights_alpha"]).sum()

    _check(loss, scene["vertices"])
