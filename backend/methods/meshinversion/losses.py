"""MeshInversion's losses: chamfer mask, focal pixel/feature chamfer, latent prior, smoothness.

All point sets are batched and padded: ``points`` (B, N, D) with a ``valid`` (B, N) mask, so
images with different numbers of mask pixels share one tensor. Every loss is returned per image
(B,), so a batched optimisation is the sum of independent ones.

Chamfer terms need a nearest neighbour per point. The neighbour is found without gradients, in
chunks of rows, so memory stays bounded at ``CHUNK_ELEMENTS`` distances whatever the number of
points; the cost of the chosen pairs is then recomputed with autograd. This gives exactly the
gradient of ``min`` (which flows through the argmin pair only) at a fraction of the memory.

Differences from the official code (``chamfer_python.py``): float32 instead of float64, and
mask pixel positions at pixel centres (our renderer's convention) instead of pixel corners.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CHUNK_ELEMENTS = 1 << 20
"""Largest number of pairwise costs held at once (4 MiB in float32, cache-friendly)."""
FOCAL_RADIUS = 0.16
"""``xy_threshold``: matches closer than 2 * 0.16 NDC cost nothing for their position."""


def mask_points(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, H, W) bool -> NDC centres (B, H*W, 2) of all pixels and which belong to the mask."""
    batch, height, width = mask.shape
    device = mask.device
    x = (2 * torch.arange(width, device=device, dtype=torch.float32) + 1 - width) / width
    y = (height - 2 * torch.arange(height, device=device, dtype=torch.float32) - 1) / height
    grid = torch.stack(torch.meshgrid(x, y, indexing="xy"), dim=-1).reshape(1, -1, 2)
    return grid.expand(batch, -1, -1), mask.reshape(batch, -1)


def subsample(
    valid: torch.Tensor, count: int, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (B, K) of at most ``count`` random valid entries per row, and which of them are valid.

    The official code keeps up to 8192 random mask pixels per set (``torch.randperm``); random
    scores plus ``topk`` do the same for a whole batch at once.
    """
    count = min(count, valid.shape[1])
    scores = torch.rand(valid.shape, generator=generator, device=valid.device)
    scores = scores.masked_fill(~valid, -1.0)
    top, index = scores.topk(count, dim=1)
    return index, top >= 0


def gather_points(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """(B, N, D) values at (B, K) indices -> (B, K, D)."""
    return values.gather(1, index[..., None].expand(-1, -1, values.shape[-1]))


def focal_position_term(squared_distance: torch.Tensor) -> torch.Tensor:
    """Official ``xy_term`` with k = alpha = 1: 1 within 2 * FOCAL_RADIUS, then growing linearly."""
    return 1 + F.relu(squared_distance - (2 * FOCAL_RADIUS) ** 2)


def pair_cost(
    a_xy: torch.Tensor, a_feat: torch.Tensor | None, b_xy: torch.Tensor, b_feat: torch.Tensor | None
) -> torch.Tensor:
    """Cost of matching a to b (broadcasting): squared distance, or the focal cost with features."""
    position = (a_xy - b_xy).square().sum(-1)
    if a_feat is None or b_feat is None:
        return position
    return focal_position_term(position) * ((a_feat - b_feat).square().sum(-1) + 1)


def augmented(a: torch.Tensor, b: torch.Tensor, offset: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows [a, |a|^2 + offset, 1] and columns [-2 b, 1, |b|^2] whose product is |a - b|^2 + offset,
    so a whole block of (shifted) squared distances is one matrix product."""
    ones_a, ones_b = torch.ones_like(a[..., :1]), torch.ones_like(b[..., :1])
    left = torch.cat((a, a.square().sum(-1, keepdim=True) + offset, ones_a), dim=-1)
    right = torch.cat((-2 * b, ones_b, b.square().sum(-1, keepdim=True)), dim=-1)
    return left, right.transpose(1, 2)


@torch.no_grad()
def nearest_index(
    a_xy: torch.Tensor,
    a_feat: torch.Tensor | None,
    b_xy: torch.Tensor,
    b_feat: torch.Tensor | None,
    b_valid: torch.Tensor,
) -> torch.Tensor:
    """(B, N) index of the cheapest valid b for every a, computed in row chunks of bounded size.

    With features the cost is the focal one, (1 + relu(Dp - r^2)) (Dc + 1), built in place from
    two matrix products; without, the squared distance.
    """
    batch, n, m = a_xy.shape[0], a_xy.shape[1], b_xy.shape[1]
    rows = max(1, CHUNK_ELEMENTS // max(1, batch * m))
    blocked = None if bool(b_valid.all()) else ~b_valid[:, None, :]
    focal = a_feat is not None and b_feat is not None
    xy_left, xy_right = augmented(a_xy, b_xy, -((2 * FOCAL_RADIUS) ** 2) if focal else 0.0)
    if focal:
        feat_left, feat_right = augmented(a_feat, b_feat, 1.0)
    # Preallocated blocks and result: thousands of small steps (many rows in a batch) that each
    # allocated their own would fragment the heap until it holds gigabytes.
    best = torch.empty(batch, n, dtype=torch.long, device=a_xy.device)
    full = xy_left.new_empty(batch, min(rows, n), m)
    full_feat = xy_left.new_empty(batch, min(rows, n), m) if focal else None
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        short = stop - start < full.shape[1]
        cost = xy_left.new_empty(batch, stop - start, m) if short else full
        torch.bmm(xy_left[:, start:stop], xy_right, out=cost)
        if focal:
            feat = xy_left.new_empty(batch, stop - start, m) if short else full_feat
            torch.bmm(feat_left[:, start:stop], feat_right, out=feat)
            cost.relu_().add_(1).mul_(feat)
        if blocked is not None:
            cost.masked_fill_(blocked, float("inf"))
        best[:, start:stop] = cost.argmin(dim=2)
    return best


def one_sided_chamfer(
    a_xy: torch.Tensor,
    a_valid: torch.Tensor,
    b_xy: torch.Tensor,
    b_valid: torch.Tensor,
    a_feat: torch.Tensor | None = None,
    b_feat: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per image (B,): mean over valid a of the cost to its cheapest b (0 when either set is empty)."""
    index = nearest_index(a_xy, a_feat, b_xy, b_feat, b_valid)
    cost = pair_cost(
        a_xy,
        a_feat,
        gather_points(b_xy, index),
        None if b_feat is None else gather_points(b_feat, index),
    )
    usable = a_valid & b_valid.any(dim=1, keepdim=True)
    weights = usable.float()
    return (cost * weights).sum(1) / weights.sum(1).clamp(min=1)


def chamfer_mask_loss(
    vertices_xy: torch.Tensor, target_xy: torch.Tensor, target_valid: torch.Tensor
) -> torch.Tensor:
    """Two-sided squared chamfer between all projected vertices and the target mask pixels (B,).

    Every vertex counts, hidden or not, as in the official code: the mesh outline must cover the
    mask and no vertex may stray outside it.
    """
    every_vertex = torch.ones(vertices_xy.shape[:2], dtype=torch.bool, device=vertices_xy.device)
    return one_sided_chamfer(vertices_xy, every_vertex, target_xy, target_valid) + one_sided_chamfer(
        target_xy, target_valid, vertices_xy, every_vertex
    )


def pixel_chamfer_loss(
    pred_xy: torch.Tensor,
    pred_rgb: torch.Tensor,
    pred_valid: torch.Tensor,
    target_xy: torch.Tensor,
    target_rgb: torch.Tensor,
    target_valid: torch.Tensor,
) -> torch.Tensor:
    """Official one-sided focal chamfer from rendered pixels to target pixels in RGB + xy (B,)."""
    return one_sided_chamfer(pred_xy, pred_valid, target_xy, target_valid, pred_rgb, target_rgb)


def feature_chamfer_loss(
    pred_xy: torch.Tensor,
    pred_feat: torch.Tensor,
    pred_valid: torch.Tensor,
    target_xy: torch.Tensor,
    target_feat: torch.Tensor,
    target_valid: torch.Tensor,
) -> torch.Tensor:
    """Official two-sided focal chamfer on L2-normalised features (B,): half of each direction."""
    forward = one_sided_chamfer(pred_xy, pred_valid, target_xy, target_valid, pred_feat, target_feat)
    backward = one_sided_chamfer(target_xy, target_valid, pred_xy, pred_valid, target_feat, pred_feat)
    return 0.5 * (forward + backward)


def latent_loss(z: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of z under N(0, I) up to a constant: mean(z^2 / 2) per image (B,)."""
    return z.square().mean(dim=1) / 2


def face_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B, V, 3) vertices -> (B, F, 3) unit normals."""
    corners = vertices[:, faces]
    return F.normalize(
        torch.linalg.cross(corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0]), dim=-1
    )


def flat_loss(vertices: torch.Tensor, faces: torch.Tensor, edge_faces: torch.Tensor) -> torch.Tensor:
    """ConvMesh's smoothness term (B,): sum over interior edges of (cos(n1, n2) - 1)^2.

    The official form (per face, mean over faces per neighbour slot, summed over the three
    slots, times F / 2) counts each edge twice and halves it again, which is this sum.
    """
    normals = face_normals(vertices, faces)
    interior = edge_faces[:, 1] >= 0
    pairs = edge_faces[interior]
    cosine = (normals[:, pairs[:, 0]] * normals[:, pairs[:, 1]]).sum(-1)
    return (cosine - 1).square().sum(dim=1)


def laplacian_loss(vertices: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Mean squared uniform-Laplacian (B,): each vertex's distance to the mean of its neighbours."""
    count = vertices.shape[1]
    both = torch.cat((edges, edges.flip(1)))
    neighbour_sum = torch.zeros_like(vertices).index_add(1, both[:, 0], vertices[:, both[:, 1]])
    degree = torch.zeros(count, device=vertices.device, dtype=vertices.dtype).index_add(
        0, both[:, 0], torch.ones(len(both), device=vertices.device, dtype=vertices.dtype)
    )
    offsets = neighbour_sum / degree.clamp(min=1)[None, :, None] - vertices
    return offsets.square().sum(-1).mean(dim=1)


def silhouette_loss(alpha: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) 1 - soft IoU between an antialiased coverage (B, H, W) and a target mask (not in the paper)."""
    target = target.to(alpha.dtype)
    inter = (alpha * target).flatten(1).sum(1)
    union = (alpha + target - alpha * target).flatten(1).sum(1)
    return 1 - inter / union.clamp(min=1)


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,) intersection over union of two (B, H, W) bool masks."""
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return inter / union.clamp(min=1)
