"""Renders of procedural cars with ground truth: image, mask, depth, camera, light and mesh.

Cameras follow MeshInversion's weak-perspective convention (``weak_perspective_camera``: quaternion,
scale, translation in NDC): azimuth over the whole circle, elevation 0-35 degrees, the car filling
55-85 % of the frame with a small offset. The mesh is the template displaced by the ground-truth map
(exactly what the generator can express) with the painted texture, lit by an ambient + Lambertian
light of random direction and strength, over a procedural background. Everything is batched: one
rasterisation for a whole batch of cars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from backend.methods.meshinversion.camera_search import view_quaternion
from backend.methods.meshinversion.mesh_gan import pad_texture, render_uvs
from backend.methods.meshinversion.template import SEGMENTS, SphereTemplate, sphere_template
from backend.render.cameras import weak_perspective_camera
from backend.render.pipeline import render_mesh
from backend.render.shading import DirectionalLight
from workbench.data.backgrounds import background
from workbench.data.car_maps import TEXTURE_SIZE, car_maps

VIEW_STREAM = 2**40
"""Views, lights and backgrounds of render seed s come from generator seed s + VIEW_STREAM, a stream
no car parameter draw uses."""
ELEVATION_DEG = (0.0, 35.0)
FILL = (0.55, 0.85)
DEPTH_OFFSET = 3.0
"""View z of the object's centre (MeshInversion's dummy z): keeps every depth positive, so
background pixels (depth 0) and object pixels are told apart by depth alone."""


@dataclass
class RenderedCars:
    """A batch of renders; numpy arrays, one row per seed."""

    seeds: np.ndarray  # (B,) int64
    image: np.ndarray  # (B, S, S, 3) uint8 sRGB, car over background
    mask: np.ndarray  # (B, S, S) bool
    depth: np.ndarray  # (B, S, S) float32 view depth, 0 on background
    quaternion: np.ndarray  # (B, 4) object -> view rotation (w, x, y, z)
    scale: np.ndarray  # (B,)
    translation: np.ndarray  # (B, 2) NDC, x right, y down
    azimuth: np.ndarray  # (B,) radians
    elevation: np.ndarray  # (B,) radians
    light_direction: np.ndarray  # (B, 3) view frame (x right, y down, z forward), towards the light
    light_ambient: np.ndarray  # (B,)
    light_diffuse: np.ndarray  # (B,)
    vertices: np.ndarray  # (B, V, 3) ground-truth mesh, object frame (x right, y up, z front)
    faces: np.ndarray  # (F, 3) int32
    displacement: np.ndarray  # (B, 3, 32, 32) float32
    texture: np.ndarray  # (B, T, T, 3) uint8, row 0 = v 1


def view_draws(seeds: list[int]) -> dict[str, torch.Tensor]:
    """Per seed: azimuth, elevation, fill, offset, light direction and strengths (CPU tensors)."""
    rows = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed) + VIEW_STREAM)
        rows.append(torch.rand(10, generator=gen, dtype=torch.float64))
    u = torch.stack(rows).float()
    lo, hi = (math.radians(e) for e in ELEVATION_DEG)
    return {
        "azimuth": 2 * math.pi * u[:, 0],
        "elevation": lo + (hi - lo) * u[:, 1],
        "fill": FILL[0] + (FILL[1] - FILL[0]) * u[:, 2],
        "offset": 0.1 * (2 * u[:, 3:5] - 1),
        **light_draws(u[:, 5:10]),
    }


def light_draws(u: torch.Tensor) -> dict[str, torch.Tensor]:
    """The photos' light from (B, 5) uniforms: a direction from above on the camera's side, ambient
    0.35-0.65 and Lambertian 0.3-0.8 strengths (also what the start encoder trains under)."""
    light = torch.stack([2 * u[:, 0] - 1, -(0.2 + 0.8 * u[:, 1]), -(0.3 + 0.7 * u[:, 2])], -1)
    return {
        "light_direction": light / light.norm(dim=-1, keepdim=True),
        "light_ambient": 0.35 + 0.3 * u[:, 3],
        "light_diffuse": 0.3 + 0.5 * u[:, 4],
    }


def world_triangulation(template: SphereTemplate) -> tuple[torch.Tensor, torch.Tensor]:
    """(faces, face UV indices) of the procedural world's cars: the template's quads all split along
    the diagonal (ring r, segment k)-(ring r + 1, segment k + 1), as the template was before it took
    the official mirror-image diagonals (issue 22). The world is not the method: keeping its
    triangulation keeps the committed evaluation set and the validation photos, on which every
    recorded number was measured, the same."""
    quads = (len(template.faces) - 2 * SEGMENTS) // 2
    first, second = slice(SEGMENTS, SEGMENTS + quads), slice(SEGMENTS + quads, SEGMENTS + 2 * quads)
    mirrored = (template.faces[second, 0] != template.faces[first, 0])[:, None]  # split along b-c
    out = []
    for table in (template.faces, template.face_uvs):
        a, c, b = table[first].unbind(1)  # a mirrored quad is (a, c, b), (b, c, d)
        d = table[second, 2]
        table = table.clone()
        table[first] = torch.where(mirrored, torch.stack((a, c, d), 1), table[first])
        table[second] = torch.where(mirrored, torch.stack((a, d, b), 1), table[second])
        out.append(table)
    return out[0], out[1]


def render_cars(seeds: list[int], size: int = 256, texture_size: int = TEXTURE_SIZE,
                device: torch.device | str = "cpu") -> RenderedCars:
    """Render the cars ``seeds`` (shape, paint, view, light and background all from the seed)."""
    device = torch.device(device)
    maps = car_maps(seeds, texture_size, device)
    template = sphere_template(16)
    vertices = template.displace(maps.displacement)
    faces, face_uvs = (table.to(device) for table in world_triangulation(template))
    draws = {k: v.to(device) for k, v in view_draws(seeds).items()}
    quat = view_quaternion(draws["azimuth"], draws["elevation"])
    batch = len(seeds)
    ones, zeros = torch.ones(batch, device=device), torch.zeros(batch, 3, device=device)
    unit = weak_perspective_camera(quat, ones, zeros)
    centre = vertices.mean(1, keepdim=True)
    extent = unit.to_view(vertices - centre)[..., :2].abs().amax(dim=(1, 2))
    scale = draws["fill"] / extent
    # Place the vertex centroid at the drawn offset: translation = offset - scale * R centre.
    shift = -scale[:, None] * unit.to_view(centre)[:, 0, :2] + draws["offset"]
    translation = torch.cat([shift, torch.full_like(shift[:, :1], DEPTH_OFFSET)], 1)
    camera = weak_perspective_camera(quat, scale, translation)
    texture = maps.texture * 2 - 1
    light = DirectionalLight(draws["light_direction"], draws["light_ambient"], draws["light_diffuse"])
    backdrop = torch.stack([background(s + VIEW_STREAM, size, device) for s in seeds]) * 2 - 1
    out = render_mesh(
        vertices, faces, camera, size,
        texture=pad_texture(texture, symmetric=True),
        uvs=render_uvs(template.uvs.to(device)[face_uvs], texture_size, texture_size, symmetric=True),
        light=light, background=backdrop, cull_backfaces=True, topology=None,
    )
    image = ((out.rgb.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return RenderedCars(
        seeds=np.asarray(seeds, np.int64),
        image=image.cpu().numpy(),
        mask=out.mask.cpu().numpy(),
        depth=torch.where(out.mask, out.depth, torch.zeros_like(out.depth)).float().cpu().numpy(),
        quaternion=quat.cpu().numpy(),
        scale=scale.cpu().numpy(),
        translation=shift.cpu().numpy(),
        azimuth=draws["azimuth"].cpu().numpy(),
        elevation=draws["elevation"].cpu().numpy(),
        light_direction=draws["light_direction"].cpu().numpy(),
        light_ambient=draws["light_ambient"].cpu().numpy(),
        light_diffuse=draws["light_diffuse"].cpu().numpy(),
        vertices=vertices.cpu().numpy(),
        faces=faces.to(torch.int32).cpu().numpy(),
        displacement=maps.displacement.cpu().numpy(),
        texture=(maps.texture * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy(),
    )


def render_sample(seed: int, size: int = 256, texture_size: int = TEXTURE_SIZE,
                  device: torch.device | str = "cpu") -> RenderedCars:
    """One car's render and ground truth (a batch of one; index ``[0]`` of each array)."""
    return render_cars([seed], size, texture_size, device)
