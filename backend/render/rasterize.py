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
from backend.render.gather import expand_counts

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
            image = fill.to(values.dtype).expand(shape).clone(memory_format=torch.contiguous_format)
            image = image.view(-1, *values.shape[1:])
        else:
            image = values.new_full((shape[0] * shape[1] * shape[2], *values.shape[1:]), fill)
        return image.index_copy_(0, self.pixels, values).reshape(shape)  # in place: image is fresh

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
    Meshes of different topologies can share a batch by padding with degenerate faces. Faces with
    a non-finite vertex are skipped (callers check their own tensors for NaN).
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    if screen.dim() != 3 or screen.shape[-1] != 3:
        raise ValueError(f"rasterize: screen vertices must be (B, V, 3), got {tuple(screen.shape)}")
    if faces.dim() != 2 or faces.shape[-1] != 3:
        raise ValueError(f"rasterize: faces must be (F, 3) vertex indices, got {tuple(faces.shape)}")
    faces = faces.long()
    num_vertices = screen.shape[1]
    pix_to_face = _nearest_faces(screen.detach(), faces, height, width, perspective, cull_backfaces, near)
    flat = pix_to_face.reshape(-1)
    pixels = torch.nonzero(flat >= 0).squeeze(1)
    face_ids = flat.index_select(0, pixels)
    row_in_batch = pixels // width
    item = row_in_batch // height
    centre_x = ((2 * (pixels - row_in_batch * width) + 1 - width) / width).to(screen.dtype)
    centre_y = ((height - 1 - 2 * (row_in_batch - item * height)) / height).to(screen.dtype)
    first_vertex = item * num_vertices
    vertex_ids = [corner.index_select(0, face_ids) + first_vertex for corner in faces.t()]
    columns = screen.reshape(-1, 3).t().contiguous()  # x, y, depth as contiguous rows: fast gathers
    corners = [[column.index_select(0, ids) for ids in vertex_ids] for column in columns]
    bary, depth = _differentiable_barycentrics(*corners, centre_x, centre_y, perspective)
    return Fragments(pix_to_face, pixels, item, face_ids, bary, depth)


SPAN_MARGIN = 1e-3
"""Row spans are widened by this many pixels so that rounding in the span never drops a centre
that the edge functions accept; the edge functions then decide at both ends of each row."""


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

    Scanline enumeration: every face is cut into the pixel rows it spans and every row into the
    pixel centres between its left and right edge; only the two ends of a row need the edge-function
    test (a triangle meets a row in one interval). One ``scatter_reduce`` on a (depth, face) key
    then keeps the nearest face, the highest id on exact ties. All per-face, per-row and
    per-candidate data are 1-D tensors: 1-D gathers are many times faster than row gathers on CPU.
    """
    batch, num_vertices = screen.shape[:2]
    num_faces = faces.shape[0]
    flat = screen.reshape(-1, 3).float()
    px, qy = screen_to_pixels(flat, (height, width)).t().contiguous()  # qy: pixel rows counted upwards
    first_vertex = torch.arange(batch, device=screen.device)[:, None] * num_vertices
    corner_ids = [(corner[None] + first_vertex).reshape(-1) for corner in faces.t()]  # (N,) each, N = B*F
    x = [px.index_select(0, ids) for ids in corner_ids]
    y = [qy.index_select(0, ids) for ids in corner_ids]
    z = [flat[:, 2].index_select(0, ids) for ids in corner_ids]

    x_lo = torch.minimum(torch.minimum(x[0], x[1]), x[2]).ceil().clamp(min=0)
    x_hi = torch.maximum(torch.maximum(x[0], x[1]), x[2]).floor().clamp(max=width - 1)
    y_lo = torch.minimum(torch.minimum(y[0], y[1]), y[2]).ceil().clamp(min=0)
    y_hi = torch.maximum(torch.maximum(y[0], y[1]), y[2]).floor().clamp(max=height - 1)
    # Coordinates relative to the box corner keep float32 exact enough for small faces.
    x = [value - x_lo for value in x]
    y = [value - y_lo for value in y]
    # Edge function of corner k: w_k = a_k x + b_k y + c_k, from the opposite edge (k+1, k+2).
    a = [y[(k + 1) % 3] - y[(k + 2) % 3] for k in range(3)]
    b = [x[(k + 2) % 3] - x[(k + 1) % 3] for k in range(3)]
    c = [x[(k + 1) % 3] * y[(k + 2) % 3] - x[(k + 2) % 3] * y[(k + 1) % 3] for k in range(3)]
    area = c[0] + c[1] + c[2]  # twice the signed area, positive when counter-clockwise
    finite = torch.isfinite(area) & torch.isfinite(x_lo) & torch.isfinite(y_lo) & torch.isfinite(x_hi + y_hi)
    keep = (area > 0 if cull_backfaces else area != 0) & (x_hi >= x_lo) & finite
    if perspective:
        keep &= torch.minimum(torch.minimum(z[0], z[1]), z[2]) > near
    inverse_area = torch.where(keep, area, torch.ones_like(area)).reciprocal()
    a, b, c = ([value * inverse_area for value in terms] for terms in (a, b, c))
    # The z-test compares depth, or -1/depth (same order) interpolated linearly for perspective.
    key_term = [-value.reciprocal() for value in z] if perspective else z
    a_z, b_z, c_z = (sum(t * k for t, k in zip(terms, key_term, strict=True)) for terms in (a, b, c))

    rows = torch.where(keep, y_hi - y_lo + 1, torch.zeros_like(y_lo)).clamp(min=0).long()
    row_face, row_rank = expand_counts(rows)
    row_y = row_rank.float()

    def per_row(values: Tensor) -> Tensor:
        return values.index_select(0, row_face)

    left, right = _row_span([per_row(v) for v in x], [per_row(v) for v in y], row_y)
    row_x_lo = per_row(x_lo)
    first = (left - SPAN_MARGIN).ceil().clamp(0, width)  # finite even for an empty row
    last = torch.minimum((right + SPAN_MARGIN).floor(), (width - 1) - row_x_lo)
    row_a, row_b, row_c = ([per_row(v) for v in terms] for terms in (a, b, c))

    def inside(column: Tensor) -> Tensor:
        """Edge-function test of the pixel at ``column`` (local) in every row."""
        weights = [row_a[k] * column + row_b[k] * row_y + row_c[k] for k in range(3)]
        return (
            (weights[0] >= -EDGE_TOLERANCE)
            & (weights[1] >= -EDGE_TOLERANCE)
            & (weights[2] >= -EDGE_TOLERANCE)
        )

    first = first + (~inside(first)).float()
    last = last - (~inside(last)).float()

    key_start = per_row(a_z) * first + per_row(b_z) * row_y + per_row(c_z)
    key_slope = per_row(a_z)
    item = row_face // num_faces
    image_row = (height - 1) - (per_row(y_lo).long() + row_rank)
    row_pixel = (item * height + image_row) * width + row_x_lo.long() + first.long()
    row_tie = (num_faces - 1) - (row_face - item * num_faces)  # the smaller key wins: higher face id

    columns = (last - first + 1).clamp(min=0).long()
    candidate_row, offset = expand_counts(columns)
    key_value = key_start.index_select(0, candidate_row) + key_slope.index_select(0, candidate_row) * offset
    pixel = row_pixel.index_select(0, candidate_row) + offset
    key = (_orderable(key_value) << 32) | row_tie.index_select(0, candidate_row)
    empty = torch.iinfo(torch.long).max
    best = torch.full((batch * height * width,), empty, dtype=torch.long, device=screen.device)
    best.scatter_reduce_(0, pixel, key, reduce="amin")
    pix_to_face = torch.where(best != empty, (num_faces - 1) - (best & 0xFFFFFFFF), torch.full_like(best, -1))
    return pix_to_face.reshape(batch, height, width)


def _orderable(values: Tensor) -> Tensor:
    """float32 -> int64 with the same order (IEEE bits, negative magnitudes flipped)."""
    bits = values.view(torch.int32)
    return torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).long()


def _row_span(x: list[Tensor], y: list[Tensor], row: Tensor) -> tuple[Tensor, Tensor]:
    """Left and right end (R,) of the horizontal line y = ``row`` inside each triangle, given the
    corners' coordinates as three (R,) tensors each."""
    inf = torch.full_like(row, float("inf"))
    left, right = inf, -inf
    for k in range(3):  # the three edges
        x0, y0, x1, y1 = x[k], y[k], x[(k + 1) % 3], y[(k + 1) % 3]
        crosses = (torch.minimum(y0, y1) <= row) & (row <= torch.maximum(y0, y1)) & (y0 != y1)
        at = x0 + (row - y0) / torch.where(crosses, y1 - y0, torch.ones_like(y0)) * (x1 - x0)
        # A corner exactly on the row counts too (it covers rows touched only by a vertex).
        on_row = y0 == row
        left = torch.minimum(left, torch.minimum(torch.where(crosses, at, inf), torch.where(on_row, x0, inf)))
        right = torch.maximum(
            right, torch.maximum(torch.where(crosses, at, -inf), torch.where(on_row, x0, -inf))
        )
    return left, right


def _differentiable_barycentrics(
    x: list[Tensor], y: list[Tensor], z: list[Tensor], centre_x: Tensor, centre_y: Tensor, perspective: bool
) -> tuple[Tensor, Tensor]:
    """Barycentrics (P, 3) and depth (P,) of pixel centres (NDC) in triangles given as 3 corners of
    (P,) screen coordinates each, with autograd. Barycentrics are ratios of areas, so NDC serves
    as well as pixel units."""
    dx = [value - centre_x for value in x]
    dy = [value - centre_y for value in y]
    edge = [dx[(k + 1) % 3] * dy[(k + 2) % 3] - dx[(k + 2) % 3] * dy[(k + 1) % 3] for k in range(3)]
    inverse_area = (edge[0] + edge[1] + edge[2]).reciprocal()
    weights = [value * inverse_area for value in edge]
    if perspective:
        weights = [w / depth for w, depth in zip(weights, z, strict=True)]
        depth = (weights[0] + weights[1] + weights[2]).reciprocal()
        return torch.stack([w * depth for w in weights], dim=1), depth
    return torch.stack(weights, dim=1), weights[0] * z[0] + weights[1] * z[1] + weights[2] * z[2]
