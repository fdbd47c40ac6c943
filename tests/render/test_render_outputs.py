"""Topology, normals, shading and the outputs of ``render_mesh``; pytorch3d and CUDA when present."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from backend.render import (
    DirectionalLight,
    OrthographicCamera,
    antialias,
    build_edge_topology,
    contour_crossings,
    face_normals,
    lambertian_shading,
    rasterize,
    render_mesh,
    vertex_normals,
)
from backend.render.primitives import grid_faces, uv_sphere
from backend.render.shading import angle_weighted_vertex_normals

from .helpers import random_rotation


def test_edge_topology_of_closed_and_open_meshes() -> None:
    vertices, faces, _ = uv_sphere(32, 16)
    sphere = build_edge_topology(faces)
    assert sphere.edges.shape == (vertices.shape[0] + faces.shape[0] - 2, 2)  # Euler: V - E + F = 2
    assert (sphere.edge_faces >= 0).all()
    first, second = faces[sphere.edge_faces[:, 0]], faces[sphere.edge_faces[:, 1]]
    for side in (first, second):  # both faces really contain the edge
        assert ((side == sphere.edges[:, :1]).any(1) & (side == sphere.edges[:, 1:]).any(1)).all()
    grid = build_edge_topology(grid_faces(5, 7))
    assert (grid.edge_faces[:, 1] < 0).sum() == 2 * (4 + 6)


def test_normals_point_outwards_and_shading_is_a_plus_b_cosine() -> None:
    vertices, faces, _ = uv_sphere(32, 16)
    centres = vertices[faces].mean(dim=1)
    assert (face_normals(vertices[None], faces)[0] * centres).sum(-1).min() > 0.95
    assert (vertex_normals(vertices[None], faces)[0] * vertices).sum(-1).min() > 0.998
    normals = torch.tensor([[[[0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]]])
    light = DirectionalLight(torch.tensor([[0.0, 0.0, -2.0]]), ambient=0.2, diffuse=0.5)
    torch.testing.assert_close(lambertian_shading(normals, light), torch.tensor([[[[0.7], [0.2]]]]))
    behind = DirectionalLight(torch.tensor([[0.0, 0.0, 1.0]]), ambient=0.2, diffuse=0.5)
    torch.testing.assert_close(lambertian_shading(normals, behind), torch.tensor([[[[0.2], [0.2]]]]))


def test_angle_weighted_normals_do_not_depend_on_how_faces_are_split() -> None:
    """A cube's corner: three unit squares meeting at the origin, normals into the positive octant,
    one square split so that both of its triangles touch the corner, the others so that one does.
    Weighted by corner angle (Blender's smooth normals) each square counts 90 deg and the corner's
    normal is the diagonal; weighted by area, the square split at the corner counts double."""
    o, x, y, z = torch.eye(4, 3).roll(1, 0)  # origin and the three unit axes
    vertices = torch.stack([o, x, y, z, x + y, y + z, z + x])
    faces = torch.tensor([[0, 1, 4], [0, 4, 2],  # z = 0: both triangles at the corner, 45 deg each
                          [0, 2, 3], [2, 5, 3],  # x = 0: one triangle at the corner, 90 deg
                          [0, 3, 1], [3, 6, 1]])  # y = 0: likewise  # fmt: skip
    corner = angle_weighted_vertex_normals(vertices[None], faces)[0, 0]
    torch.testing.assert_close(corner, torch.full((3,), 3**-0.5))
    by_area = vertex_normals(vertices[None], faces)[0, 0]
    torch.testing.assert_close(by_area, torch.tensor([1.0, 1.0, 2.0]) / 6**0.5)


def test_render_mesh_outputs() -> None:
    vertices, faces, uvs = uv_sphere(32, 16)
    camera = OrthographicCamera(torch.eye(3)[None], 0.5, torch.tensor([[0.0, 0.0, 3.0]]))
    texture = torch.ones(1, 3, 8, 8) * torch.tensor([0.2, 0.4, 0.8])[:, None, None]
    light = DirectionalLight(torch.tensor([[0.0, 0.0, -1.0]]), ambient=0.25, diffuse=0.75)
    out = render_mesh(
        vertices[None], faces, camera, 32, texture=texture, uvs=uvs, light=light, background=1.0
    )
    centre = (0, 16, 16)  # NDC (1/32, -1/32): view point (1/32, 1/32, 3 - sqrt(0.25 - 2/32**2))
    surface = torch.tensor([1 / 32, 1 / 32, -((0.25 - 2 / 32**2) ** 0.5)])
    torch.testing.assert_close(out.normals[centre], surface / 0.5, atol=0.01, rtol=0)
    torch.testing.assert_close(
        out.rgb[centre], torch.tensor([0.2, 0.4, 0.8]), atol=0.01, rtol=0
    )  # lit head-on
    assert abs(out.depth[centre].item() - 2.5) < 0.01  # the sphere's front at z = 3 - 0.5
    assert out.depth[0, 0, 0] == 0 and (out.rgb[0, 0, 0] == 1).all() and out.alpha[0, 0, 0] == 0
    assert torch.equal(out.pix_to_face >= 0, out.mask)
    edge = (out.alpha > 0) & (out.alpha < 1)
    assert edge.sum() > 30 and torch.equal(out.alpha[~edge], out.mask[~edge].float())
    plain = render_mesh(vertices[None], faces, camera, 32, antialiased=False)
    assert torch.equal(plain.alpha, plain.mask.float()) and torch.equal(plain.mask, out.mask)
    with pytest.raises(ValueError, match="uvs"):
        render_mesh(vertices[None], faces, camera, 32, texture=texture)


def test_vertex_colours_are_interpolated() -> None:
    screen = torch.tensor([[[-1.0, -1.0, 1.0], [3.0, -1.0, 1.0], [-1.0, 3.0, 1.0]]])
    camera = OrthographicCamera(torch.diag(torch.tensor([1.0, -1.0, 1.0]))[None], 1.0, torch.zeros(1, 3))
    colours = torch.eye(3)
    out = render_mesh(screen, torch.tensor([[0, 1, 2]]), camera, 4, vertex_colors=colours, antialiased=False)
    ndc = (torch.arange(4) * 2 + 1 - 4) / 4
    expected_red = (ndc[None, :] + 1) / 4  # barycentric of vertex 1 grows with x
    torch.testing.assert_close(out.rgb[0, :, :, 1], expected_red.expand(4, 4))


@pytest.mark.skipif(
    importlib.util.find_spec("pytorch3d") is None,
    reason="pytorch3d is not importable (no Linux wheels or sdist on PyPI)",
)
def test_face_ids_and_depth_match_pytorch3d() -> None:
    from pytorch3d.renderer.mesh.rasterize_meshes import rasterize_meshes
    from pytorch3d.structures import Meshes

    vertices, faces, _ = uv_sphere(24, 12)
    camera = OrthographicCamera(torch.eye(3)[None], 0.7, torch.tensor([[0.1, 0.0, 2.0]]))
    screen = camera.project(vertices[None])
    ours = rasterize(screen, faces, 64)
    # pytorch3d's NDC x points left; its pixel centres are otherwise ours.
    flipped = screen * torch.tensor([-1.0, 1.0, 1.0])
    pix_to_face, zbuf, _, _ = rasterize_meshes(
        Meshes([flipped[0]], [faces]), 64, blur_radius=0.0, faces_per_pixel=1
    )
    agree = (pix_to_face[0, ..., 0] == ours.pix_to_face[0]).float().mean()
    assert agree > 0.999  # pixel centres exactly on shared edges may go either way
    both = ours.mask[0] & (pix_to_face[0, ..., 0] >= 0)
    torch.testing.assert_close(ours.depth[0][both], zbuf[0, ..., 0][both], atol=1e-4, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu() -> None:
    vertices, faces, uvs = uv_sphere(32, 16)
    texture = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    outputs = []
    for device in ("cpu", "cuda"):
        camera = OrthographicCamera(torch.eye(3, device=device)[None], 0.6, torch.zeros(1, 3, device=device))
        vertex_tensor = vertices.to(device)[None].requires_grad_(True)
        out = render_mesh(
            vertex_tensor, faces.to(device), camera, 64, texture=texture.to(device), uvs=uvs.to(device)
        )
        out.alpha.sum().backward()
        outputs.append((out.pix_to_face.cpu(), out.rgb.detach().cpu(), vertex_tensor.grad.cpu()))
    assert torch.equal(outputs[0][0], outputs[1][0])
    torch.testing.assert_close(outputs[0][1], outputs[1][1], atol=1e-4, rtol=0)
    torch.testing.assert_close(outputs[0][2], outputs[1][2], atol=1e-3, rtol=1e-3)


def test_per_item_textures_and_uvs_in_a_batch() -> None:
    """Compact sampling with one texture per item equals rendering each item on its own."""
    generator = torch.Generator().manual_seed(7)
    vertices, faces, uvs = uv_sphere(16, 8)
    batch = 3
    camera = OrthographicCamera(
        torch.eye(3).expand(batch, 3, 3), torch.tensor([0.5, 0.7, 0.9]), torch.zeros(batch, 3)
    )
    textures = torch.rand(batch, 3, 8, 8, generator=generator)
    batch_uvs = uvs.expand(batch, -1, -1, -1) * torch.tensor([1.0, 0.9, 0.8])[:, None, None, None]
    together = render_mesh(vertices.expand(batch, -1, -1), faces, camera, 24, texture=textures, uvs=batch_uvs)
    for item in range(batch):
        alone_camera = OrthographicCamera(
            torch.eye(3)[None], camera.scale[item : item + 1], torch.zeros(1, 3)
        )
        alone = render_mesh(
            vertices[None], faces, alone_camera, 24, texture=textures[item : item + 1], uvs=batch_uvs[item]
        )
        torch.testing.assert_close(together.rgb[item], alone.rgb[0])


def test_perspective_drops_faces_behind_the_near_plane() -> None:
    screen = torch.tensor([[[-0.5, -0.5, 1.0], [0.5, -0.5, 1.0], [0.0, 0.5, 1.0]]])
    faces = torch.tensor([[0, 1, 2]])
    assert rasterize(screen, faces, 16, perspective=True).mask.any()
    behind = screen * torch.tensor([1.0, 1.0, -1.0])
    assert not rasterize(behind, faces, 16, perspective=True).mask.any()
    assert rasterize(behind, faces, 16).mask.any()  # orthographic depth may be negative


def test_inputs_are_not_modified() -> None:
    """to_image and antialias write into fresh buffers, never into the caller's tensors."""
    vertices, faces, _ = uv_sphere(16, 8)
    camera = OrthographicCamera(torch.eye(3)[None], 0.6, torch.zeros(1, 3))
    background = torch.rand(1, 24, 24, 3, generator=torch.Generator().manual_seed(8))
    kept = background.clone()
    out = render_mesh(vertices[None], faces, camera, 24, background=background)
    assert torch.equal(background, kept) and not torch.equal(out.rgb, kept)
    image = out.rgb.detach().clone()
    crossings = contour_crossings(camera.project(vertices[None]), faces, build_edge_topology(faces), out.mask)
    blended = antialias(image, crossings)
    assert torch.equal(image, out.rgb.detach()) and not torch.equal(blended, image)


def test_off_screen_and_non_finite_meshes_render_empty_without_error() -> None:
    vertices, faces, uvs = uv_sphere(16, 8)
    camera = OrthographicCamera(torch.eye(3).expand(2, 3, 3), 0.5, torch.tensor([[9.0, 0.0, 0.0]] * 2))
    offsets = torch.zeros(2, *vertices.shape, requires_grad=True)
    out = render_mesh(vertices + offsets, faces, camera, 16, texture=torch.rand(2, 3, 4, 4), uvs=uvs)
    assert not out.mask.any() and (out.alpha == 0).all()
    (out.rgb.sum() + out.alpha.sum()).backward()
    assert torch.equal(offsets.grad, torch.zeros_like(offsets))
    broken = vertices.clone()
    broken[5] = float("nan")
    broken[6] = float("inf")
    centred = OrthographicCamera(torch.eye(3)[None], 0.5, torch.zeros(1, 3))
    out = render_mesh(broken[None], faces, centred, 16)
    touching = (faces == 5).any(1) | (faces == 6).any(1)
    assert out.mask.any() and not touching[out.pix_to_face[out.mask]].any()
    with pytest.raises(ValueError, match="B, V, 3"):
        rasterize(vertices, faces, 16)


def test_antialiased_alpha_matches_box_filtered_coverage() -> None:
    """alpha against the true pixel coverage (16 x 16 supersampled hard mask, averaged): the
    one-pixel blend is close to it at every edge pixel and keeps the total area."""
    vertices, faces, _ = uv_sphere(32, 33)
    rotation = random_rotation(torch.Generator().manual_seed(1))
    camera = OrthographicCamera(rotation, torch.tensor([0.6]), torch.tensor([[0.05, -0.03, 0.0]]))
    out = render_mesh(vertices[None], faces, camera, 64, topology=build_edge_topology(faces))
    fine = rasterize(camera.project(vertices[None]), faces, 64 * 16).mask.float()
    truth = torch.nn.functional.avg_pool2d(fine[:, None], 16)[:, 0]
    edge = (truth > 0) & (truth < 1)
    error = (out.alpha - truth).abs()
    hard_error = (out.mask.float() - truth).abs()
    assert edge.sum() > 100
    assert error[edge].mean() < 0.05 and error[edge].mean() < 0.25 * hard_error[edge].mean()
    assert error.max() < 0.25
    assert abs(out.alpha.sum() - truth.sum()) / truth.sum() < 1e-3
