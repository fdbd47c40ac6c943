"""Renders: mask and depth agree, camera and mesh reproduce the silhouette, and seeds decide all."""

from __future__ import annotations

import numpy as np
import torch

from backend.render.cameras import weak_perspective_camera
from backend.render.rasterize import rasterize
from workbench.data.render_sample import render_cars, render_sample


def test_mask_equals_valid_depth_and_camera_reproduces_the_silhouette():
    cars = render_cars([7, 8, 9], size=96)
    assert cars.image.shape == (3, 96, 96, 3) and cars.image.dtype == np.uint8
    assert np.array_equal(cars.mask, cars.depth > 0)
    assert 0.05 < cars.mask.mean() < 0.7
    translation = torch.cat([torch.from_numpy(cars.translation), torch.full((3, 1), 3.0)], 1)
    quaternion, scale = torch.from_numpy(cars.quaternion), torch.from_numpy(cars.scale)
    camera = weak_perspective_camera(quaternion, scale, translation)
    screen = camera.project(torch.from_numpy(cars.vertices))
    mask = rasterize(screen, torch.from_numpy(cars.faces).long(), 96, cull_backfaces=True).mask
    assert np.array_equal(mask.numpy(), cars.mask)
    # The whole car is in frame: no mask pixel on the border.
    assert not cars.mask[:, [0, -1], :].any() and not cars.mask[:, :, [0, -1]].any()


def test_render_is_a_function_of_the_seed():
    a, b = render_sample(21, size=64), render_cars([20, 21], size=64)
    assert np.array_equal(a.image[0], b.image[1])
    assert np.array_equal(a.depth[0], b.depth[1])
    assert not np.array_equal(b.image[0], b.image[1])


def test_views_cover_the_circle_and_lights_vary():
    from workbench.data.render_sample import view_draws

    draws = view_draws(list(range(400)))
    hist = np.histogram(draws["azimuth"].numpy(), bins=8, range=(0, 2 * np.pi))[0]
    assert (hist > 20).all()
    elevation = np.degrees(draws["elevation"].numpy())
    assert elevation.min() >= 0 and elevation.max() <= 35
    assert draws["light_direction"].std(0).min() > 0.1
