"""Silhouette gradients: analytic antialiasing along the projected contour edges.

A hard mask has zero gradient almost everywhere. Where a contour edge (front face next to a back
face, or a boundary edge) crosses the segment between the centres of two neighbouring pixels,
one foreground (F) and one background (G), the box-filtered image changes linearly with the
crossing position: with e the signed distance of the crossing from the pixels' shared border,
positive towards G (|e| <= 1/2), the pixel whose box holds the crossing gets e * (c_F - c_G)
added. Moving the edge by dx then changes the covered area by dx per crossed row, which is the
true derivative; the forward value becomes a one-pixel antialiased edge.

Mostly vertical edges (|dy| >= |dx|) are tested on horizontal pixel pairs, one per pixel row
they span; mostly horizontal edges on vertical pairs, one per column. When several edges cross
one pair, the one nearest G wins: the silhouette is the outer boundary of the union.

Known limit (shared with nvdiffrast): when a silhouette vertex crosses a pixel row or column, a
pair passes from a steep to a shallow edge (or back) and its blend jumps by up to half a pixel.
The derivative between such events is exact; finite differences of the antialiased image need a
step that averages over many events.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from backend.render.cameras import screen_to_pixels
from backend.render.gather import expand_counts, face_corners, gather_vertices
from backend.render.topology import EdgeTopology


@dataclass
class ContourCrossings:
    """Per pixel pair where the silhouette passes: ``target`` (K,) the pixel that is blended,
    ``foreground``/``background`` (K,) the pair's pixels, ``weight`` (K,) the signed offset e
    (differentiable with respect to the screen vertices). All pixels are flat indices into B*H*W."""

    target: Tensor
    foreground: Tensor
    background: Tensor
    weight: Tensor


def contour_edge_mask(screen: Tensor, faces: Tensor, topology: EdgeTopology) -> Tensor:
    """(B, E) bool: edges between a front- and a back-facing face on screen, and boundary edges."""
    corners = face_corners(screen[..., :2], faces.long())
    first, second, third = corners.unbind(2)
    u, v = second - first, third - first
    front = (u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]) > 0
    side_a = front.index_select(1, topology.edge_faces[:, 0])
    side_b = front.index_select(1, topology.edge_faces[:, 1].clamp(min=0))
    boundary = topology.edge_faces[:, 1] < 0
    return (side_a != side_b) | boundary


def contour_crossings(
    screen: Tensor, faces: Tensor, topology: EdgeTopology, mask: Tensor
) -> ContourCrossings:
    """Find where the contour edges of ``screen`` (B, V, 3) separate foreground from background
    in the hard ``mask`` (B, H, W) produced by rasterising the same vertices."""
    batch, height, width = mask.shape
    with torch.no_grad():
        item, edge, major, steep = _enumerate_crossings(screen.detach(), faces, topology, height, width)
        crossing = _crossing(screen.detach(), topology, item, edge, major, steep, height, width)
        low = crossing.floor()
        low_x = torch.where(steep, low.long(), major)
        low_y = torch.where(steep, major, low.long())
        minor_size = torch.where(steep, width, height)
        inside = (low >= 0) & (low + 1 < minor_size)
        low_pixel = _flat_index(item, low_x.clamp(0, width - 1), low_y.clamp(0, height - 1), height, width)
        high_x, high_y = low_x + steep.long(), low_y + (~steep).long()
        high_pixel = _flat_index(item, high_x.clamp(0, width - 1), high_y.clamp(0, height - 1), height, width)
        flat_mask = mask.reshape(-1)
        low_fg = flat_mask.index_select(0, low_pixel)
        kept = torch.nonzero(inside & (low_fg != flat_mask.index_select(0, high_pixel))).squeeze(1)

        low_fg, low = low_fg.index_select(0, kept), low.index_select(0, kept)
        offset = crossing.index_select(0, kept) - (low + 0.5)  # positive towards the high pixel
        towards_background = torch.where(low_fg, offset, -offset)
        pair = low_pixel.index_select(0, kept) + (~steep.index_select(0, kept)).long() * (
            batch * height * width
        )
        winner = _one_per_pair(pair, towards_background)
        chosen = kept.index_select(0, winner)
        low_fg, low = low_fg.index_select(0, winner), low.index_select(0, winner)
        low_pixel, high_pixel = low_pixel.index_select(0, chosen), high_pixel.index_select(0, chosen)
        foreground = torch.where(low_fg, low_pixel, high_pixel)
        background = torch.where(low_fg, high_pixel, low_pixel)
        target = torch.where(towards_background.index_select(0, winner) > 0, background, foreground)

    pick = (item, edge, major, steep)
    crossing = _crossing(screen, topology, *(value.index_select(0, chosen) for value in pick), height, width)
    offset = crossing - (low + 0.5)
    return ContourCrossings(target, foreground, background, torch.where(low_fg, offset, -offset))


def _crossing(
    screen: Tensor,
    topology: EdgeTopology,
    item: Tensor,
    edge: Tensor,
    major: Tensor,
    steep: Tensor,
    height: int,
    width: int,
) -> Tensor:
    """Minor-axis pixel coordinate where each edge crosses its integer major coordinate (x for
    steep edges, which cross pixel rows; y for the others, which cross pixel columns)."""
    ends = screen_to_pixels(
        gather_vertices(screen, item, topology.edges.index_select(0, edge)), (height, width)
    )
    start, end = ends[:, 0], ends[:, 1]  # (K, 2) each, (px, qy)
    start_major = torch.where(steep, start[:, 1], start[:, 0])
    end_major = torch.where(steep, end[:, 1], end[:, 0])
    start_minor = torch.where(steep, start[:, 0], start[:, 1])
    end_minor = torch.where(steep, end[:, 0], end[:, 1])
    fraction = (major.to(screen.dtype) - start_major) / (end_major - start_major)
    return start_minor + fraction * (end_minor - start_minor)


def antialias(image: Tensor, crossings: ContourCrossings) -> Tensor:
    """Blend (B, H, W, C) ``image`` across the silhouette; gradients reach the vertices through the
    crossing offsets and both pixels' colours (texture, light, background)."""
    return antialias_(image.clone(memory_format=torch.contiguous_format), crossings)


def antialias_(image: Tensor, crossings: ContourCrossings) -> Tensor:
    """``antialias`` in place, for an image the caller has just made (saves a full copy)."""
    flat = image.view(-1, image.shape[-1])
    colours = flat.index_select(0, crossings.foreground) - flat.index_select(0, crossings.background)
    flat.index_add_(0, crossings.target, crossings.weight[:, None] * colours)
    return image


def coverage(mask: Tensor, crossings: ContourCrossings) -> Tensor:
    """(B, H, W) antialiased, differentiable coverage from the hard ``mask``."""
    return antialias_(mask.to(crossings.weight.dtype)[..., None], crossings)[..., 0]


def _flat_index(item: Tensor, x: Tensor, y_up: Tensor, height: int, width: int) -> Tensor:
    return (item * height + (height - 1 - y_up)) * width + x


def _one_per_pair(pair: Tensor, score: Tensor) -> Tensor:
    """Indices of one candidate per pair: the highest score, ties broken by the higher index.
    Pairs are renumbered densely first, so the buffers scale with the candidates, not the image."""
    unique_pairs, slot = torch.unique(pair, return_inverse=True)
    best = torch.full(unique_pairs.shape, float("-inf"), dtype=score.dtype, device=score.device)
    best.scatter_reduce_(0, slot, score, reduce="amax")
    contenders = torch.nonzero(score >= best.index_select(0, slot)).squeeze(1)
    chosen = torch.full(unique_pairs.shape, -1, dtype=torch.long, device=score.device)
    return chosen.scatter_reduce_(0, slot.index_select(0, contenders), contenders, reduce="amax")


def _enumerate_crossings(
    screen: Tensor, faces: Tensor, topology: EdgeTopology, height: int, width: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One candidate per (contour edge, integer pixel row or column it spans): batch item, edge id,
    the integer major coordinate, and whether the edge is steep (major axis y)."""
    item, edge = torch.nonzero(contour_edge_mask(screen, faces, topology), as_tuple=True)
    points = screen_to_pixels(
        gather_vertices(screen, item, topology.edges.index_select(0, edge)), (height, width)
    )
    delta = (points[:, 1] - points[:, 0]).abs()
    steep = delta[:, 1] >= delta[:, 0]
    major_start = torch.where(steep, points[:, 0, 1], points[:, 0, 0])
    major_end = torch.where(steep, points[:, 1, 1], points[:, 1, 0])
    major_size = torch.where(steep, height, width)
    first = torch.minimum(major_start, major_end).ceil().clamp(0, 1 << 30).nan_to_num().long()
    last = torch.maximum(major_start, major_end).floor().clamp(-1, 1 << 30).nan_to_num().long()
    last = torch.minimum(last, major_size - 1)
    valid = (major_start != major_end) & torch.isfinite(points).all(dim=2).all(dim=1)
    counts = torch.where(valid, last - first + 1, torch.zeros_like(last)).clamp(min=0)
    owner, rank = expand_counts(counts)
    major = first.index_select(0, owner) + rank
    return item.index_select(0, owner), edge.index_select(0, owner), major, steep.index_select(0, owner)
