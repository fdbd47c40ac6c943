"""Bake a photo into a mesh's UV texture through the camera that took it, and fill what it misses.

``bake_photo`` rasterises the UV layout itself (each texel learns which surface point it holds),
projects those points through the camera into the photo, and keeps a per-texel *weight*: how
squarely the surface faces the camera, times whether the z-buffer sees it, times whether it lands
inside the photo's object mask (eroded by a pixel, so background fringes never bleed in). The
caller decides what fills the texels of weight 0 (``pull_push`` diffuses the known colours;
MeshInversion composites its GAN texture there).

Conventions are the renderer's (``cameras.py``): UVs per face corner, u right and v up, texture
row 0 at v = 1, texel centres at (j + 0.5) / N; photo pixel centres at the NDC of ``cameras.py``.
Works for any camera with ``project``/``to_view`` and any mesh (open or closed, any winding).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.render.interpolate import blend_vertex_attributes
from backend.render.rasterize import Fragments, rasterize
from backend.render.shading import vertex_normals

CONFIDENCE_GAIN = 3.0
"""A texel seen at cos(angle) >= 1 / gain is taken from the photo entirely (``Bake.opacity``)."""
DEPTH_TOLERANCE = 0.01
"""A texel is visible when its depth is within this fraction of the mesh's depth range of the
z-buffer's (the shadow-map bias: the z-buffer is sampled at the nearest photo pixel)."""


@dataclass
class Bake:
    """``colour`` (3, N, N) photo colours in [0, 1] (0 where ``weight`` is 0); ``weight`` (N, N) in
    [0, 1]; ``covered`` (N, N) bool, texels some face of the UV layout covers."""

    colour: Tensor
    weight: Tensor
    covered: Tensor

    @property
    def opacity(self) -> Tensor:
        """(N, N) how much of each texel composites take from the photo: 1 from a squarely enough
        seen texel (``CONFIDENCE_GAIN``), fading to 0 at grazing angles and edges."""
        return (CONFIDENCE_GAIN * self.weight).clamp(0, 1)

    @property
    def photo(self) -> Tensor:
        """(3, N, N) the photo's colour itself wherever the bake saw the texel at all."""
        return self.colour / self.weight.clamp(min=1e-6)


def uv_fragments(corner_uvs: Tensor, size: int, corner_depth: Tensor | None = None) -> Fragments:
    """Rasterise the UV layout (F, 3, 2) at ``size`` x ``size``: texel (i, j) gets the face whose UV
    triangle covers its centre, and the barycentrics there. Where UV triangles overlap, the one
    with the smallest ``corner_depth`` (F, 3) holds the texel (a layout that is a camera's view of
    the mesh: what the camera sees)."""
    flat = corner_uvs.reshape(1, -1, 2) * 2 - 1
    depth = torch.zeros_like(flat[..., :1]) if corner_depth is None else corner_depth.reshape(1, -1, 1)
    screen = torch.cat((flat, depth.to(flat)), dim=-1)
    faces = torch.arange(flat.shape[1], device=corner_uvs.device).reshape(-1, 3)
    return rasterize(screen, faces, size)


def bake_photo(
    vertices: Tensor, faces: Tensor, corner_uvs: Tensor, camera: Any, photo: Tensor, mask: Tensor, size: int
) -> Bake:
    """Project ``photo`` (3, H, W) in [0, 1] with object ``mask`` (H, W) in [0, 1] onto the texels of
    a ``size`` x ``size`` texture of the mesh ``vertices`` (V, 3), ``faces`` (F, 3), ``corner_uvs``
    (F, 3, 2); ``camera`` is a batch-of-one camera of ``backend.render.cameras``."""
    faces = faces.long()
    texels = uv_fragments(corner_uvs, size)
    points = blend_vertex_attributes(texels, faces, vertices)
    vertex_normal = vertex_normals(vertices[None], faces)[0]
    normals = F.normalize(blend_vertex_attributes(texels, faces, vertex_normal), dim=1)

    view_points = camera.to_view(points[None])[0]
    view_normals = F.normalize(camera.to_view((points + normals)[None])[0] - view_points, dim=1)
    rays = F.normalize(view_points, dim=1) if camera.perspective else view_points.new_tensor([0.0, 0.0, 1.0])
    facing = (view_normals * rays).sum(dim=1).abs()  # the z-buffer, not the winding, decides sides

    screen = camera.view_to_screen(view_points[None])[0]
    height, width = photo.shape[-2:]
    visible = _visible(vertices, faces, camera, screen, (height, width))
    grid = (screen[:, :2] * screen.new_tensor([1.0, -1.0]))[None, None]
    colour = F.grid_sample(photo[None], grid, align_corners=False)[0, :, 0]
    inner = -F.max_pool2d(-mask[None, None], 3, stride=1, padding=1)
    inside = F.grid_sample(inner, grid, align_corners=False)[0, 0, 0]

    weight = facing * visible * inside
    image = texels.to_image(torch.cat((colour.t() * weight[:, None], weight[:, None]), dim=1))[0]
    return Bake(image[..., :3].permute(2, 0, 1), image[..., 3], texels.mask[0])


def _visible(
    vertices: Tensor, faces: Tensor, camera: Any, screen: Tensor, image_size: tuple[int, int]
) -> Tensor:
    """(P,) 1.0 where a texel's projection ``screen`` (P, 3) is not behind the mesh's own z-buffer."""
    mesh_screen = camera.project(vertices[None])
    fragments = rasterize(mesh_screen, faces, image_size, perspective=camera.perspective)
    zbuffer = fragments.to_image(fragments.depth_values, float("inf"))[0]
    height, width = image_size
    col = ((screen[:, 0] + 1) * width / 2 - 0.5).round().long().clamp(0, width - 1)
    row = ((1 - screen[:, 1]) * height / 2 - 0.5).round().long().clamp(0, height - 1)
    depth = mesh_screen[0, :, 2]
    tolerance = DEPTH_TOLERANCE * float((depth.max() - depth.min()).clamp(min=1e-6))
    return (screen[:, 2] <= zbuffer[row, col] + tolerance).to(screen.dtype)


def pull_push(colour: Tensor, weight: Tensor, levels: int | None = None) -> Tensor:
    """Fill (C, N, M) ``colour`` where ``weight`` (N, M) in [0, 1] is low from the weighted average of
    ever coarser neighbourhoods (a mip pyramid of premultiplied colour, then composited back up):
    smooth, seam-free and O(N M)."""
    levels = levels or max(1, math.ceil(math.log2(max(colour.shape[-2:]))))  # down to 1 x 1
    premultiplied = [colour[None] * weight[None, None]]
    weights = [weight[None, None]]
    for _ in range(levels):
        if max(weights[-1].shape[-2:]) < 2:
            break
        premultiplied.append(F.avg_pool2d(premultiplied[-1], 2, ceil_mode=True))
        weights.append(F.avg_pool2d(weights[-1], 2, ceil_mode=True))
    filled = premultiplied[-1] / weights[-1].clamp(min=1e-8)
    for level in range(len(weights) - 2, -1, -1):
        shape = weights[level].shape[-2:]
        coarse = F.interpolate(filled, size=shape, mode="bilinear", align_corners=False)
        own = premultiplied[level] / weights[level].clamp(min=1e-8)
        alpha = weights[level].clamp(0, 1)
        filled = alpha * own + (1 - alpha) * coarse
    return filled[0]


def blur(image: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of an (N, M) map with std ``sigma`` texels: wraps in u (the UV seam), clamps in v
    (the poles). Wide blurs run on a map averaged down to a few texels per std, then scaled back up
    (they only carry low frequencies), so the cost does not grow with the width."""
    factor = max(1, int(sigma // 2))
    small = F.avg_pool2d(image[None, None], factor, ceil_mode=True) if factor > 1 else image[None, None]
    sigma = sigma / factor
    radius = max(1, int(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype, device=image.device)
    kernel = torch.exp(-0.5 * (offsets / sigma).square())
    kernel = kernel / kernel.sum()
    across = F.pad(small, (radius, radius, 0, 0), mode="circular")
    blurred = F.conv2d(across, kernel.view(1, 1, 1, -1))
    blurred = F.conv2d(F.pad(blurred, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
    if factor > 1:
        blurred = F.interpolate(blurred, size=image.shape[-2:], mode="bilinear", align_corners=False)
    return blurred[0, 0]
