"""A denser export of an inverted shape: the final coarse mesh resampled on a finer UV sphere.

The optimisation runs on the coarse (official) template; only the exported mesh gets the density a
user asks for with ``faces``. Its vertices come from the final coarse vertices (after the pole fill
and the refinement's residual, which live on the vertices and not in the displacement map), treated
as a function on the (ring, segment) grid, periodic in the segment: O(N) and no iterative relaxation
on the dense mesh (a pole-cap relaxation there costs tens of seconds at 200k faces).

Two surfaces through the coarse vertices, blended by ``smoothing`` (``Options.faces_smoothing``):
0 is the fitted mesh itself, each dense vertex placed on the coarse triangle that covers it in UV;
1 is a separable Catmull-Rom spline of the vertices' offsets from the unit template sphere (C1,
through every coarse vertex; the unit sphere is evaluated exactly; across a pole a meridian
continues on the opposite one). The photo was fitted with the coarse facets, not with a surface
through their corners: where the shape is convex the spline bulges past the fitted outline, and
the input-view IoU drops by 1-3 % (benchmarks/FACES.md), while the facets keep it. Hence the
default 0, with the dense grid a refinement of the coarse one where the count allows (every coarse
edge then lies on dense edges, so no crease is cut), and the spline for those who want a round
surface to sculpt on.

The dense sphere uses the template's UV convention (u = (0.25 + atan2(x, z) / 2 pi) mod 1, seam on
-x, v = 1 - theta / pi, pole UVs at segment centres), so the result's texture maps unchanged, and it
is mirror-symmetric from the start: its quads on the x < 0 half are split along the mirror image of
the x > 0 half's diagonal, and for symmetric models the x < 0 vertices are set to the mirror image
of the x > 0 ones (the plane's to x = 0), so the add-on's Mirror-modifier import stays exact. A
template whose quads use one diagonal on both halves is not a symmetric surface: the x < 0 half then
follows the mirror image of the x > 0 facets, as a template with mirror-image diagonals would be.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch

from backend.methods.meshinversion.template import SphereTemplate


@dataclass(frozen=True)
class DenseSphere:
    """A UV sphere with ``rings`` bands and ``segments`` segments (a multiple of 4: the symmetry
    plane holds vertex columns). Vertex and face order as the template's: north pole, rings, south
    pole; the north fan, each band cell's first triangle, each one's second, the south fan
    (``template.quad_pairs``)."""

    rings: int
    segments: int
    vertices: torch.Tensor
    """(V, 3) unit-sphere positions, float64."""
    faces: torch.Tensor
    """(F, 3) int64, counter-clockwise seen from outside."""
    corner_uvs: torch.Tensor
    """(F, 3, 2) template-convention UVs per face corner."""
    mirror: torch.Tensor
    """(V,) index of each vertex's mirror image under x -> -x."""
    side: torch.Tensor
    """(V,) -1, 0 or +1: the sign of x (0 on the plane and at the poles)."""


ALIGNED_TOLERANCE = 0.05
"""A refinement of the coarse grid is used when its face count is within this fraction of the request."""


def sphere_size(faces: int, coarse_rings: int = 16, coarse_segments: int = 32) -> tuple[int, int]:
    """(rings, segments) of the dense sphere for about ``faces`` triangles (2 S (R - 1)).

    Preferably a refinement of the coarse grid (R = p rings, S = q segments per coarse cell, cells
    no more than twice as long as wide relative to the coarse ones) within ``ALIGNED_TOLERANCE``;
    otherwise the closest grid with cells about square at the equator (R about S / 2) and S a
    multiple of 4 (the symmetry plane holds vertex columns).
    """
    best: tuple[float, int, int] | None = None
    for p in range(1, 64):
        for q in range(max(1, (p + 1) // 2), 2 * p + 1):
            count = 2 * q * coarse_segments * (p * coarse_rings - 1)
            error = abs(count - faces) / faces
            if error <= ALIGNED_TOLERANCE and (best is None or error < best[0]):
                best = (error, p * coarse_rings, q * coarse_segments)
    if best is not None:
        return best[1], best[2]
    segments = max(8, 4 * round(math.sqrt(faces) / 4))
    rings = max(3, round(faces / (2 * segments)) + 1)
    return rings, segments


@lru_cache(maxsize=2)
def dense_sphere(rings: int, segments: int) -> DenseSphere:
    """Build the sphere (cached: a batch exports every image at the same density)."""
    if segments % 4 or rings < 3:
        raise ValueError(
            f"a dense sphere needs segments divisible by 4 and >= 3 rings, got {rings}, {segments}"
        )
    inner, k = rings - 1, torch.arange(segments)
    r = torch.arange(1, rings)
    theta = r.double()[:, None] * math.pi / rings
    phi = k.double()[None] * 2 * math.pi / segments - math.pi / 2
    ring_xyz = torch.stack(
        (
            torch.sin(theta) * torch.sin(phi),
            torch.cos(theta).expand(-1, segments),
            torch.sin(theta) * torch.cos(phi),
        ),
        dim=-1,
    )
    plane = [segments // 4, 3 * segments // 4]
    ring_xyz[:, plane, 0] = 0
    poles = torch.tensor([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]], dtype=torch.float64)
    vertices = torch.cat((poles[:1], ring_xyz.reshape(-1, 3), poles[1:]))
    south = len(vertices) - 1

    def vertex(ring: torch.Tensor | int, seg: torch.Tensor) -> torch.Tensor:
        return 1 + (torch.as_tensor(ring) - 1) * segments + seg % segments

    pole_u = (k.double() + 0.5) / segments
    row_u = torch.arange(segments + 1).double() / segments
    row_v = 1 - r.double() / rings

    def ring_uv(ring: torch.Tensor | int, col: torch.Tensor) -> torch.Tensor:
        v = row_v[torch.as_tensor(ring) - 1].expand_as(col)
        return torch.stack((row_u[col], v), dim=-1)

    north = torch.stack((torch.zeros_like(k), vertex(1, k), vertex(1, k + 1)), -1)
    north_uv = torch.stack(
        (torch.stack((pole_u, torch.ones_like(pole_u)), -1), ring_uv(1, k), ring_uv(1, k + 1)), 1
    )
    south_faces = torch.stack((torch.full_like(k, south), vertex(inner, k + 1), vertex(inner, k)), -1)
    south_uv = torch.stack(
        (torch.stack((pole_u, torch.zeros_like(pole_u)), -1), ring_uv(inner, k + 1), ring_uv(inner, k)), 1
    )
    band, seg = (t.reshape(-1) for t in torch.meshgrid(torch.arange(1, inner), k, indexing="ij"))
    corners = [(band, seg), (band, seg + 1), (band + 1, seg), (band + 1, seg + 1)]  # a, b, c, d
    ids = [vertex(b, s) for b, s in corners]
    uvs = [ring_uv(b, s) for b, s in corners]
    # x > 0 quads (segments S/4 .. 3S/4 - 1) split along a-d, their mirror images on x < 0 along b-c.
    positive = ((seg >= segments // 4) & (seg < 3 * segments // 4))[:, None]
    a_c_d, a_d_b = (0, 2, 3), (0, 3, 1)
    a_c_b, b_c_d = (0, 2, 1), (1, 2, 3)
    tri1 = torch.where(positive, _pick(ids, a_c_d), _pick(ids, a_c_b))
    tri2 = torch.where(positive, _pick(ids, a_d_b), _pick(ids, b_c_d))
    uv1 = torch.where(positive[..., None], _pick(uvs, a_c_d), _pick(uvs, a_c_b))
    uv2 = torch.where(positive[..., None], _pick(uvs, a_d_b), _pick(uvs, b_c_d))
    faces = torch.cat((north, tri1, tri2, south_faces))
    corner_uvs = torch.cat((north_uv, uv1, uv2, south_uv)).float()
    mirror_ring = vertex(r[:, None], (segments // 2 - k)[None]).reshape(-1)
    mirror = torch.cat((torch.tensor([0]), mirror_ring, torch.tensor([south])))
    side = torch.sign(vertices[:, 0]).long()
    return DenseSphere(rings, segments, vertices, faces, corner_uvs, mirror, side)


def _pick(items: list[torch.Tensor], order: tuple[int, int, int]) -> torch.Tensor:
    return torch.stack([items[i] for i in order], dim=1)


def catmull_rom(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer cell ``floor(t)`` and the (N, 4) Catmull-Rom weights of its neighbours -1, 0, 1, 2."""
    cell = t.floor()
    f = t - cell
    f2, f3 = f * f, f * f * f
    weights = torch.stack(
        ((-f3 + 2 * f2 - f) / 2, (3 * f3 - 5 * f2 + 2) / 2, (-3 * f3 + 4 * f2 + f) / 2, (f3 - f2) / 2), dim=-1
    )
    return cell.long(), weights


def upsample(
    coarse: SphereTemplate,
    vertices: torch.Tensor,
    dense: DenseSphere,
    symmetric: bool,
    smoothing: float = 0.0,
) -> torch.Tensor:
    """(V', 3) float64 vertices of ``dense`` from the final (V, 3) vertices on ``coarse``: the coarse
    facets (``smoothing`` 0), the Catmull-Rom surface (1) or a blend."""
    points = vertices.double().cpu()
    ring_t = torch.arange(1, dense.rings, dtype=torch.float64) * coarse.rings / dense.rings
    seg_t = torch.arange(dense.segments, dtype=torch.float64) * _segments(coarse) / dense.segments
    result = facets(coarse, points, ring_t, seg_t)
    if smoothing > 0:
        result = result + smoothing * (spline(coarse, points, dense, ring_t, seg_t) - result)
    if symmetric:
        mirrored = result[dense.mirror] * result.new_tensor([-1.0, 1.0, 1.0])
        result = torch.where((dense.side < 0)[:, None], mirrored, result)
        result[dense.side == 0, 0] = 0
    return result


def _segments(coarse: SphereTemplate) -> int:
    return (coarse.vertices.shape[0] - 2) // (coarse.rings - 1)


def facets(
    coarse: SphereTemplate, points: torch.Tensor, ring_t: torch.Tensor, seg_t: torch.Tensor
) -> torch.Tensor:
    """(V', 3) dense vertices on the coarse mesh's own triangles: the point at (ring ``ring_t``,
    segment ``seg_t``) in grid units, linear on the coarse triangle covering it in UV (each coarse
    quad split along the diagonal its faces use; the pole cells are fans)."""
    segments, rings, count = _segments(coarse), coarse.rings, len(points)
    t, s = (x.reshape(-1) for x in torch.meshgrid(ring_t, seg_t, indexing="ij"))
    i, j = t.floor().long(), s.floor().long()
    f, g = (t - i)[:, None], (s - j)[:, None]

    def vertex(ring: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        index = 1 + (ring - 1) * segments + seg % segments
        return torch.where(ring == 0, 0, torch.where(ring == rings, count - 1, index))

    a, b, c, d = vertex(i, j), vertex(i, j + 1), vertex(i + 1, j), vertex(i + 1, j + 1)
    pa, pb, pc, pd = points[a], points[b], points[c], points[d]
    on_ad = _has_faces(coarse.faces, a, c, d, count)[:, None]
    along_ad = torch.where(f >= g, (1 - f) * pa + (f - g) * pc + g * pd, (1 - g) * pa + f * pd + (g - f) * pb)
    along_bc = torch.where(
        f + g <= 1, (1 - f - g) * pa + f * pc + g * pb, (f + g - 1) * pd + (1 - g) * pc + (1 - f) * pb
    )
    inner = torch.where(on_ad, along_ad, along_bc)
    north = (1 - f) * pa + f * ((1 - g) * pc + g * pd)  # fan (pole, c, d); here a = b = the pole
    south = (1 - f) * ((1 - g) * pa + g * pb) + f * pc  # fan (a, b, pole); here c = d = the pole
    on_grid = torch.where((i == 0)[:, None], north, torch.where((i == rings - 1)[:, None], south, inner))
    return torch.cat((points[:1], on_grid, points[-1:]))


def _has_faces(
    faces: torch.Tensor, a: torch.Tensor, c: torch.Tensor, d: torch.Tensor, count: int
) -> torch.Tensor:
    """(N,) whether triangle (a, c, d) is one of ``faces`` (in any corner order)."""

    def key(corners: torch.Tensor) -> torch.Tensor:
        ordered = corners.sort(dim=1).values
        return (ordered[:, 0] * count + ordered[:, 1]) * count + ordered[:, 2]

    return torch.isin(key(torch.stack((a, c, d), dim=1)), key(faces))


def spline(
    coarse: SphereTemplate,
    points: torch.Tensor,
    dense: DenseSphere,
    ring_t: torch.Tensor,
    seg_t: torch.Tensor,
) -> torch.Tensor:
    """(V', 3) dense vertices on the Catmull-Rom surface through the coarse vertices."""
    segments = _segments(coarse)
    offsets = points - coarse.vertices.double()
    grid = offsets[1:-1].reshape(coarse.rings - 1, segments, 3)
    half = segments // 2
    north, south = offsets[0].expand(1, segments, 3), offsets[-1].expand(1, segments, 3)
    # Rows -1 .. rings + 1: the meridian continues across each pole on the opposite segment.
    rows = torch.cat((grid[:1].roll(half, dims=1), north, grid, south, grid[-1:].roll(half, dims=1)))
    cell, weights = catmull_rom(ring_t)
    picked = rows[cell[:, None] + torch.arange(4)]  # (R'-1, 4, S, 3); extended index = ring + 1
    along_rings = torch.einsum("rj,rjsc->rsc", weights, picked)
    cell, weights = catmull_rom(seg_t)
    columns = (cell[:, None] + torch.arange(-1, 3)) % segments
    dense_grid = torch.einsum("kj,rkjc->rkc", weights, along_rings[:, columns])
    return dense.vertices + torch.cat((offsets[:1], dense_grid.reshape(-1, 3), offsets[-1:]))
