"""Renders of the procedural cars for GAN2Shape's demo models (StyleGAN2 and mask network).

Each car (seeded shape + paint) is cast into a star-shaped mesh with its UV texture and rendered
from a few views: azimuth uniform over the front half-circle band (front view = 0, the car's +z
towards the camera), a modest elevation, a near-orthographic 10-degree perspective camera as in
GAN2Shape, a random ambient + directional light, on a plain grey background. Plain backgrounds
keep a small GAN's job (and GAN2Shape's symmetric-shape assumptions) well-posed; the mask network
sees the same distribution because it segments GAN samples.

The set is rendered once and cached as ``.npz`` (uint8 images and masks, float views and lights).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from backend.render.cameras import PerspectiveCamera, focal_from_fov
from backend.render.pipeline import render_mesh
from backend.render.primitives import uv_sphere
from backend.render.shading import DirectionalLight
from backend.render.topology import build_edge_topology
from workbench.data.car_maps import texture_maps
from workbench.data.car_params import car_params
from workbench.data.car_sdf import car_centre
from workbench.data.star_surface import star_radius
from workbench.splits import check_training_seeds, eval_seeds

FOV_DEGREES = 10.0
FRAMING = 2.3
"""World width (car units, half length ~1) that the image spans at the car's centre."""
SUPERSAMPLE = 2
TEXTURE_SIZE = 128
SPHERE_SEGMENTS, SPHERE_RINGS = 64, 32

VIEW_LIGHT_DISTRIBUTION: dict[str, list[float]] = {
    "azimuth_deg": [-75.0, 75.0],
    "elevation_deg": [5.0, 30.0],
    "light_x": [-1.0, 1.0],
    "light_y": [0.0, 0.8],
    "light_ambient": [0.35, 0.65],
    "light_diffuse": [0.35, 0.75],
    "background_grey": [0.55, 0.95],
}
"""Uniform ranges the renders are drawn from (recorded in the weights manifest for GAN2Shape).

Azimuth is about the vertical axis, 0 = looking at the car's front, positive = the camera moves
towards the car's +x side. The light direction, in the camera frame (x right, y up, z towards the
camera), is normalize(light_x, light_y, 1); shading = ambient + diffuse * max(0, n . l).
"""


@dataclass
class CarRenderSet:
    """Rendered cars: images (N, 3, S, S) uint8, masks (N, 1, S, S) uint8 {0, 255}, and per image
    seed, azimuth/elevation (degrees) and light (x, y, ambient, diffuse)."""

    images: torch.Tensor
    masks: torch.Tensor
    seeds: torch.Tensor
    views: torch.Tensor
    lights: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, n: int, rng: torch.Generator, device: torch.device) -> torch.Tensor:
        """``n`` random images as float in [-1, 1] on ``device`` (indices drawn from ``rng``)."""
        index = torch.randint(len(self), (n,), generator=rng, device=rng.device).cpu()
        return self.images[index].to(device).float() / 127.5 - 1.0

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.npz")
        np.savez(
            tmp, **{k: getattr(self, k).numpy() for k in ("images", "masks", "seeds", "views", "lights")}
        )
        os.replace(tmp, path)


def load_render_set(path: Path) -> CarRenderSet:
    """Read a set written by ``CarRenderSet.save`` (plain arrays; nothing is unpickled)."""
    with np.load(path, allow_pickle=False) as data:
        return CarRenderSet(**{k: torch.from_numpy(data[k]) for k in data.files})


def star_mesh_template(device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sphere directions, faces and UVs laid out like MeshInversion's template (u = 0.25 at +z).

    ``uv_sphere`` puts u = 0 at +z; turning its points by -90 degrees about y moves the seam to -x
    and makes its u equal the template's, so the cars' UV textures apply unchanged.
    """
    points, faces, uvs = uv_sphere(SPHERE_SEGMENTS, SPHERE_RINGS, device)
    directions = torch.stack((-points[:, 2], points[:, 1], points[:, 0]), dim=-1)
    return directions, faces, uvs


def look_at_cameras(
    azimuth: torch.Tensor, elevation: torch.Tensor, target: torch.Tensor
) -> PerspectiveCamera:
    """Cameras on a sphere around ``target`` (B, 3), looking at it, with world +y up in the image."""
    az, el = torch.deg2rad(azimuth), torch.deg2rad(elevation)
    towards_camera = torch.stack((az.sin() * el.cos(), el.sin(), az.cos() * el.cos()), dim=-1)
    distance = FRAMING / 2 / math.tan(math.radians(FOV_DEGREES) / 2)
    position = target + distance * towards_camera
    forward = -towards_camera
    up = torch.tensor([0.0, 1.0, 0.0], device=target.device).expand_as(forward)
    right = F.normalize(torch.linalg.cross(forward, up), dim=-1)
    down = torch.linalg.cross(forward, right)
    rotation = torch.stack((right, down, forward), dim=1)
    translation = -(rotation @ position[:, :, None])[:, :, 0]
    return PerspectiveCamera(rotation, translation, focal_from_fov(math.radians(FOV_DEGREES)))


def view_light_draws(seeds: list[int], views_per_car: int, set_seed: int) -> dict[str, torch.Tensor]:
    """Per-image draws from ``VIEW_LIGHT_DISTRIBUTION``, each car's from its own generator, so a car's
    renders depend only on (set seed, car seed), not on which other cars share its batch."""
    names = list(VIEW_LIGHT_DISTRIBUTION)
    rows = [
        torch.rand(
            views_per_car, len(names), generator=torch.Generator().manual_seed(set_seed * 1_000_003 + s)
        )
        for s in seeds  # one small draw per car
    ]
    u = torch.cat(rows)
    bounds = torch.tensor([VIEW_LIGHT_DISTRIBUTION[k] for k in names])
    values = bounds[:, 0] + (bounds[:, 1] - bounds[:, 0]) * u
    return dict(zip(names, values.unbind(1), strict=True))


def render_cars(
    seeds: list[int], views_per_car: int, size: int, set_seed: int, device: torch.device | str = "cpu"
) -> CarRenderSet:
    """Render every car in ``seeds`` from ``views_per_car`` random views (all arrays batched)."""
    p = car_params(seeds, device)
    directions, faces, uvs = star_mesh_template(device)
    radius = star_radius(p, directions)
    centre = car_centre(p)
    vertices = centre[:, None, :] + radius[..., None] * directions[None]
    texture = texture_maps(p, TEXTURE_SIZE)
    repeat = torch.arange(len(seeds), device=device).repeat_interleave(views_per_car)
    draws = {k: v.to(device) for k, v in view_light_draws(seeds, views_per_car, set_seed).items()}
    azimuth, elevation = draws["azimuth_deg"], draws["elevation_deg"]
    lx, ly, ambient, diffuse = (
        draws["light_x"],
        draws["light_y"],
        draws["light_ambient"],
        draws["light_diffuse"],
    )
    grey = draws["background_grey"]
    camera = look_at_cameras(azimuth, elevation, centre[repeat])
    direction_view = F.normalize(torch.stack((lx, -ly, -torch.ones_like(lx)), dim=-1), dim=-1)
    out = render_mesh(
        vertices[repeat],
        faces,
        camera,
        size * SUPERSAMPLE,
        texture=texture[repeat],
        uvs=uvs,
        light=DirectionalLight(direction_view, ambient, diffuse),
        background=grey[:, None, None, None],
        topology=build_edge_topology(faces),
        cull_backfaces=True,
    )
    rgb = F.avg_pool2d(out.rgb.permute(0, 3, 1, 2), SUPERSAMPLE).clamp(0, 1)
    alpha = F.avg_pool2d(out.alpha[:, None], SUPERSAMPLE)
    return CarRenderSet(
        images=(rgb * 255).round().to(torch.uint8).cpu(),
        masks=((alpha > 0.5) * 255).to(torch.uint8).cpu(),
        seeds=torch.tensor(seeds).repeat_interleave(views_per_car),
        views=torch.stack((azimuth, elevation), dim=-1).cpu(),
        lights=torch.stack((lx, ly, ambient, diffuse), dim=-1).cpu(),
    )


def concatenate(parts: list[CarRenderSet]) -> CarRenderSet:
    names = ("images", "masks", "seeds", "views", "lights")
    return CarRenderSet(**{k: torch.cat([getattr(p, k) for p in parts]) for k in names})


def build_render_set(
    seeds: list[int], views_per_car: int, size: int, seed: int, chunk: int = 16, log_every: int = 50
) -> CarRenderSet:
    """Render ``seeds`` in chunks of ``chunk`` cars (bounded memory); deterministic per ``seed``."""
    parts, start = [], time.monotonic()
    for i in range(0, len(seeds), chunk):
        parts.append(render_cars(seeds[i : i + chunk], views_per_car, size, seed))
        if (i // chunk) % log_every == 0:
            print(
                f"rendered {i + len(parts[-1].seeds) // views_per_car}/{len(seeds)} cars "
                f"in {time.monotonic() - start:.0f} s",
                flush=True,
            )
    return concatenate(parts)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="render procedural cars for GAN2Shape's demo models")
    parser.add_argument("--out", required=True, help="output .npz")
    parser.add_argument("--cars", type=int, default=1000, help="number of cars (training seeds from 0)")
    parser.add_argument("--views", type=int, default=12, help="views per car")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0, help="seed of the view/light/background draws")
    parser.add_argument("--eval", action="store_true", help="render held-out evaluation seeds instead")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    seeds = eval_seeds(args.cars) if args.eval else list(range(args.cars))
    if not args.eval:
        check_training_seeds(seeds)
    build_render_set(seeds, args.views, args.size, args.seed).save(Path(args.out))
