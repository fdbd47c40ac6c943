"""The re-projected texture: the photo where it sees the edited mesh, something sensible elsewhere.

Layers, front to back (the same weights as the MeshInversion texture stage, ``appearance.py``):

1. seen: the photo's colour, weighted by how squarely the camera sees the texel (``bake_photo``);
2. where it does not see, the first that applies:
   * the *previous* texture (the one the mesh's UVs address now), with the difference to the photo
     along the seen region's border diffused into it and faded out with the distance, so the photo
     joins it without a seam while the rest keeps the artist's texture untouched;
   * the *mirrored* texel when the mesh is still mirror-symmetric in X: a second bake of the mesh
     mirrored in X gives each texel the photo's colour of its mirror image (any UV layout);
   * the photo's colours diffused from the seen texels (``pull_push``).

Texels no face covers get their neighbours' colours, so bilinear lookups never read black.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from backend.render.bake import Bake, blur, pull_push
from backend.render.primitives import sample_surface
from backend.render.shading import face_normals

SEAM_FADE = 1 / 32
"""How far (Gaussian std, fraction of the texture size) the photo's colour difference at the border
of the seen region reaches into the previous texture."""
SYMMETRY_SAMPLES = 32768
SYMMETRY_QUERIES = 1024
SYMMETRY_TOLERANCE = 0.01
"""Mirror-symmetric in X: the mirrored surface lies within this fraction of the mesh's largest extent
of the surface (95th percentile, beyond the sampling's own spacing)."""


@dataclass
class Reprojection:
    """``texture`` (3, N, N) in [0, 1]; fractions of the covered texture area taken from the photo
    directly (``seen``), through the mirror, kept from the previous texture, and filled."""

    texture: Tensor
    seen: float
    mirrored: float
    kept: float
    filled: float


def compose(bake: Bake, previous: Tensor | None = None, mirrored: Bake | None = None) -> Reprojection:
    """Composite ``bake`` over ``previous`` (3, N, N) in [0, 1], else over the ``mirrored`` bake, else
    over the photo's diffused colours."""
    direct, photo = bake.opacity, bake.photo
    through_mirror = torch.zeros_like(direct)
    if previous is not None:
        border = pull_push(photo - previous, direct)
        nearby = (2 * blur(direct, SEAM_FADE * direct.shape[-1])).clamp(0, 1)
        behind = (previous + nearby * border).clamp(0, 1)
    elif mirrored is not None:
        mirror, mirror_photo = mirrored.opacity, mirrored.photo
        through_mirror = mirror * (1 - direct)
        seen = direct + through_mirror
        filled = pull_push((direct * photo + through_mirror * mirror_photo) / seen.clamp(min=1e-6), seen)
        behind = mirror * mirror_photo + (1 - mirror) * filled
    else:
        behind = pull_push(photo, direct)
    texture = photo * direct + behind * (1 - direct)
    covered = bake.covered
    area = float(covered.sum().clamp(min=1))
    seen_area = float(direct[covered].sum()) / area
    mirror_area = float(through_mirror[covered].sum()) / area
    rest = max(0.0, 1.0 - seen_area - mirror_area)
    return Reprojection(
        texture=pull_push(texture, covered.to(texture.dtype)).clamp(0, 1),
        seen=seen_area,
        mirrored=mirror_area,
        kept=rest if previous is not None else 0.0,
        filled=0.0 if previous is not None else rest,
    )


def mirror_x(vertices: Tensor) -> Tensor:
    """(V, 3) vertices mirrored in Blender's X (the left-right axis of the results)."""
    return vertices * vertices.new_tensor([-1.0, 1.0, 1.0])


def is_mirror_symmetric(vertices: Tensor, faces: Tensor, seed: int = 0) -> bool:
    """Whether the surface mirrored in X lies on itself, measured on area-weighted surface samples
    against the same test without the mirror (the samples' own spacing)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    vertices, faces = vertices.double().cpu(), faces.long().cpu()
    reference = _samples(vertices, faces, SYMMETRY_SAMPLES, generator)
    queries = _samples(vertices, faces, SYMMETRY_QUERIES, generator)
    extent = float((vertices.max(dim=0).values - vertices.min(dim=0).values).max().clamp(min=1e-12))
    own = _nearest_distance(queries, reference).quantile(0.95)
    mirrored = _nearest_distance(mirror_x(queries), reference).quantile(0.95)
    return float(mirrored - own) <= SYMMETRY_TOLERANCE * extent


def _samples(vertices: Tensor, faces: Tensor, count: int, generator: torch.Generator) -> Tensor:
    """Area-uniform surface points, or the corners themselves when every face is degenerate."""
    if float(face_normals(vertices[None], faces, unit=False).norm(dim=-1).sum()) <= 0:
        return vertices[faces].reshape(-1, 3)[:count]
    return sample_surface(vertices, faces, count, generator)


def _nearest_distance(queries: Tensor, points: Tensor, chunk: int = 256) -> Tensor:
    """(Q,) distance from each query to its nearest point, in chunks of queries (bounded memory)."""
    return torch.cat([torch.cdist(part, points).min(dim=1).values for part in queries.split(chunk)])
