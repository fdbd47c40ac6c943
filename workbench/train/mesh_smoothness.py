"""ConvMesh's "flat" smoothness loss: neighbouring faces of the generated mesh should be coplanar.

loss = F/2 * sum over the 3 neighbours of mean_f (cos(n_f, n_neighbour) - 1)^2 (research notes §2.5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def face_neighbours(faces: torch.Tensor) -> torch.Tensor:
    """(F, 3) index of the face across each edge (v0v1, v1v2, v2v0) of a closed manifold mesh.

    Every undirected edge is shared by exactly two faces, so sorting the edge keys puts the two
    faces of each edge next to each other."""
    n_faces = faces.shape[0]
    a, b = faces, faces.roll(-1, dims=1)
    key = (torch.minimum(a, b) * (int(faces.max()) + 1) + torch.maximum(a, b)).reshape(-1)
    order = torch.argsort(key, stable=True)
    if not bool((key[order[0::2]] == key[order[1::2]]).all()):
        raise ValueError("mesh is not closed and manifold: an edge is not shared by exactly two faces")
    owner = torch.arange(n_faces, device=faces.device).repeat_interleave(3)
    neighbour = torch.empty_like(owner)
    neighbour[order[0::2]] = owner[order[1::2]]
    neighbour[order[1::2]] = owner[order[0::2]]
    return neighbour.reshape(n_faces, 3)


def flat_loss(vertices: torch.Tensor, faces: torch.Tensor, neighbours: torch.Tensor) -> torch.Tensor:
    """ConvMesh's loss_flat of (B, V, 3) meshes sharing ``faces`` (F, 3) with ``neighbours`` (F, 3)."""
    tri = vertices[:, faces]  # (B, F, 3, 3)
    edge1, edge2 = tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0]
    normals = F.normalize(torch.cross(edge1, edge2, dim=-1), dim=-1)
    cos = (normals[:, :, None, :] * normals[:, neighbours]).sum(-1)  # (B, F, 3)
    return ((cos - 1) ** 2).mean(dim=(0, 1)).sum() * faces.shape[0] / 2
