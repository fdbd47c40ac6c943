"""The benchmark baselines run on the inversion's settings and fit a rendered photo."""

from __future__ import annotations

from dataclasses import replace

import torch

from backend.methods.meshinversion.camera_search import WeakPerspective, view_quaternion
from backend.methods.meshinversion.invert import InversionSettings
from backend.methods.meshinversion.mesh_gan import MeshGAN
from backend.methods.meshinversion.options import Options
from tests.meshinversion.helpers import render_photo, small_generator
from workbench.baselines import Baselines
from workbench.data.car_maps import car_maps

SETTINGS = InversionSettings.from_options(replace(
    Options(), render_size=64, z_candidates=8, rendered_candidates=4, azimuths=8, elevations=(0.0, 25.0),
    camera_keep=3, camera_refine_steps=10, stages=((12, 0.1, 0.01), (8, 0.05, 0.005)), chamfer_points=512,
    feature_weight=0.0, silhouette_weight=1.0,
))  # fmt: skip


def test_mean_shape_and_free_form_baselines() -> None:
    model = MeshGAN(small_generator())
    rgb, mask, _ = render_photo(
        model, torch.randn(1, 64, generator=torch.Generator().manual_seed(7)), 200.0, 15.0, 64
    )
    baselines = Baselines(model, SETTINGS)
    steps = []
    mean = baselines.mean_shape([rgb, rgb], [mask, mask], 0, lambda *a, **k: steps.append(a[1]))
    assert len(mean) == 2 and steps[-1] == SETTINGS.total_steps
    assert torch.equal(mean[0].vertices, mean[1].vertices)  # the shape is fixed: only the camera moves
    assert mean[0].mask_iou > 0.7
    free = baselines.free_form([rgb], [mask], 0, lambda *a, **k: None)[0]
    assert free.mask_iou > 0.8
    assert free.stage_losses[-1]["total"] < free.stage_losses[0]["total"]
    mirrored = free.vertices[model.template.mirror] * torch.tensor([-1.0, 1.0, 1.0])
    assert torch.allclose(mirrored, free.vertices, atol=1e-6)


def test_category_mean_is_the_mean_true_car_placed_on_the_photo() -> None:
    model = MeshGAN(small_generator())
    baselines = Baselines(model, SETTINGS, category_cars=3)
    vertices, texture = baselines.category_model
    maps = car_maps([0, 1, 2], 256)
    each = model.displace(maps.displacement)
    torch.testing.assert_close(vertices, each.mean(0), atol=1e-5, rtol=0)
    torch.testing.assert_close(texture, maps.texture.mean(0) * 2 - 1)
    # A photo of the mean car itself: the fixed shape explains it once the camera is found.
    view = view_quaternion(torch.tensor([120.0]).deg2rad(), torch.tensor([15.0]).deg2rad())
    camera = WeakPerspective(view, torch.tensor([0.6]), torch.tensor([[0.05, -0.04]]))
    rendering = model.render(vertices[None], texture[None], camera, 64)
    mask = rendering.mask[0]
    rgb = torch.where(mask, (rendering.rgb[0] + 1) / 2, torch.full_like(rendering.rgb[0], 0.9))
    rgb, mask = rgb.permute(1, 2, 0).numpy(), mask.float().numpy()
    result = baselines.category_mean([rgb], [mask], 0, lambda *a, **k: None)[0]
    assert torch.equal(result.vertices, vertices)
    assert result.mask_iou > 0.9
