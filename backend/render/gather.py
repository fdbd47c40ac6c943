"""Row gathers through ``index_select``: on CPU it is several times faster than advanced indexing
(``x[i]``), and its backward is an ``index_add`` instead of a sort-based ``index_put``."""

from __future__ import annotations

import torch
from torch import Tensor


def face_corners(values: Tensor, faces: Tensor) -> Tensor:
    """(B, V, C) per-vertex values -> (B, F, 3, C) at the corners of (F, 3) ``faces``."""
    batch, _, channels = values.shape
    return values.index_select(1, faces.reshape(-1)).reshape(batch, -1, 3, channels)


def gather_vertices(values: Tensor, item: Tensor, vertex_ids: Tensor) -> Tensor:
    """(B, V, C) values of vertices ``vertex_ids`` (K, n) of batch items ``item`` (K,) -> (K, n, C)."""
    _, num_vertices, channels = values.shape
    flat_ids = (vertex_ids + (item * num_vertices)[:, None]).reshape(-1)
    return values.reshape(-1, channels).index_select(0, flat_ids).reshape(*vertex_ids.shape, channels)


def expand_counts(counts: Tensor) -> tuple[Tensor, Tensor]:
    """For ``counts`` (N,): the owner (sum counts,) of every item and its rank within the owner,
    which enumerates variable-length ranges (pixels of a row, rows of a face) without a loop."""
    owner = torch.repeat_interleave(counts)
    starts = counts.cumsum(0) - counts
    rank = torch.arange(owner.shape[0], device=counts.device) - starts.index_select(0, owner)
    return owner, rank
