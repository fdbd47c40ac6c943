"""Canonical depth map -> relief mesh in Blender's frame, and the matching Blender camera.

The official export meshes every pixel plus one centre vertex per quad, background included.
Here the depth is resampled to a ``resolution`` x ``resolution`` vertex grid (bilinear), faces
are kept only where the input's object mask, seen through the recovered view, covers all three
corners (no background sheet; with ``quads``, both triangles of a grid cell only where it covers
all four, so every polygon is a quad), the rim's vertices slide onto the mask's outline (the rule
alone erodes the outline by up to a cell; the method first carries the object's depth
``RIM_RINGS`` pixels past its mask, so they find it there), unused vertices are dropped, and the
result is placed by a ``ScaleRule`` (``backend/categories.py``): its largest extent is the
category's size in metres, origin at its bottom centre (a relief has no reliable length), or 1 in
a unit box. Frames: GAN2Shape's camera frame is x right, y down, z away from the camera, and the
canonical view looks at the object's front, so object (x, y, z) = (x_cam, -y_cam, -z_cam) and
Blender (X, Y, Z) = (x, -z, y) = (x_cam, z_cam, -y_cam).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from backend.categories import UNIT_BOX, ScaleRule
from backend.methods.gan2shape.depthmap import (
    FOV_DEG,
    ROT_CENTER_DEPTH,
    focal_length,
    transform_points,
)
from backend.polygons import Polygons, pair_quads
from backend.render.bake import pull_push, uv_fragments
from backend.render.cameras import euler_rotation_xyz
from backend.render.interpolate import blend_vertex_attributes
from backend.render.primitives import grid_faces
from backend.render.shading import angle_weighted_vertex_normals, face_normals

CAM_TO_BLENDER = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
"""Rows map camera-frame (x right, y down, z forward) to Blender (X, Y, Z); a proper rotation."""
MASK_LEVEL = 0.5
RIM_RINGS = 6
"""Pixels (of the nets' depth map) the object's depth is carried past its canonical mask before the
relief is meshed (``depthmap.extend_depth``), so the rim's vertices keep the object's depth (chosen
on validation cars: benchmarks/GAN2SHAPE.md, session 15)."""


@dataclass
class Relief:
    """Mesh arrays in Blender's frame plus the similarity that maps camera-frame points onto them."""

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray
    centre: torch.Tensor
    scale: float
    polygons: Polygons | None = None


def relief_mesh(
    depth: torch.Tensor, view: torch.Tensor, view_mask: torch.Tensor, resolution: int, view_uvs: bool,
    fov_deg: float = FOV_DEG, rule: ScaleRule = UNIT_BOX, quads: bool = False,
) -> Relief:
    """Mesh the canonical depth (H, W) where the object is, as the input view shows it.

    Vertices sit on a regular R x R grid spanning the image (R = ``resolution``): the depth is
    resampled there and each vertex back-projected through the original camera, so the relief
    keeps the perspective of the 10 deg lens. Each vertex is then moved by ``view`` into the input
    view and projected onto ``view_mask`` (the input's object mask, any resolution: the photo's
    own, so the outline is as sharp as the photo); faces whose corners all land on the object are
    kept, and the vertices on their rim slide outwards onto the mask's outline (``rim_offsets``),
    along the depth map (which must hold the object's depth a little past its mask:
    ``depthmap.extend_depth``). UVs address the input view (``view_uvs``: textures that are images
    of the photo) or the canonical image (the nets' albedo). ``rule`` sizes and places the relief (default:
    unit box). ``quads``: only whole cells, each also one quad polygon.
    """
    h, w = depth.shape
    r = resolution
    rows, cols = torch.meshgrid(
        torch.linspace(0, h - 1, r, dtype=depth.dtype, device=depth.device),
        torch.linspace(0, w - 1, r, dtype=depth.dtype, device=depth.device),
        indexing="ij",
    )
    f, c = focal_length(w, fov_deg), (w - 1) / 2

    def project(rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Camera-frame points at map positions (rows, cols) with the map's depth there (bilinear),
        and their UVs in the input view."""
        at = torch.stack([cols / max(w - 1, 1), rows / max(h - 1, 1)], dim=-1) * 2 - 1
        sampled = F.grid_sample(depth[None, None], at[None], mode="bilinear", align_corners=True)[0, 0]
        rays = torch.stack([(cols - c) / f, (rows - c) / f, torch.ones_like(cols)], dim=-1)
        points = (rays * sampled[..., None]).reshape(-1, 3)
        seen = transform_points(points[None], view[None])[0]
        pixels = seen[:, :2] / seen[:, 2:].clamp(min=1e-6) * f + c
        return points, torch.stack([(pixels[:, 0] + 0.5) / w, 1 - (pixels[:, 1] + 0.5) / h], dim=-1)

    points, uv_view = project(rows, cols)
    grid = (uv_view * 2 - 1) * uv_view.new_tensor([1.0, -1.0])
    coverage = F.grid_sample(view_mask[None, None].to(depth), grid[None, None], align_corners=False)
    inside = coverage.reshape(-1) >= MASK_LEVEL
    offsets = rim_offsets(coverage.reshape(r, r), inside.reshape(r, r))
    rows = rows + offsets[..., 0] * (h - 1) / max(r - 1, 1)
    cols = cols + offsets[..., 1] * (w - 1) / max(r - 1, 1)
    points, uv_view = project(rows, cols)
    faces = grid_faces(r, r, depth.device)
    kept = inside[faces].all(dim=1)
    if quads:  # grid_faces lists every cell's first triangle, then every cell's second
        kept = kept.reshape(2, -1).all(dim=0).repeat(2)
    faces = faces[kept]
    if faces.shape[0] == 0:
        raise ValueError("the object mask covers no face of the relief grid; the mask is too small")
    used = torch.zeros(r * r, dtype=torch.bool, device=depth.device)
    used[faces.reshape(-1)] = True
    new_index = torch.cumsum(used.long(), 0) - 1
    blender = (points[used] @ CAM_TO_BLENDER.to(points).T).detach().cpu().double()
    placement = rule.place(blender.numpy())
    centre, scale = torch.from_numpy(placement.centre), placement.scale
    vertices = (blender - centre) * scale
    uv_canonical = torch.stack([(cols + 0.5) / w, 1 - (rows + 0.5) / h], dim=-1).reshape(-1, 2)
    uv = uv_view if view_uvs else uv_canonical
    mesh_faces = new_index[faces].cpu().numpy().astype(np.int32)
    mesh_uvs = uv[faces].cpu().numpy().astype(np.float32)
    return Relief(
        vertices=vertices.numpy().astype(np.float32),
        faces=mesh_faces,
        uvs=mesh_uvs,
        centre=centre,
        scale=scale,
        polygons=cell_quads(mesh_faces, mesh_uvs) if quads else None,
    )


def rim_offsets(coverage: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """(R, R, 2) moves, in grid cells (rows, columns), that put the cut's rim on the mask's outline.

    A vertex on the object with a neighbour off it along a triangle edge of ``grid_faces`` (up,
    down, left, right, or along the cells' shared diagonal) sits up to a cell inside the outline; it
    moves towards each such neighbour to where the coverage, taken as linear between the two,
    crosses ``MASK_LEVEL`` (half a cell between a full and an empty vertex), averaging its
    neighbours' moves, so a corner moves diagonally. Other vertices stay.
    """
    total = coverage.new_zeros(*coverage.shape, 2)
    count = coverage.new_zeros(coverage.shape)
    for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, 1), (1, -1)):
        neighbour_cov = torch.roll(coverage, shifts=(-dr, -dc), dims=(0, 1))
        neighbour_in = torch.roll(inside, shifts=(-dr, -dc), dims=(0, 1))
        exists = torch.ones_like(inside)  # rolled-in rows or columns wrap round: no neighbour there
        if dr:
            exists[-1 if dr > 0 else 0, :] = False
        if dc:
            exists[:, -1 if dc > 0 else 0] = False
        step = inside & ~neighbour_in & exists
        fraction = ((coverage - MASK_LEVEL) / (coverage - neighbour_cov).clamp(min=1e-6)).clamp(0, 1)
        move = torch.where(step, fraction, torch.zeros_like(fraction))
        total += move[..., None] * coverage.new_tensor([dr, dc])
        count += step.to(count.dtype)
    return total / count.clamp(min=1)[..., None]


def cell_quads(faces: np.ndarray, uvs: np.ndarray) -> Polygons:
    """The quads of a relief of whole cells, whose faces are every cell's first triangle, then every
    cell's second (``grid_faces``' order, kept by the cut)."""
    cells = np.arange(len(faces) // 2)
    return pair_quads(faces, uvs, np.stack((cells, len(cells) + cells), axis=1))


def towards_light(direction: list[float]) -> list[float]:
    """The unit vector from the relief towards the recovered light, in the mesh's (Blender) frame.

    Unsup3d's normals point into the surface (``depthmap.normals_from_depth``) and a surface is lit
    where n . l > 0, so the light lies along -l in the canonical camera frame, which is the mesh's
    frame up to ``CAM_TO_BLENDER`` (placement only moves and scales it).
    """
    return (CAM_TO_BLENDER.double() @ -torch.tensor(direction, dtype=torch.float64)).tolist()


def relief_shading(
    relief: Relief, camera: dict, ambient: float, diffuse: float, towards: list[float], size: int
) -> torch.Tensor:
    """(S, S) the shading the recovered light gives each texel of a relief with view UVs, the way
    Blender lights the smooth-shaded mesh: ambient + diffuse x max(0, n . ``towards``), n the
    interpolated corner-angle-weighted vertex normal, turned round on faces whose own normal looks
    away from ``camera`` (``blender_camera``), as Blender turns a back face's. Where the relief
    folds over itself, the texel is the surface nearest the camera, which is what it shows. Texels
    no face covers take their neighbours' shading (``pull_push``), so that texture filtering at the
    outline divides by what the rim's texels get.

    Why not the depth map's shading: the relief is resampled from the map and its rim slid onto the
    mask's outline, so the map's normals are not quite the mesh's (benchmarks/GAN2SHAPE.md, session 16).
    """
    vertices = torch.from_numpy(relief.vertices).double()
    faces = torch.from_numpy(relief.faces).long()
    world = torch.tensor(camera["matrix_world"], dtype=torch.float64)
    eye = world[:3, 3]
    distance = (vertices - eye) @ -world[:3, 2]  # along the view: a Blender camera looks down its -Z
    texels = uv_fragments(torch.from_numpy(relief.uvs).double(), size, distance[faces])
    smooth = blend_vertex_attributes(texels, faces, angle_weighted_vertex_normals(vertices[None], faces)[0])
    points = blend_vertex_attributes(texels, faces, vertices)
    own = face_normals(vertices[None], faces)[0].index_select(0, texels.faces)
    back = ((eye - points) * own).sum(dim=1, keepdim=True) < 0
    normal = F.normalize(torch.where(back, -smooth, smooth), dim=1)
    cosine = (normal @ smooth.new_tensor(towards)).clamp(min=0)
    shading = texels.to_image((ambient + diffuse * cosine)[:, None])[0, ..., 0]
    return pull_push(shading[None], texels.mask[0].double())[0].float()


MAX_RESOLUTION = 1024
"""The densest relief grid (``Options.mesh_resolution``'s upper bound)."""


def relief_with_faces(
    depth: torch.Tensor, view: torch.Tensor, view_mask: torch.Tensor, faces: int, view_uvs: bool,
    rule: ScaleRule = UNIT_BOX, tries: int = 4, tolerance: float = 0.02, quads: bool = False,
) -> tuple[Relief, int]:
    """The relief (and its grid resolution) with about ``faces`` triangles.

    Only the grid cells on the object are kept, a fraction that depends on the mask and view and
    barely on the resolution: start from the full grid's count, measure the kept fraction, solve
    2 (R - 1)^2 fraction = ``faces`` for R and repeat while off by more than ``tolerance`` (each try
    is one cheap ``relief_mesh``). The closest try wins; R stays within 4..``MAX_RESOLUTION``.
    """
    resolution = round(math.sqrt(faces / 2)) + 1
    best: tuple[Relief, int] | None = None
    for _ in range(tries):
        relief = relief_mesh(depth, view, view_mask, resolution, view_uvs=view_uvs, rule=rule, quads=quads)
        if best is None or abs(len(relief.faces) - faces) < abs(len(best[0].faces) - faces):
            best = (relief, resolution)
        fraction = len(relief.faces) / (2 * (resolution - 1) ** 2)
        if abs(len(relief.faces) - faces) <= tolerance * faces:
            break
        wanted = min(max(round(math.sqrt(faces / (2 * fraction))) + 1, 4), MAX_RESOLUTION)
        if wanted == resolution:
            break
        resolution = wanted
    assert best is not None
    return best


def blender_camera(view: torch.Tensor, relief: Relief, size: int, fov_deg: float = FOV_DEG) -> dict:
    """World matrix and angle of the Blender camera that sees the relief as the input image shows it.

    The recovered view moves canonical points by p' = R (p - c) + c + t in camera space, so the
    input camera sits at c - R^T (c + t) in canonical camera space with axes R^T e_i; its local
    axes in Blender are (right, up, backward) = M R^T diag(1, -1, -1), M = ``CAM_TO_BLENDER``.
    """
    view = view.detach().cpu().double()
    rot = euler_rotation_xyz(view[None, :3])[0]
    pivot = torch.tensor([0.0, 0.0, ROT_CENTER_DEPTH], dtype=torch.float64)
    position = pivot - rot.T @ (pivot + view[3:6])
    m = CAM_TO_BLENDER.double()
    axes = m @ rot.T @ torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=torch.float64))
    location = (m @ position - relief.centre.double()) * relief.scale
    matrix = torch.eye(4, dtype=torch.float64)
    matrix[:3, :3], matrix[:3, 3] = axes, location
    angle = 2 * math.atan(size / (size - 1) * math.tan(math.radians(fov_deg) / 2))
    return {"type": "PERSP", "matrix_world": matrix.tolist(), "angle": angle}
