"""Both benchmark baselines run on the inversion's settings and fit a rendered photo."""

from __future__ import annotations

from dataclasses import replace

import torch

from backend.methods.meshinversion.invert import InversionSettings
from backend.methods.meshinversion.mesh_gan import MeshGAN
from backend.methods.meshinversion.options import Options
from tests.meshinversion.helpers import render_photo, small_generator
from workbench.baselines import Baselines

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
