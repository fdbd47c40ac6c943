"""Differentiable triangle-mesh renderer in plain PyTorch (CPU and CUDA, float32, batched).

Frames, pixel centres, winding and the UV convention are defined in ONE place: the docstring of
``backend/render/cameras.py``. Images are channels-last (B, H, W, C); textures are NCHW.

What to import::

    from backend.render import (
        OrthographicCamera, PerspectiveCamera,          # world (B, V, 3) -> screen (x_ndc, y_ndc, depth)
        weak_perspective_camera, pivot_perspective_camera,  # the two published conventions, exactly
        quaternion_matrix, euler_rotation_xyz, focal_from_fov,
        build_edge_topology, EdgeTopology,              # once per topology, pass to every render
        render_mesh, RenderOutput,                      # the whole chain
        rasterize, Fragments,                           # lower-level pieces ...
        interpolate_vertex_attributes, interpolate_corner_attributes, sample_texture,
        blend_vertex_attributes, blend_corner_attributes, sample_texture_points,   # compact (P, C)
        face_normals, vertex_normals, DirectionalLight, lambertian_shading,
        contour_crossings, antialias, coverage,
    )

Typical optimisation step (MeshInversion style)::

    topology = build_edge_topology(faces)                      # once
    camera = weak_perspective_camera(q, s, t)
    out = render_mesh(verts, faces, camera, 256, texture=tex, uvs=uvs, topology=topology)
    loss = (out.alpha - target_mask).square().mean() + (out.rgb - target_rgb).abs().mean()

Lower level, the same thing::

    screen = camera.project(verts)
    frags = rasterize(screen, faces, 256)
    rgb = sample_texture(tex, interpolate_corner_attributes(frags, uvs))
    crossings = contour_crossings(screen, faces, topology, frags.mask)
    alpha = coverage(frags.mask, crossings)
    rgb = antialias(torch.where(frags.mask[..., None], rgb, 0.0), crossings)

Gradients: barycentrics, depth and everything interpolated from them are differentiable with
respect to the screen vertices (hence vertices and camera); texture lookups with respect to the
texture and UVs; ``antialias``/``coverage`` add the silhouette (visibility) gradient in a one-pixel
band along the contour. The hard ``pix_to_face``/``mask`` carry no gradient.

Speed: pass ``cull_backfaces=True`` for closed, outward-wound meshes (it halves the raster work)
and build the topology once. Meshes to start from: ``backend.render.primitives`` (``uv_sphere``
with MeshInversion's template size, ``grid_faces`` for depth maps). Timings: benchmarks/RENDER.md.

``Fragments`` keep data only for the P covered pixels (``pixels``, ``batch_index``, ``faces``,
``bary``, ``depth_values``); the ``blend_*``/``sample_texture_points`` functions work on that
compact form and ``Fragments.to_image(values, fill)`` scatters (P, C) values into an image.
"""

from backend.render.cameras import (
    OrthographicCamera,
    PerspectiveCamera,
    euler_rotation_xyz,
    focal_from_fov,
    pivot_perspective_camera,
    quaternion_matrix,
    screen_to_pixels,
    weak_perspective_camera,
)
from backend.render.interpolate import (
    blend_corner_attributes,
    blend_vertex_attributes,
    interpolate_corner_attributes,
    interpolate_vertex_attributes,
    sample_texture,
    sample_texture_points,
)
from backend.render.pipeline import RenderOutput, render_mesh
from backend.render.rasterize import Fragments, rasterize
from backend.render.shading import DirectionalLight, face_normals, lambertian_shading, vertex_normals
from backend.render.silhouette import ContourCrossings, antialias, contour_crossings, coverage
from backend.render.topology import EdgeTopology, build_edge_topology

__all__ = [
    "ContourCrossings",
    "DirectionalLight",
    "EdgeTopology",
    "Fragments",
    "OrthographicCamera",
    "PerspectiveCamera",
    "RenderOutput",
    "antialias",
    "blend_corner_attributes",
    "blend_vertex_attributes",
    "build_edge_topology",
    "contour_crossings",
    "coverage",
    "euler_rotation_xyz",
    "face_normals",
    "focal_from_fov",
    "interpolate_corner_attributes",
    "interpolate_vertex_attributes",
    "lambertian_shading",
    "pivot_perspective_camera",
    "quaternion_matrix",
    "rasterize",
    "render_mesh",
    "sample_texture",
    "sample_texture_points",
    "screen_to_pixels",
    "vertex_normals",
    "weak_perspective_camera",
]
