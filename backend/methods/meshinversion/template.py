"""The ConvMesh/MeshInversion UV-sphere template and the displacement map -> vertices mapping.

Geometry (built in code; equal in counts and UV layout to the official Blender ``.obj`` files):
a unit sphere with the poles on +-y, ``rings`` latitude bands and 32 segments. Vertex order here:
0 = north pole (0, 1, 0); then ring r = 1..rings-1 (polar angle theta = pi r / rings), segment
k = 0..31 at index 1 + 32 (r - 1) + k; last = south pole. 16 rings: 482 vertices, 960 faces,
559 UVs; 31 rings (Pascal3D cars): 962 vertices, 1,920 faces, 1,054 UVs. Faces are wound
counter-clockwise seen from outside, and each quad band is split along mirror-image diagonals on
the two halves (as in the official files). Vertices are welded; UVs have their own indices because the
seam (on -x) and the poles need several UVs per vertex.

UV layout (official): u = (0.25 + atan2(x, z) / 2 pi) mod 1 and v = 1 - theta / pi, so u = 0.25 is
the front (+z), 0.5 is +x, 0.75 the back (-z) and the seam u = 0 == 1 lies on -x. Segment k sits
at u = k/32; each pole has 32 UVs at u = (k + 0.5)/32. The mirror x -> -x is u -> 0.5 - u.

Displacement map (B, 3, H, W), usually 32x32, row 0 = north pole: channel 0 moves a vertex along
its normal, 1 along its tangent t = normalize(n x y_up) and 2 along its bitangent n x t (the poles
have no tangents). A vertex with UV (u, v) reads column W u - 1/2 (pixel centres, wrapping across
the seam) and row (1 - v)(H - 1) (the poles land exactly on the first and last rows), bilinearly.
In symmetric mode only the x >= 0 half is sampled and mirrored onto the x < 0 half, so the result is
exactly symmetric even for a map that is not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import torch
import torch.nn.functional as F

SEGMENTS = 32


@dataclass(frozen=True)
class SphereTemplate:
    """Template tensors (CPU, float32/int64); ``displace`` uses per-device copies made on first use."""

    rings: int
    vertices: torch.Tensor
    """(V, 3) unit-sphere positions."""
    faces: torch.Tensor
    """(F, 3) vertex indices, counter-clockwise seen from outside."""
    uvs: torch.Tensor
    """(U, 2) texture coordinates, v up."""
    face_uvs: torch.Tensor
    """(F, 3) indices into ``uvs`` per face corner."""
    vertex_uv: torch.Tensor
    """(V, 2) where each vertex samples the displacement map (poles at u = 0.5, seam at u = 0)."""
    frames: torch.Tensor
    """(V, 3, 3) rows normal, tangent, bitangent (tangent and bitangent zero at the poles)."""
    mirror: torch.Tensor
    """(V,) index of each vertex's mirror image under x -> -x."""
    side: torch.Tensor
    """(V,) sign of x: -1, 0 (on the symmetry plane) or +1."""
    device_tables: dict[str, DisplacementTables] = field(default_factory=dict, compare=False, repr=False)

    @property
    def corner_uvs(self) -> torch.Tensor:
        """(F, 3, 2) UV per face corner, as ``MeshResult`` wants them."""
        return self.uvs[self.face_uvs]

    @property
    def edges(self) -> torch.Tensor:
        """(E, 2) unique undirected edges, smaller index first."""
        pairs = self.faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)
        return torch.unique(pairs.sort(dim=1).values, dim=0)

    @property
    def grid_edges(self) -> torch.Tensor:
        """(E, 2) the edges along rings and meridians, without the quads' diagonals: a graph with the
        sphere's rotational symmetry about its axis, whichever way the quads are split."""
        edges = self.edges
        inner = (edges > 0) & (edges < len(self.vertices) - 1)
        ring, seg = (edges - 1) // SEGMENTS, (edges - 1) % SEGMENTS
        diagonal = inner.all(dim=1) & (ring[:, 0] != ring[:, 1]) & (seg[:, 0] != seg[:, 1])
        return edges[~diagonal]

    def fill_poles(
        self, vertices: torch.Tensor, rings: int = 1, iterations: int = 30, symmetric: bool = True
    ) -> torch.Tensor:
        """(B, V, 3) vertices with each pole and its first ``rings`` rings replaced by a smooth cap
        spanning the next ring (uniform-Laplacian relaxation, the rest fixed).

        A pole vertex reads a single texel of the displacement map and has no tangent frame, and its
        ring reads the map's first rows through frames that turn fully around it: a generator that
        has not learnt those rows well leaves a dimple or spike there (on a car, the roof). The
        relaxation runs on the ring-and-meridian grid (``grid_edges``): the triangles' diagonals
        change direction at the symmetry plane, and their uneven valences would pull the cap
        forwards or backwards. ``symmetric`` averages the cap with its mirror image, which keeps a
        mirror-symmetric mesh exactly symmetric (vertices on the plane stay at x = 0).
        """
        edges = torch.cat((self.grid_edges, self.grid_edges.flip(1))).to(vertices.device)
        count = vertices.shape[1]
        degree = torch.zeros(count, device=vertices.device).index_add(0, edges[:, 0], torch.ones(len(edges),
                                                                      device=vertices.device))  # fmt: skip
        cap = torch.zeros(count, dtype=torch.bool, device=vertices.device)
        cap[: 1 + rings * SEGMENTS] = True
        cap[count - 1 - rings * SEGMENTS :] = True
        filled = vertices
        for _ in range(iterations):
            neighbours = torch.zeros_like(filled).index_add(1, edges[:, 0], filled[:, edges[:, 1]])
            filled = torch.where(cap[None, :, None], neighbours / degree[None, :, None], vertices)
        if symmetric:
            flip = filled.new_tensor([-1.0, 1.0, 1.0])
            mirrored = (filled[:, self.mirror.to(filled.device)] * flip + filled) / 2
            filled = torch.where(cap[None, :, None], mirrored, vertices)
        return filled

    def on_device(self, device: torch.device) -> DisplacementTables:
        """The tensors ``displace`` needs, on ``device`` (copied once per device, then reused)."""
        key = str(device)
        if key not in self.device_tables:
            source = torch.where(self.side < 0, self.mirror, torch.arange(len(self.mirror)))
            ones = torch.ones(len(self.side))
            self.device_tables[key] = DisplacementTables(
                vertices=self.vertices.to(device),
                vertex_uv=self.vertex_uv.to(device),
                frames=self.frames.to(device),
                source_uv=self.vertex_uv[source].to(device),
                source_frames=self.frames[source].to(device),
                mirror_sign=torch.stack((self.side.float(), ones, ones), dim=-1).to(device),
            )
        return self.device_tables[key]

    def displace(self, displacement: torch.Tensor, symmetric: bool = True) -> torch.Tensor:
        """(B, 3, H, W) displacement map -> (B, V, 3) vertex positions in object space."""
        tables = self.on_device(displacement.device)
        if symmetric:
            # Every vertex reads its x >= 0 twin's offsets; mirrored ones flip x, those on the plane zero it.
            local = sample_map_at_uv(displacement, tables.source_uv, symmetric=True)
            offsets = torch.einsum("bvc,vcd->bvd", local, tables.source_frames) * tables.mirror_sign
        else:
            local = sample_map_at_uv(displacement, tables.vertex_uv, symmetric=False)
            offsets = torch.einsum("bvc,vcd->bvd", local, tables.frames)
        return tables.vertices + offsets


@dataclass(frozen=True)
class DisplacementTables:
    """Per-device copies for ``SphereTemplate.displace``: ``source_*`` are each vertex's x >= 0 twin's
    UV and frame, ``mirror_sign`` (V, 3) is (sign of x, 1, 1)."""

    vertices: torch.Tensor
    vertex_uv: torch.Tensor
    frames: torch.Tensor
    source_uv: torch.Tensor
    source_frames: torch.Tensor
    mirror_sign: torch.Tensor


def sample_map_at_uv(uv_map: torch.Tensor, uv: torch.Tensor, symmetric: bool = True) -> torch.Tensor:
    """Bilinear samples (B, N, C) of a (B, C, H, W) UV map at (N, 2) coordinates, as the official code does.

    Symmetric mode pads one column circularly on each side and rescales x by W / (W + 1) with
    ``align_corners=True``: column W u - 1/2 of the unpadded map, wrapping across the seam. The
    non-symmetric mode appends the first column on the right and reads column W u (official quirk).
    Rows always use ``align_corners=True``: row (1 - v)(H - 1).
    """
    width = uv_map.shape[-1]
    x = uv[:, 0] * 2 - 1
    if symmetric:
        padded = torch.cat((uv_map[..., -1:], uv_map, uv_map[..., :1]), dim=-1)
        x = x * width / (width + 1)
    else:
        padded = torch.cat((uv_map, uv_map[..., :1]), dim=-1)
    grid = torch.stack((x, 1 - uv[:, 1] * 2), dim=-1).to(uv_map.dtype)
    grid = grid[None, :, None].expand(uv_map.shape[0], -1, -1, -1)
    samples = F.grid_sample(padded, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return samples[..., 0].transpose(1, 2)


def map_texel_uv(height: int, width: int) -> torch.Tensor:
    """(H, W, 2) the (u, v) that each texel of a displacement map stands for (inverse of the sampling).

    Column j is u = (j + 1/2) / W, row i is v = 1 - i / (H - 1). Useful to write ground-truth maps:
    evaluate a shape at ``uv_to_sphere(map_texel_uv(32, 32))`` and store the offsets per texel.
    """
    u = (torch.arange(width, dtype=torch.float32) + 0.5) / width
    v = 1 - torch.arange(height, dtype=torch.float32) / (height - 1)
    return torch.stack(torch.meshgrid(u, v, indexing="xy"), dim=-1)


def uv_to_sphere(uv: torch.Tensor) -> torch.Tensor:
    """(..., 2) UV -> (..., 3) point on the unit template sphere (the inverse of the UV formula)."""
    theta = (1 - uv[..., 1]) * math.pi
    phi = (uv[..., 0] - 0.25) * 2 * math.pi
    sin_theta = torch.sin(theta)
    return torch.stack((sin_theta * torch.sin(phi), torch.cos(theta), sin_theta * torch.cos(phi)), dim=-1)


def tangent_frames(vertices: torch.Tensor, poles: torch.Tensor) -> torch.Tensor:
    """(V, 3, 3) rows n, t = normalize(n x up), b = n x t; t and b are zero at the poles (official)."""
    normals = F.normalize(vertices, dim=1)
    up = torch.tensor([0.0, 1.0, 0.0]).expand_as(normals)
    tangents = F.normalize(torch.linalg.cross(normals, up), dim=1)
    tangents[poles] = 0
    bitangents = torch.linalg.cross(normals, tangents)
    return torch.stack((normals, tangents, bitangents), dim=1)


def quad_pairs(rings: int, segments: int) -> torch.Tensor:
    """(Q, 2) the two triangles of each quad band cell of a UV sphere whose faces are laid out as
    here and in ``dense.py``: the north fan, every cell's first triangle, every cell's second
    triangle, the south fan (the ``quads`` option's polygons)."""
    cells = torch.arange((rings - 2) * segments)
    return torch.stack((segments + cells, segments + len(cells) + cells), dim=1)


@lru_cache(maxsize=4)
def sphere_template(rings: int = 16) -> SphereTemplate:
    """Build the ``rings``-ring, 32-segment UV sphere template (16 for CUB, 31 for cars)."""
    if rings < 3:
        raise ValueError(f"a UV sphere needs at least 3 rings, got {rings}")
    inner = rings - 1
    n_vertices = inner * SEGMENTS + 2
    south = n_vertices - 1
    k = torch.arange(SEGMENTS)
    r = torch.arange(1, rings)

    theta = r.double() * math.pi / rings
    phi = k.double() * 2 * math.pi / SEGMENTS - math.pi / 2
    ring_xyz = torch.stack(
        (
            torch.sin(theta)[:, None] * torch.sin(phi)[None],
            torch.cos(theta)[:, None].expand(-1, SEGMENTS),
            torch.sin(theta)[:, None] * torch.cos(phi)[None],
        ),
        dim=-1,
    )
    # Segments 8 and 24 lie on the symmetry plane; make x exactly zero there.
    ring_xyz[:, [SEGMENTS // 4, 3 * SEGMENTS // 4], 0] = 0
    vertices = torch.cat(
        (
            torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64),
            ring_xyz.reshape(-1, 3),
            torch.tensor([[0.0, -1.0, 0.0]], dtype=torch.float64),
        )
    ).float()

    def ring_vertex(ring: torch.Tensor | int, seg: torch.Tensor) -> torch.Tensor:
        return 1 + (torch.as_tensor(ring) - 1) * SEGMENTS + seg % SEGMENTS

    # UVs: 32 north-pole UVs, then (rings - 1) rows of 33 (the seam column repeated at u = 1), then 32 south.
    pole_u = (k.float() + 0.5) / SEGMENTS
    row_u = torch.arange(SEGMENTS + 1).float() / SEGMENTS
    row_v = 1 - r.float() / rings
    ring_uvs = torch.stack(torch.meshgrid(row_u, row_v, indexing="xy"), dim=-1).reshape(-1, 2)
    north_pole_uvs = torch.stack((pole_u, torch.ones(SEGMENTS)), -1)
    south_pole_uvs = torch.stack((pole_u, torch.zeros(SEGMENTS)), -1)
    uvs = torch.cat((north_pole_uvs, ring_uvs, south_pole_uvs))
    south_uv0 = SEGMENTS + inner * (SEGMENTS + 1)

    def ring_uv(ring: torch.Tensor | int, col: torch.Tensor) -> torch.Tensor:
        return SEGMENTS + (torch.as_tensor(ring) - 1) * (SEGMENTS + 1) + col

    north_faces = torch.stack((torch.zeros_like(k), ring_vertex(1, k), ring_vertex(1, k + 1)), -1)
    north_uvs = torch.stack((k, ring_uv(1, k), ring_uv(1, k + 1)), -1)
    south_pole = torch.full_like(k, south)
    south_faces = torch.stack((south_pole, ring_vertex(inner, k + 1), ring_vertex(inner, k)), -1)
    south_uvs = torch.stack((south_uv0 + k, ring_uv(inner, k + 1), ring_uv(inner, k)), -1)
    band, seg = torch.meshgrid(torch.arange(1, inner), k, indexing="ij")
    band, seg = band.reshape(-1), seg.reshape(-1)
    a, b = ring_vertex(band, seg), ring_vertex(band, seg + 1)
    c, d = ring_vertex(band + 1, seg), ring_vertex(band + 1, seg + 1)
    ua, ub = ring_uv(band, seg), ring_uv(band, seg + 1)
    uc, ud = ring_uv(band + 1, seg), ring_uv(band + 1, seg + 1)
    # Official diagonals: a-d on the x >= 0 half, its mirror image b-c on the x < 0 half (segments
    # 24..31 and 0..7), so the triangulation is mirror-symmetric like the Blender-made .obj files.
    negative = ((seg + SEGMENTS // 4) % SEGMENTS < SEGMENTS // 2)[:, None]
    quad_faces = torch.cat(
        (
            torch.where(negative, torch.stack((a, c, b), -1), torch.stack((a, c, d), -1)),
            torch.where(negative, torch.stack((b, c, d), -1), torch.stack((a, d, b), -1)),
        )
    )
    quad_uvs = torch.cat(
        (
            torch.where(negative, torch.stack((ua, uc, ub), -1), torch.stack((ua, uc, ud), -1)),
            torch.where(negative, torch.stack((ub, uc, ud), -1), torch.stack((ua, ud, ub), -1)),
        )
    )
    faces = torch.cat((north_faces, quad_faces, south_faces))
    face_uvs = torch.cat((north_uvs, quad_uvs, south_uvs))

    # Where each vertex samples the displacement map: the mean of its corner UVs, u = 1 wrapped to 0.
    vertex_uv = torch.cat(
        (
            torch.tensor([[0.5, 1.0]]),
            torch.stack(torch.meshgrid(k.float() / SEGMENTS, row_v, indexing="xy"), -1).reshape(-1, 2),
            torch.tensor([[0.5, 0.0]]),
        )
    )
    mirror_seg = ring_vertex(r[:, None], (SEGMENTS // 2 - k)[None]).reshape(-1)
    mirror = torch.cat((torch.tensor([0]), mirror_seg, torch.tensor([south])))
    side = torch.sign(vertices[:, 0]).long()
    return SphereTemplate(
        rings=rings,
        vertices=vertices,
        faces=faces,
        uvs=uvs,
        face_uvs=face_uvs,
        vertex_uv=vertex_uv,
        frames=tangent_frames(vertices, torch.tensor([0, south])),
        mirror=mirror,
        side=side,
    )
