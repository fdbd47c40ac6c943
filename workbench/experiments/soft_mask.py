"""A DIB-R-style soft silhouette over the contour edges, for gradients that reach beyond one pixel.

The antialiased coverage (``silhouette.coverage``) is exact but only one pixel wide: a target mask
several pixels away from the current silhouette pulls only through the boundary pixels. Here every
background pixel within a few sigma of a contour edge gets a probability
1 - prod_edges (1 - exp(-d^2 / sigma)), d its distance to the projected edge in pixels, so its
error pulls the nearest edges towards it. Foreground pixels stay 1. The mask is blurred outwards,
so it is larger than the true silhouette: use it with IoU-like losses or next to ``coverage``.

An experiment, not part of the shipped renderer: no method's loss uses it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from backend.render.cameras import OrthographicCamera, PerspectiveCamera, screen_to_pixels
from backend.render.gather import expand_counts, gather_vertices
from backend.render.rasterize import Fragments, rasterize
from backend.render.silhouette import contour_edge_mask
from backend.render.topology import EdgeTopology, build_edge_topology

CUTOFF = 1e-4
"""Edges farther than where exp(-d^2 / sigma) drops below this are ignored."""


def soft_silhouette(
    screen: Tensor, faces: Tensor, topology: EdgeTopology, mask: Tensor, sigma: float = 1.0
) -> Tensor:
    """(B, H, W) soft mask: 1 on the hard ``mask``, decaying with the squared distance (in pixels,
    scale ``sigma`` in pixels squared) to the nearest contour edges of ``screen`` outside it."""
    batch, height, width = mask.shape
    with torch.no_grad():
        item, edge, pixel_x, pixel_y = _candidates(screen.detach(), faces, topology, height, width, sigma)
        pixel = (item * height + (height - 1 - pixel_y)) * width + pixel_x
        background = torch.nonzero(~mask.reshape(-1).index_select(0, pixel)).squeeze(1)
        item, edge, pixel = (value.index_select(0, background) for value in (item, edge, pixel))
        pixel_x, pixel_y = pixel_x.index_select(0, background), pixel_y.index_select(0, background)

    ends = screen_to_pixels(
        gather_vertices(screen, item, topology.edges.index_select(0, edge)), (height, width)
    )
    start, direction = ends[:, 0], ends[:, 1] - ends[:, 0]
    offset = torch.stack((pixel_x, pixel_y), dim=1).to(screen.dtype) - start
    along = ((offset * direction).sum(1) / (direction * direction).sum(1).clamp(min=1e-12)).clamp(0.0, 1.0)
    distance_sq = (offset - along[:, None] * direction).square().sum(1)
    scaled = (distance_sq / sigma).clamp(min=1e-6)
    miss = torch.log1p(-torch.exp(-scaled))  # log(1 - p) per edge
    miss = torch.where(scaled < math.log(1.0 / CUTOFF), miss, torch.zeros_like(miss))
    total_miss = torch.zeros(batch * height * width, dtype=screen.dtype, device=screen.device)
    total_miss = total_miss.index_add(0, pixel, miss)
    soft = 1.0 - torch.exp(total_miss)
    return torch.where(mask.reshape(-1), torch.ones_like(soft), soft).reshape(batch, height, width)


def render_soft_mask(
    vertices: Tensor,
    faces: Tensor,
    camera: OrthographicCamera | PerspectiveCamera,
    image_size: int | tuple[int, int],
    sigma: float,
    topology: EdgeTopology | None = None,
) -> tuple[Fragments, Tensor]:
    """The hard fragments and the (B, H, W) soft silhouette of world ``vertices`` seen through
    ``camera``, rasterised as ``render_mesh`` rasterises them."""
    faces = faces.long()
    screen = camera.project(vertices)
    fragments = rasterize(screen, faces, image_size, perspective=camera.perspective)
    topology = build_edge_topology(faces) if topology is None else topology
    return fragments, soft_silhouette(screen, faces, topology, fragments.mask, sigma)


def _candidates(
    screen: Tensor, faces: Tensor, topology: EdgeTopology, height: int, width: int, sigma: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Every (contour edge, pixel) pair within the cut-off radius of the edge's bounding box:
    batch item, edge id, pixel column and pixel row counted upwards."""
    radius = math.sqrt(sigma * math.log(1.0 / CUTOFF))
    item, edge = torch.nonzero(contour_edge_mask(screen, faces, topology), as_tuple=True)
    ends = screen_to_pixels(
        gather_vertices(screen, item, topology.edges.index_select(0, edge)), (height, width)
    )
    low = torch.minimum(ends[:, 0], ends[:, 1]) - radius
    high = torch.maximum(ends[:, 0], ends[:, 1]) + radius
    x_lo, y_lo = low[:, 0].ceil().clamp(min=0), low[:, 1].ceil().clamp(min=0)
    x_hi, y_hi = high[:, 0].floor().clamp(max=width - 1), high[:, 1].floor().clamp(max=height - 1)
    finite = torch.isfinite(ends).all(dim=2).all(dim=1)
    columns = torch.where(finite, x_hi - x_lo + 1, torch.zeros_like(x_lo)).clamp(min=0).long()
    rows = torch.where(finite, y_hi - y_lo + 1, torch.zeros_like(y_lo)).clamp(min=0).long()
    owner, rank = expand_counts(columns * rows)
    owner_columns = columns.index_select(0, owner)
    pixel_x = x_lo.long().index_select(0, owner) + rank % owner_columns
    pixel_y = y_lo.long().index_select(0, owner) + rank // owner_columns
    return item.index_select(0, owner), edge.index_select(0, owner), pixel_x, pixel_y
