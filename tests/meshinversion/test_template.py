"""The generated sphere templates reproduce the official counts, UV layout and displacement sampling."""

from __future__ import annotations

import math

import pytest
import torch

from backend.methods.meshinversion.generator import symmetrize_map
from backend.methods.meshinversion.template import (
    map_texel_uv,
    sample_map_at_uv,
    sphere_template,
    uv_to_sphere,
)


@pytest.mark.parametrize(
    ("rings", "n_vertices", "n_faces", "n_uvs", "n_negative", "n_zero"),
    [
        (16, 482, 960, 559, 225, 32),
        (31, 962, 1920, 1054, 450, 62),
    ],
)
def test_counts_match_official_obj(rings, n_vertices, n_faces, n_uvs, n_negative, n_zero) -> None:
    t = sphere_template(rings)
    assert t.vertices.shape == (n_vertices, 3) and t.faces.shape == (n_faces, 3)
    assert t.uvs.shape == (n_uvs, 2) and t.face_uvs.shape == (n_faces, 3)
    assert int((t.side < 0).sum()) == int((t.side > 0).sum()) == n_negative
    assert int((t.side == 0).sum()) == n_zero
    assert t.vertices.dtype == torch.float32
    assert torch.allclose(t.vertices.norm(dim=1), torch.ones(n_vertices))
    # Closed genus-0 surface: Euler characteristic 2, every edge shared by exactly two faces.
    assert n_vertices - len(t.edges) + n_faces == 2
    assert torch.unique(t.faces).numel() == n_vertices


@pytest.mark.parametrize("rings", [16, 31])
def test_faces_are_counter_clockwise_seen_from_outside(rings: int) -> None:
    t = sphere_template(rings)
    corners = t.vertices[t.faces]
    normals = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    assert ((normals * corners.mean(dim=1)).sum(dim=1) > 0).all()


@pytest.mark.parametrize("rings", [16, 31])
def test_uv_formula_seam_and_poles(rings: int) -> None:
    t = sphere_template(rings)
    xyz, uv = t.vertices[t.faces], t.corner_uvs
    pole = xyz[..., 1].abs() > 1 - 1e-6
    u = (0.25 + torch.atan2(xyz[..., 0], xyz[..., 2]) / (2 * math.pi)) % 1
    wrapped = (u - uv[..., 0]).abs()
    assert torch.minimum(wrapped, 1 - wrapped)[~pole].max() < 1e-6
    assert torch.allclose(uv[..., 1], 1 - torch.acos(xyz[..., 1].clamp(-1, 1)) / math.pi, atol=1e-6)
    # No face straddles the seam in UV space: faces next to it use u = 1, not u = 0.
    span = uv[..., 0].max(dim=1).values - uv[..., 0].min(dim=1).values
    assert span.max() <= 1 / 32 + 1e-6
    assert ((uv[..., 0] == 1) & ~pole).any()
    # Each pole has 32 UVs at u = (k + 1/2)/32.
    north = uv[pole & (xyz[..., 1] > 0)][:, 0].sort().values
    assert torch.allclose(north, (torch.arange(32) + 0.5) / 32)
    # Landmarks: front +z at u = 0.25, +x at 0.5, back -z at 0.75 (on the equator of the 16-ring sphere).
    if rings == 16:
        for point, expected_u in (((0, 0, 1), 0.25), ((1, 0, 0), 0.5), ((0, 0, -1), 0.75)):
            index = (t.vertices - torch.tensor(point, dtype=torch.float32)).norm(dim=1).argmin()
            assert t.vertex_uv[index].tolist() == pytest.approx([expected_u, 0.5])


def _cyclic(faces: torch.Tensor) -> set[tuple[int, ...]]:
    """Faces as winding-preserving keys: each rotated so its smallest index comes first."""
    keys = set()
    for face in faces.tolist():
        first = face.index(min(face))
        keys.add(tuple(face[first:] + face[:first]))
    return keys


@pytest.mark.parametrize("rings", [16, 31])
def test_triangulation_is_mirror_symmetric_like_the_official_obj(rings: int) -> None:
    """Facts of the official Blender-made templates: every quad of the x >= 0 half is split along the
    diagonal from (ring r, segment k) to (ring r + 1, segment k + 1), and the whole triangulation is
    its own mirror image (a mirrored face, wound the other way, is again a face of the template)."""
    t = sphere_template(rings)
    faces = _cyclic(t.faces)
    mirrored = t.mirror[t.faces][:, [0, 2, 1]]
    assert _cyclic(mirrored) == faces
    assert len(t.grid_edges) == (rings - 1) * 32 + rings * 32  # ring edges + meridian edges
    ring = lambda r, k: 1 + (r - 1) * 32 + k % 32  # noqa: E731
    for r in range(1, rings - 1):
        for k in range(8, 24):  # quads between the +z (k = 8) and -z (k = 24) meridians: x >= 0
            a, b, c, d = ring(r, k), ring(r, k + 1), ring(r + 1, k), ring(r + 1, k + 1)
            assert _cyclic(torch.tensor([[a, c, d], [a, d, b]])) <= faces
    # Every non-pole corner carries its own vertex's UV (u = 1 on the seam is u = 0).
    pole = t.vertices[t.faces][..., 1].abs() > 1 - 1e-6
    assert torch.allclose((t.corner_uvs % 1)[~pole], t.vertex_uv[t.faces][~pole])


def test_mirror_pairs() -> None:
    t = sphere_template(16)
    assert torch.equal(t.vertices[t.mirror] * torch.tensor([-1.0, 1, 1]), t.vertices)
    assert torch.equal(t.mirror[t.mirror], torch.arange(482))
    assert (t.vertices[t.side == 0, 0] == 0).all()


def test_zero_and_constant_normal_displacement() -> None:
    t = sphere_template(16)
    zero = torch.zeros(2, 3, 32, 32)
    assert torch.equal(t.displace(zero), t.vertices.expand(2, -1, -1))
    inflate = torch.zeros(1, 3, 32, 32)
    inflate[:, 0] = 0.25
    assert torch.allclose(t.displace(inflate)[0], 1.25 * t.vertices, atol=1e-6)


def test_offsets_follow_normal_tangent_bitangent() -> None:
    """Hand-worked frames on the equator: front (0,0,1) has t = -x, b = -y; +x side has t = +z, b = -y."""
    t = sphere_template(16)
    disp = torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1).expand(1, 3, 32, 32)
    moved = t.displace(disp)[0]

    def at(point: tuple[float, float, float]) -> list[float]:
        return moved[(t.vertices - torch.tensor(point)).norm(dim=1).argmin()].tolist()

    assert at((0.0, 0.0, 1.0)) == pytest.approx([0.0, -0.3, 1.1], abs=1e-6)  # x offset cancelled on the plane
    assert at((1.0, 0.0, 0.0)) == pytest.approx([1.1, -0.3, 0.2], abs=1e-6)
    assert at((-1.0, 0.0, 0.0)) == pytest.approx([-1.1, -0.3, 0.2], abs=1e-6)
    assert at((0.0, 1.0, 0.0)) == pytest.approx([0.0, 1.1, 0.0], abs=1e-6)  # poles: normal only


def test_sampling_convention_columns_rows_and_seam() -> None:
    columns = torch.arange(32.0).view(1, 1, 1, 32).expand(1, 1, 32, 32)
    rows = torch.arange(32.0).view(1, 1, 32, 1).expand(1, 1, 32, 32)
    uv = torch.tensor([[8 / 32, 0.5], [20 / 32, 1 - 3 / 16], [0.0, 0.5], [0.5, 1.0], [0.5, 0.0]])
    col = sample_map_at_uv(columns, uv)[0, :, 0]
    assert col[:2].tolist() == pytest.approx([7.5, 19.5])  # column 32u - 1/2: pixel centres
    assert col[2].item() == pytest.approx((31 + 0) / 2)  # u = 0 wraps across the seam
    row = sample_map_at_uv(rows, uv)[0, :, 0]
    assert row.tolist() == pytest.approx([15.5, 3 / 16 * 31, 15.5, 0, 31], abs=1e-5)
    # Non-symmetric mode: column 32u, the first column repeated after the last.
    plain = sample_map_at_uv(columns, torch.tensor([[8 / 32, 0.5], [31.5 / 32, 0.5]]), symmetric=False)
    assert plain[0, :, 0].tolist() == pytest.approx([8.0, 15.5])


def test_texel_uv_is_the_inverse_of_sampling() -> None:
    g = torch.Generator().manual_seed(1)
    uv_map = torch.randn(2, 3, 32, 32, generator=g)
    texels = map_texel_uv(32, 32)
    assert texels.shape == (32, 32, 2)
    samples = sample_map_at_uv(uv_map, texels.reshape(-1, 2))
    assert torch.allclose(samples, uv_map.flatten(2).transpose(1, 2), atol=1e-5)
    points = uv_to_sphere(texels)
    assert torch.allclose(points.norm(dim=-1), torch.ones(32, 32), atol=1e-6)
    assert points[0].sub(torch.tensor([0.0, 1, 0])).abs().max() < 1e-6  # row 0 is the north pole


def test_displacement_is_mirror_symmetric_for_any_map() -> None:
    t = sphere_template(16)
    g = torch.Generator().manual_seed(2)
    disp = symmetrize_map(torch.randn(3, 3, 32, 16, generator=g) * 0.2)
    for d in (disp, torch.randn(3, 3, 32, 32, generator=g) * 0.2):
        moved = t.displace(d)
        assert torch.allclose(moved[:, t.mirror] * torch.tensor([-1.0, 1, 1]), moved, atol=1e-6)
        assert (moved[:, t.side == 0, 0] == 0).all()
    # Asymmetric mode keeps asymmetry.
    moved = t.displace(torch.randn(1, 3, 32, 32, generator=g) * 0.2, symmetric=False)
    assert not torch.allclose(moved[:, t.mirror] * torch.tensor([-1.0, 1, 1]), moved, atol=1e-3)


def test_displacement_is_differentiable_and_follows_device_and_batch() -> None:
    t = sphere_template(31)
    disp = torch.zeros(4, 3, 32, 32, requires_grad=True)
    moved = t.displace(disp)
    assert moved.shape == (4, 962, 3)
    moved[:, :, 1].sum().backward()
    assert disp.grad is not None and disp.grad.abs().sum() > 0


def test_fill_poles_flattens_a_spike_and_a_dimple_and_leaves_the_rest():
    template = sphere_template(16)
    flat = template.vertices.clone()
    flat[:, 1] = flat[:, 1].clamp(-0.8, 0.8)  # a box-like top and bottom: flat caps
    bumpy = flat.clone()
    bumpy[0, 1] += 0.2  # a spike at the north pole
    bumpy[1:33, 1] -= 0.05  # and a dimple ring around it
    bumpy[-1, 1] -= 0.2  # a spike at the south pole
    filled = template.fill_poles(bumpy[None], rings=1)[0]
    cap = torch.zeros(len(flat), dtype=torch.bool)
    cap[:33], cap[-33:] = True, True
    torch.testing.assert_close(filled[~cap], bumpy[~cap])
    torch.testing.assert_close(filled[cap][:, 1].abs(), torch.full((66,), 0.8), atol=1e-3, rtol=0)
    assert float(filled[0, [0, 2]].norm()) < 1e-4  # the pole stays on the axis


def test_fill_poles_keeps_a_symmetric_mesh_exactly_symmetric():
    template = sphere_template(16)
    g = torch.Generator().manual_seed(0)
    bumpy = template.vertices * (1 + 0.1 * torch.rand(len(template.vertices), 1, generator=g))
    bumpy = (bumpy + bumpy[template.mirror] * torch.tensor([-1.0, 1.0, 1.0])) / 2  # symmetric, not smooth
    filled = template.fill_poles(bumpy[None], rings=2)[0]
    flip = torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(filled[template.mirror] * flip, filled, atol=1e-6, rtol=0)
    on_plane = template.side == 0
    assert float(filled[on_plane, 0].abs().max()) < 1e-6
