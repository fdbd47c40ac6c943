"""Hard z-buffer rasteriser with differentiable barycentrics.

Visibility is resolved without gradients (which face covers which pixel centre is piecewise
constant), by enumerating the pixel centres inside every face row by row, confirming them with
edge functions and keeping the nearest with one ``scatter_reduce``. The barycentrics and depth of the
winning faces are then recomputed with autograd, which gives the same vertex gradients as
pytorch3d's ``bary_coords`` backward. Silhouette gradients come from ``silhouette.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from backend.render.cameras import screen_to_pixels
from backend.render.gather import expand_counts, face_corners, gather_vertices

EDGE_TOLERANCE = 1e-5
"""A pixel centre is inside a face when all barycentrics are >= -EDGE_TOLERANCE, so a centre
lying exactly on a shared edge is never lost to rounding (the z-test then picks one face)."""


@dataclass
class Fragments:
    """What ``rasterize`` found, kept compact: only the P covered pixels carry data.

    ``pix_to_face`` (B, H, W) face id per pixel, -1 on background. ``pixels`` (P,) the covered
    pixels as flat indices into B*H*W (ascending), ``batch_index`` (P,) their batch item,
    ``faces`` (P,) their face ids, ``bary`` (P, 3) their barycentrics (perspective-correct for a
    perspective camera) and ``depth_values`` (P,) their view depth, both differentiable with
    respect to the screen vertices.
    """

    pix_to_face: Tensor
    pixels: Tensor
    batch_index: Tensor
    faces: Tensor
    bary: Tensor
    depth_values: Tensor

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.pix_to_face.shape[1]), int(self.pix_to_face.shape[2])

    @property
    def mask(self) -> Tensor:
        """(B, H, W) bool, True where a face covers the pixel centre."""
        return self.pix_to_face >= 0

    def to_image(self, values: Tensor, fill: Tensor | float = 0.0) -> Tensor:
        """Scatter per-covered-pixel ``values`` (P, ...) into a (B, H, W, ...) image whose other
        pixels hold ``fill`` (a float, or a tensor broadcastable to the image); differentiable
        with respect to both."""
        shape = (*self.pix_to_face.shape, *values.shape[1:])
        if isinstance(fill, Tensor):
            image = fill.to(values.dtype).expand(shape).reshape(-1, *values.shape[1:])
        else:
            image = values.new_full((shape[0] * shape[1] * shape[2], *values.shape[1:]), fill)
        return image.index_copy(0, self.pixels, values).reshape(shape)

    @property
    def bary_coords(self) -> Tensor:
        """(B, H, W, 3) barycentrics, zero on background."""
        return self.to_image(self.bary)

    @property
    def depth(self) -> Tensor:
        """(B, H, W) view depth, zero on background."""
        return self.to_image(self.depth_values)


def rasterize(
    screen: Tensor,
    faces: Tensor,
    image_size: int | tuple[int, int],
    *,
    perspective: bool = False,
    cull_backfaces: bool = False,
    near: float = 1e-4,
) -> Fragments:
    """Rasterise a batch of meshes sharing one topology.

    ``screen`` (B, V, 3) is (x_ndc, y_ndc, depth) from a camera (see ``cameras.py``); ``faces``
    (F, 3). ``perspective`` interpolates 1/depth (perspective-correct barycentrics and depth) and
    drops faces with a vertex at depth <= ``near``. ``cull_backfaces`` drops faces whose NDC
    signed area is not positive (clockwise on screen), valid for closed, outward-wound meshes.
    Meshes of different topologies can share a batch by padding with degenerate faces.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    faces = faces.long()
    pix_to_face = _nearest_faces(screen.detach(), faces, height, width, perspective, cull_backfaces, near)
    flat = pix_to_face.reshape(-1)
    pixels = torch.nonzero(flat >= 0).squeeze(1)
    face_ids = flat.index_select(0, pixels)
    row_in_batch = pixels // width
    item = row_in_batch // height
    centres = torch.stack(
        (
            (2 * (pixels - row_in_batch * width) + 1 - width) / width,
            (height - 1 - 2 * (row_in_batch - item * height)) / height,
        ),
        dim=1,
    ).to(screen.dtype)
    corners = gather_vertices(screen, item, faces.index_select(0, face_ids))  # (P, 3, 3)
    bary, depth = _differentiable_barycentrics(corners, centres, perspective)
    return Fragments(pix_to_face, pixels, item, face_ids, bary, depth)


def _min3(values: Tensor) -> Tensor:
    """Minimum of the 3 columns; ``torch.minimum`` is much faster than ``min(dim=1)`` here."""
    return torch.minimum(torch.minimum(values[:, 0], values[:, 1]), values[:, 2])


def _max3(values: Tensor) -> Tensor:
    return torch.maximum(torch.maximum(values[:, 0], values[:, 1]), values[:, 2])


def _orderable(values: Tensor) -> Tensor:
    """float32 -> int64 with the same order (IEEE bits, negative magnitudes flipped)."""
    bits = values.view(torch.int32)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).long()


SPAN_MARGIN = 1e-3
"""Pixels this far (in pixels) outside a row's exact span are still edge-tested, so rounding in
the span never loses a centre that the edge functions accept."""


@torch.no_grad()
def _nearest_faces(
    screen: Tensor,
    faces: Tensor,
    height: int,
    width: int,
    perspective: bool,
    cull_backfaces: bool,
    near: float,
) -> Tensor:
    """(B, H, W) id of the nearest face whose triangle contains each pixel centre, or -1.

    Scanline enumeration: every face is cut into the pixel rows it spans, every row into the pixel
    centres between its left and right edge, so the candidates are about the covered pixels. Each
    candidate is confirmed with edge functions, then one ``scatter_reduce`` on a (depth, face) key
    keeps the nearest (the highest face id on exact ties).
    """
    batch, num_faces = screen.shape[0], faces.shape[0]
    corners = face_corners(screen.float(), faces).reshape(-1, 3, 3)  # (N, 3, 3), N = B * F
    points = screen_to_pixels(corners, (height, width))
    x, y = points[..., 0], points[..., 1]
    depth = corners[..., 2]

    x_lo = _min3(x).ceil().clamp(min=0)
    x_hi = _max3(x).floor().clamp(max=width - 1)
    y_lo = _min3(y).ceil().clamp(min=0)
    y_hi = _max3(y).floor().clamp(max=height - 1)
    # Edge functions relative to the box corner keep float32 exact enough for small faces.
    x = x - x_lo[:, None]
    y = y - y_lo[:, None]
    x_next, y_next = x.roll(-1, dims=1), y.roll(-1, dims=1)
    x_prev, y_prev = x.roll(-2, dims=1), y.roll(-2, dims=1)
    coef_c = x_next * y_prev - x_prev * y_next
    area = coef_c.sum(dim=1)  # twice the signed area, positive when counter-clockwise
    keep = area > 0 if cull_backfaces else area != 0
    if perspective:
        keep &= _min3(depth) > near
    keep &= x_hi >= x_lo
    inverse_area = torch.where(keep, area, torch.ones_like(area)).reciprocal()[:, None]
    depth_term = depth.reciprocal() if perspective else depth
    face_table = torch.cat(
        (
            (y_next - y_prev) * inverse_area,
            (x_prev - x_next) * inverse_area,
            coef_c * inverse_area,
            depth_term,
            x,
            y,
            x_lo[:, None],
        ),
        dim=1,
    )  # (N, 19): d w / dx (3), d w / dy (3), w at the box corner (3), depth terms (3), x (3), y (3), x_lo

    rows = ((y_hi - y_lo + 1).clamp(min=0) * keep).long()
    row_face, row_rank = expand_counts(rows)
    per_row = face_table.index_select(0, row_face)
    row_y = row_rank.to(per_row.dtype)
    left, right = _row_span(per_row[:, 12:15], per_row[:, 15:18], row_y)
    first = (left - SPAN_MARGIN).ceil().clamp(0, width)  # finite even for an empty row
    last = torch.minimum((right + SPAN_MARGIN).floor(), (width - 1) - per_row[:, 18])
    # Linear functions of x along the row: the 3 barycentrics and the interpolated depth term.
    slope_w = per_row[:, 0:3]
    start_w = slope_w * first[:, None] + per_row[:, 3:6] * row_y[:, None] + per_row[:, 6:9]
    depth_terms = per_row[:, 9:12]
    row_table = torch.cat(
        (
            start_w,
            (start_w * depth_terms).sum(1, keepdim=True),
            slope_w,
            (slope_w * depth_terms).sum(1, keepdim=True),
        ),
        dim=1,
    )
    item = row_face // num_faces
    image_row = (height - 1) - (y_lo.index_select(0, row_face).long() + row_rank)
    row_pixel = (item * height + image_row) * width + per_row[:, 18].long() + first.long()

    columns = (last - first + 1).clamp(min=0).long()
    candidate_row, offset = expand_counts(columns)
    values = row_table.index_select(0, candidate_row)
    values = values[:, 0:4] + values[:, 4:8] * offset.to(values.dtype)[:, None]
    inside = torch.nonzero((values[:, 0:3] >= -EDGE_TOLERANCE).all(dim=1)).squeeze(1)
    candidate_row = candidate_row.index_select(0, inside)
    interpolated = values[:, 3].index_select(0, inside)
    candidate_depth = interpolated.reciprocal() if perspective else interpolated
    pixel = row_pixel.index_select(0, candidate_row) + offset.index_select(0, inside)
    face = (row_face % num_faces).index_select(0, candidate_row)

    tie_break = (num_faces - 1) - face  # the smaller key wins: nearer, then the higher face id
    key = (_orderable(candidate_depth) << 32) | tie_break
    empty = torch.iinfo(torch.long).max
    best = torch.full((batch * height * width,), empty, dtype=torch.long, device=screen.device)
    best.scatter_reduce_(0, pixel, key, reduce="amin")
    covered = best != empty
    pix_to_face = torch.where(covered, (num_faces - 1) - (best & 0xFFFFFFFF), torch.full_like(best, -1))
    return pix_to_face.reshape(batch, height, width)


def _row_span(x: Tensor, y: Tensor, row: Tensor) -> tuple[Tensor, Tensor]:
    """Left and right end (R,) of the horizontal line y = ``row`` inside each triangle (R, 3)."""
    x_next, y_next = x.roll(-1, dims=1), y.roll(-1, dims=1)
    row = row[:, None]
    crosses = (torch.minimum(y, y_next) <= row) & (row <= torch.maximum(y, y_next)) & (y != y_next)
    fraction = (row - y) / torch.where(y != y_next, y_next - y, torch.ones_like(y))
    at = x + fraction * (x_next - x)
    inf = torch.full_like(at, float("inf"))
    # A corner exactly on the row counts too (it covers rows touched only by a vertex).
    on_row = y == row
    left = torch.minimum(_min3(torch.where(crosses, at, inf)), _min3(torch.where(on_row, x, inf)))
    right = torch.maximum(_max3(torch.where(crosses, at, -inf)), _max3(torch.where(on_row, x, -inf)))
    return left, right


def _differentiable_barycentrics(
    corners: Tensor, centres: Tensor, perspective: bool
) -> tuple[Tensor, Tensor]:
    """Barycentrics (P, 3) and depth (P,) of the pixel ``centres`` (P, 2, NDC) in the triangles
    ``corners`` (P, 3, 3 screen), with autograd. Barycentrics are ratios of areas, so NDC serves
    as well as pixel units; plain column arithmetic is much faster than (P, 3) rolls and sums."""
    dx = corners[..., 0] - centres[:, 0:1]
    dy = corners[..., 1] - centres[:, 1:2]
    x0, x1, x2 = dx.unbind(1)
    y0, y1, y2 = dy.unbind(1)
    e0 = x1 * y2 - x2 * y1
    e1 = x2 * y0 - x0 * y2
    e2 = x0 * y1 - x1 * y0
    inverse_area = (e0 + e1 + e2).reciprocal()
    w0, w1, w2 = e0 * inverse_area, e1 * inverse_area, e2 * inverse_area
    z0, z1, z2 = corners[..., 2].unbind(1)
    if perspective:
        w0, w1, w2 = w0 / z0, w1 / z1, w2 / z2
        inverse_depth = w0 + w1 + w2
        depth = inverse_depth.reciprocal()
        return torch.stack((w0 * depth, w1 * depth, w2 * depth), dim=1), depth
    return torch.stack((w0, w1, w2), dim=1), w0 * z0 + w1 * z1 + w2 * z2
