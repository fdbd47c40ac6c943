"""Hard z-buffer rasteriser with differentiable barycentrics.

Visibility is resolved without gradients (which face covers which pixel centre is piecewise
constant), by enumerating the pixels in every face's bounding box, testing them with edge
functions and keeping the nearest with ``scatter_reduce``. The barycentrics and depth of the
winning faces are then recomputed with autograd, which gives the same vertex gradients as
pytorch3d's ``bary_coords`` backward. Silhouette gradients come from ``silhouette.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from backend.render.cameras import screen_to_pixels

EDGE_TOLERANCE = 1e-5
"""A pixel centre is inside a face when all barycentrics are >= -EDGE_TOLERANCE, so a centre
lying exactly on a shared edge is never lost to rounding (the z-test then picks one face)."""


@dataclass
class Fragments:
    """What ``rasterize`` found, kept compact: only the P covered pixels carry data.

    ``pix_to_face`` (B, H, W) face id per pixel, -1 on background. ``pixels`` (P,) the covered
    pixels as flat indices into B*H*W (ascending), ``faces`` (P,) their face ids, ``bary`` (P, 3)
    their barycentrics (perspective-correct for a perspective camera) and ``depth_values`` (P,)
    their view depth, both differentiable with respect to the screen vertices.
    """

    pix_to_face: Tensor
    pixels: Tensor
    faces: Tensor
    bary: Tensor
    depth_values: Tensor

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.pix_to_face.shape[1]), int(self.pix_to_face.shape[2])

    @property
    def batch_index(self) -> Tensor:
        """(P,) batch item of every covered pixel."""
        height, width = self.image_size
        return self.pixels // (height * width)

    @property
    def mask(self) -> Tensor:
        """(B, H, W) bool, True where a face covers the pixel centre."""
        return self.pix_to_face >= 0

    def to_image(self, values: Tensor, fill: float = 0.0) -> Tensor:
        """Scatter per-covered-pixel ``values`` (P, ...) into a (B, H, W, ...) image (differentiable)."""
        batch, height, width = self.pix_to_face.shape
        image = values.new_full((batch * height * width, *values.shape[1:]), fill)
        return image.index_copy(0, self.pixels, values).reshape(batch, height, width, *values.shape[1:])

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
    face_ids = flat[pixels]
    bary, depth = _differentiable_barycentrics(screen, faces, pixels, face_ids, height, width, perspective)
    return Fragments(pix_to_face, pixels, face_ids, bary, depth)


def _min3(values: Tensor) -> Tensor:
    """Minimum of the 3 columns; ``torch.minimum`` is much faster than ``min(dim=1)`` here."""
    return torch.minimum(torch.minimum(values[:, 0], values[:, 1]), values[:, 2])


def _max3(values: Tensor) -> Tensor:
    return torch.maximum(torch.maximum(values[:, 0], values[:, 1]), values[:, 2])


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
    """(B, H, W) id of the nearest face whose triangle contains each pixel centre, or -1."""
    batch, num_faces = screen.shape[0], faces.shape[0]
    device = screen.device
    corners = screen[:, faces].reshape(batch * num_faces, 3, 3)
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
    coef_x = y_next - y_prev
    coef_y = x_prev - x_next
    coef_c = x_next * y_prev - x_prev * y_next
    area = coef_c.sum(dim=1)  # twice the signed area, positive when counter-clockwise

    keep = area > 0 if cull_backfaces else area != 0
    if perspective:
        keep &= _min3(depth) > near
    cols = (x_hi - x_lo + 1).clamp(min=0).long()
    rows = (y_hi - y_lo + 1).clamp(min=0).long()
    counts = cols * rows * keep

    safe_area = torch.where(keep, area, torch.ones_like(area))[:, None]
    depth_term = depth.reciprocal() if perspective else depth
    table = torch.cat((coef_x / safe_area, coef_y / safe_area, coef_c / safe_area, depth_term), dim=1)
    layout = torch.stack((cols, x_lo.long(), y_lo.long(), counts.cumsum(0) - counts), dim=1)

    owner = torch.repeat_interleave(counts)
    per_face = layout[owner]
    offset = torch.arange(owner.shape[0], device=device) - per_face[:, 3]
    local_x = offset % per_face[:, 0]
    local_y = offset // per_face[:, 0]
    rows_of = table[owner]
    weights = rows_of[:, 0:3] * local_x[:, None] + rows_of[:, 3:6] * local_y[:, None] + rows_of[:, 6:9]
    inside = (weights >= -EDGE_TOLERANCE).all(dim=1)

    owner, weights, rows_of = owner[inside], weights[inside], rows_of[inside]
    pixel_x = per_face[inside, 1] + local_x[inside]
    pixel_y = per_face[inside, 2] + local_y[inside]
    item = owner // num_faces
    pixel = (item * height + (height - 1 - pixel_y)) * width + pixel_x
    interpolated = (weights * rows_of[:, 9:12]).sum(dim=1)
    candidate_depth = interpolated.reciprocal() if perspective else interpolated

    size = batch * height * width
    zbuffer = torch.full((size,), float("inf"), dtype=screen.dtype, device=device)
    zbuffer.scatter_reduce_(0, pixel, candidate_depth, reduce="amin")
    wins = candidate_depth <= zbuffer[pixel]
    pix_to_face = torch.full((size,), -1, dtype=torch.long, device=device)
    pix_to_face.scatter_reduce_(0, pixel[wins], owner[wins] % num_faces, reduce="amax")
    return pix_to_face.reshape(batch, height, width)


def _differentiable_barycentrics(
    screen: Tensor,
    faces: Tensor,
    pixels: Tensor,
    face_ids: Tensor,
    height: int,
    width: int,
    perspective: bool,
) -> tuple[Tensor, Tensor]:
    """Barycentrics (P, 3) and depth (P,) of the covered pixel centres, with autograd to ``screen``."""
    item = pixels // (height * width)
    row = (pixels // width) % height
    col = pixels % width
    corners = screen[item[:, None], faces[face_ids]]  # (P, 3, 3)
    points = screen_to_pixels(corners, (height, width))
    dx = points[..., 0] - col[:, None].to(screen.dtype)
    dy = points[..., 1] - (height - 1 - row)[:, None].to(screen.dtype)
    edge = dx.roll(-1, dims=1) * dy.roll(-2, dims=1) - dx.roll(-2, dims=1) * dy.roll(-1, dims=1)
    bary = edge / edge.sum(dim=1, keepdim=True)
    depth = corners[..., 2]
    if perspective:
        weighted = bary / depth
        inverse_depth = weighted.sum(dim=1, keepdim=True)
        return weighted / inverse_depth, inverse_depth.squeeze(1).reciprocal()
    return bary, (bary * depth).sum(dim=1)
