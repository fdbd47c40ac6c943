"""Baking a photo into a UV texture: a render of a textured mesh, baked back, gives the texture where
the camera saw it squarely, nothing where it did not (far side, off the mask), and ``pull_push``
fills the gaps smoothly without touching what is known."""

from __future__ import annotations

import math

import pytest
import torch

from backend.render import OrthographicCamera, PerspectiveCamera, euler_rotation_xyz, render_mesh
from backend.render.bake import bake_photo, pull_push, uv_fragments
from backend.render.interpolate import blend_vertex_attributes
from backend.render.primitives import uv_sphere

SIZE = 128


def smooth_texture(size: int) -> torch.Tensor:
    """(3, N, N) in [0, 1]: low-frequency colour waves (bilinear lookups stay exact enough)."""
    v, u = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    red, green = 0.5 + 0.4 * torch.sin(2 * math.pi * u), 0.5 + 0.4 * torch.cos(math.pi * v)
    return torch.stack((red, green, 0.3 + 0.5 * u * v))


def photo_of_sphere(camera, texture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    vertices, faces, uvs = uv_sphere(32, 16)
    out = render_mesh(vertices[None], faces, camera, 256, texture=texture[None], uvs=uvs, antialiased=False)
    return out.rgb[0].permute(2, 0, 1), out.mask[0].float()


def cameras() -> list:
    rotation = euler_rotation_xyz(torch.tensor([[0.3, 0.8, 0.0]]))
    return [
        OrthographicCamera(rotation, 0.8, torch.tensor([[0.05, 0.0, 3.0]])),
        PerspectiveCamera(rotation, torch.tensor([[0.0, 0.0, 4.0]]), 3.0),
    ]


def test_baking_a_render_gives_back_the_texture_where_the_camera_saw_it():
    texture = smooth_texture(SIZE)
    vertices, faces, uvs = uv_sphere(32, 16)
    for camera in cameras():
        photo, mask = photo_of_sphere(camera, texture)
        bake = bake_photo(vertices, faces, uvs, camera, photo, mask, SIZE)
        squarely = bake.weight > 0.5
        assert 0.08 < float(squarely.float().mean()) < 0.3  # the cap within 60 deg of the camera axis
        colour = bake.colour / bake.weight.clamp(min=1e-6)
        error = (colour - texture).abs().amax(dim=0)[squarely]
        assert float(error.mean()) < 0.01 and float(error.max()) < 0.1
        # The far side: every texel whose surface faces away from the camera has no weight.
        texels = uv_fragments(uvs, SIZE)
        points = blend_vertex_attributes(texels, faces, vertices)
        towards = camera.to_view(points[None])[0]
        away = texels.to_image((towards[:, 2] > towards[:, 2].median() + 0.3).float()[:, None])[0, ..., 0] > 0
        assert away.sum() > 100 and float(bake.weight[away].max()) == 0.0


def test_texels_outside_the_photo_mask_get_no_weight():
    texture = smooth_texture(SIZE)
    vertices, faces, uvs = uv_sphere(32, 16)
    camera = cameras()[0]
    photo, mask = photo_of_sphere(camera, texture)
    full = bake_photo(vertices, faces, uvs, camera, photo, mask, SIZE)
    left_only = mask.clone()
    left_only[:, 128:] = 0
    half = bake_photo(vertices, faces, uvs, camera, photo, left_only, SIZE)
    assert 0.3 < float(half.weight.sum() / full.weight.sum()) < 0.7
    assert bool((half.weight <= full.weight + 1e-6).all())


def test_pull_push_keeps_known_texels_and_fills_holes_smoothly():
    g = torch.Generator().manual_seed(0)
    colour = torch.rand(3, 64, 64, generator=g)
    weight = (torch.rand(64, 64, generator=g) > 0.7).float()
    weight[20:44, 20:44] = 0  # a big hole
    filled = pull_push(colour, weight)
    known = weight > 0
    torch.testing.assert_close(filled[:, known], colour[:, known])
    hole = filled[:, 24:40, 24:40]
    assert float(hole.min()) >= float(colour.min()) and float(hole.max()) <= float(colour.max())
    # Smooth inside the hole: neighbouring texels differ far less than the random colours do.
    assert float((hole[:, 1:] - hole[:, :-1]).abs().mean()) < 0.05
    constant = pull_push(torch.full((3, 32, 32), 0.25), (torch.rand(32, 32, generator=g) > 0.9).float())
    torch.testing.assert_close(constant, torch.full((3, 32, 32), 0.25))


@pytest.mark.parametrize("size", [200, 37])
def test_pull_push_fills_the_whole_map_from_one_corner_at_any_size(size):
    """Known texels only in one corner of a map whose side is no power of two: every texel is filled
    (the pyramid goes down to a single texel, not to the 2 x 2 that leaves the far quadrants empty)."""
    weight = torch.zeros(size, size)
    weight[: size // 5, -size // 5 :] = 1
    filled = pull_push(torch.full((1, size, size), 0.4), weight)
    torch.testing.assert_close(filled, torch.full((1, size, size), 0.4))


def test_uv_fragments_keep_the_nearest_of_overlapping_faces_in_either_order():
    """A layout that is a camera's view of a folded mesh: where two UV triangles overlap, the texel
    belongs to the face with the smaller corner depth, whichever is listed first."""
    near = torch.tensor([[0.1, 0.1], [0.9, 0.1], [0.1, 0.9]])
    far = torch.tensor([[0.2, 0.2], [0.95, 0.3], [0.3, 0.95]])
    for order in ((0, 1), (1, 0)):
        uvs = torch.stack([near, far])[list(order)]
        depth = torch.tensor([[1.0] * 3, [2.0] * 3])[list(order)]
        texels = uv_fragments(uvs, 32, depth)
        overlap = texels.pix_to_face[0, 16, 12]  # texel centre (0.39, 0.48): inside both triangles
        assert int(overlap) == order.index(0)
