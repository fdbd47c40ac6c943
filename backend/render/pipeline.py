"""``render_mesh``: camera -> rasterise -> colour (texture or vertex colours) -> light ->
silhouette antialiasing, for callers that want the whole chain in one call."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from backend.render.cameras import OrthographicCamera, PerspectiveCamera
from backend.render.interpolate import blend_corner_attributes, blend_vertex_attributes, sample_texture_points
from backend.render.rasterize import Fragments, rasterize
from backend.render.shading import DirectionalLight, face_normals, lambertian_shading_points, vertex_normals
from backend.render.silhouette import antialias_, contour_crossings, coverage
from backend.render.topology import EdgeTopology, build_edge_topology


@dataclass
class RenderOutput:
    """Images are channels-last. ``rgb`` (B, H, W, C) and ``alpha`` (B, H, W) are antialiased along
    the silhouette (differentiable there); ``mask`` (B, H, W) bool is the hard coverage; ``depth``
    (B, H, W) the view depth (0 on background); ``normals`` (B, H, W, 3) unit outward normals in
    the camera's view frame (0 on background). ``depth`` and ``normals`` are built on first access,
    so a loss that does not use them does not pay for them."""

    rgb: Tensor
    alpha: Tensor
    fragments: Fragments
    view_vertices: Tensor
    faces: Tensor
    smooth_normals: bool = True
    point_normals: Tensor | None = None

    @property
    def mask(self) -> Tensor:
        return self.fragments.mask

    @property
    def pix_to_face(self) -> Tensor:
        return self.fragments.pix_to_face

    @property
    def depth(self) -> Tensor:
        return self.fragments.depth

    @property
    def normals(self) -> Tensor:
        if self.point_normals is None:
            self.point_normals = pixel_normals(
                self.fragments, self.view_vertices, self.faces, self.smooth_normals
            )
        return self.fragments.to_image(self.point_normals)


def render_mesh(
    vertices: Tensor,
    faces: Tensor,
    camera: OrthographicCamera | PerspectiveCamera,
    image_size: int | tuple[int, int],
    *,
    texture: Tensor | None = None,
    uvs: Tensor | None = None,
    vertex_colors: Tensor | None = None,
    light: DirectionalLight | None = None,
    background: Tensor | float = 0.0,
    topology: EdgeTopology | None = None,
    cull_backfaces: bool = False,
    antialiased: bool = True,
    smooth_normals: bool = True,
    padding_mode: str = "border",
) -> RenderOutput:
    """Render (B, V, 3) world ``vertices`` with (F, 3) ``faces`` through ``camera``.

    Colour: ``texture`` (B or 1, C, Ht, Wt) sampled at per-corner ``uvs`` ((F, 3, 2) or
    (B, F, 3, 2), v up), else ``vertex_colors`` ((B, V, C) or (V, C)), else white. ``light``
    multiplies it (view-frame direction); without one the colour is unlit. ``background`` is a
    float or a tensor broadcastable to (B, H, W, C). ``topology`` (from ``build_edge_topology``)
    is needed for antialiasing; pass it to avoid rebuilding it every call.
    """
    faces = faces.long()
    view = camera.to_view(vertices)
    screen = camera.view_to_screen(view)
    fragments = rasterize(
        screen, faces, image_size, perspective=camera.perspective, cull_backfaces=cull_backfaces
    )

    if texture is not None:
        if uvs is None:
            raise ValueError("render_mesh: a texture needs per-corner uvs (F, 3, 2)")
        uv = blend_corner_attributes(fragments, uvs)
        colour = sample_texture_points(texture, uv, fragments.batch_index, padding_mode)
    elif vertex_colors is not None:
        colour = blend_vertex_attributes(fragments, faces, vertex_colors)
    else:
        colour = vertices.new_ones(fragments.pixels.shape[0], 3)
    normals = None
    if light is not None:
        normals = pixel_normals(fragments, view, faces, smooth_normals)
        colour = colour * lambertian_shading_points(normals, light, fragments.batch_index)
    rgb = fragments.to_image(colour, background)

    mask = fragments.mask
    if antialiased:
        topology = build_edge_topology(faces) if topology is None else topology
        crossings = contour_crossings(screen, faces, topology, mask)
        rgb, alpha = antialias_(rgb, crossings), coverage(mask, crossings)
    else:
        alpha = mask.to(rgb.dtype)
    return RenderOutput(rgb, alpha, fragments, view, faces, smooth_normals, normals)


def pixel_normals(fragments: Fragments, view: Tensor, faces: Tensor, smooth: bool) -> Tensor:
    """(P, 3) unit normals at the covered pixels: interpolated vertex normals, or flat per face."""
    if smooth:
        return F.normalize(
            blend_vertex_attributes(fragments, faces, vertex_normals(view, faces)), dim=-1, eps=1e-12
        )
    normals = face_normals(view, faces)
    return normals.reshape(-1, 3).index_select(0, fragments.batch_index * faces.shape[0] + fragments.faces)
