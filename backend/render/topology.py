"""Edge -> face table of a triangle mesh, built once per topology and passed to every render.

Silhouette gradients only need the contour edges (an edge between a front- and a back-facing
face, or a boundary edge); finding them per frame is a gather on this table. The table depends
on the faces only, so a caller building it once per template pays nothing per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class EdgeTopology:
    """``edges`` (E, 2) vertex ids (smaller first); ``edge_faces`` (E, 2) the faces on either side,
    the second being -1 for a boundary edge. A non-manifold edge (more than two faces) keeps the
    lowest and the highest face id, so its contour test is approximate."""

    edges: Tensor
    edge_faces: Tensor

    def to(self, device: torch.device | str) -> EdgeTopology:
        """The same table on another device."""
        return EdgeTopology(self.edges.to(device), self.edge_faces.to(device))


def build_edge_topology(faces: Tensor) -> EdgeTopology:
    """Unique undirected edges of (F, 3) ``faces`` and the faces adjacent to each."""
    faces = faces.long()
    num_faces = faces.shape[0]
    corners = torch.stack((faces, faces.roll(-1, dims=1)), dim=-1).reshape(-1, 2)
    face_ids = torch.arange(num_faces, device=faces.device).repeat_interleave(3)
    low, high = corners.min(dim=1).values, corners.max(dim=1).values
    vertex_count = int(faces.max()) + 1
    keys = low * vertex_count + high
    unique_keys, edge_of_corner, counts = torch.unique(keys, return_inverse=True, return_counts=True)
    num_edges = unique_keys.shape[0]
    first = torch.full((num_edges,), num_faces, dtype=torch.long, device=faces.device)
    first = first.scatter_reduce(0, edge_of_corner, face_ids, reduce="amin")
    last = torch.full((num_edges,), -1, dtype=torch.long, device=faces.device)
    last = last.scatter_reduce(0, edge_of_corner, face_ids, reduce="amax")
    last = torch.where(counts > 1, last, torch.full_like(last, -1))
    edges = torch.stack((unique_keys // vertex_count, unique_keys % vertex_count), dim=1)
    return EdgeTopology(edges=edges, edge_faces=torch.stack((first, last), dim=1))
