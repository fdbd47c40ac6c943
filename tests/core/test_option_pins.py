"""Today's option values, pinned: each preset of each method, as parsed and as the method runs it.

Taken from the code before the options had one owner (issue 23), so any drift in a default, a
preset or the category tables fails here. ``view_std`` of a resolved GAN2Shape run is the value the
old three-level fallback reached for a GAN entry without one; the research settings (MeshInversion
``flat_weight``/``restarts``, GAN2Shape ``projection``/``projection_lr``/``invert_w_plus``/
``fixed_view``) are no longer options and keep their defaults in ``InversionSettings``/``Research``.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from backend.methods import options_class
from backend.methods.gan2shape.config import Research, resolve
from backend.methods.meshinversion.invert import InversionSettings
from backend.options import as_dict, parse_options

MESHINVERSION_PAPER: dict[str, Any] = {
    "crop_margin": 0.05,
    "previews": True,
    "texture": 'generated',
    "texture_size": None,
    "scale": 'metres',
    "size_m": None,
    "faces": None,
    "quads": False,
    "faces_smoothing": 0.0,
    "render_size": 256,
    "start": 'encoder_view',
    "encoder_accept_iou": 0.7,
    "turn_start": False,
    "z_candidates": 500,
    "start_scoring": 'published',
    "rendered_candidates": 64,
    "azimuths": 12,
    "elevations": [0.0, 20.0, 40.0],
    "camera_keep": 4,
    "camera_refine_steps": 30,
    "stages": [[50, 0.1, 0.01], [50, 0.05, 0.005], [50, 0.01, 0.001], [50, 0.005, 0.0005]],
    "chamfer_points": 8192,
    "mask_weight": 10.0,
    "pixel_weight": 1.0,
    "feature_weight": 0.04,
    "latent_weight": 0.05,
    "latent_centre": 'origin',
    "silhouette_weight": 0.0,
    "refine_steps": 0,
    "refine_lr": 0.001,
    "refine_smoothness": 1000.0,
    "pole_fill": 0,
    "class_label": None,
    "colour_label": None,
    "chunk": 64,
}
MESHINVERSION_FAST = {**MESHINVERSION_PAPER, **{
    "texture": 'blended',
    "z_candidates": 64,
    "start_scoring": 'colour_layout',
    "start": 'encoder',
    "encoder_accept_iou": 0.85,
    "turn_start": False,
    "rendered_candidates": 16,
    "azimuths": 8,
    "elevations": [0.0, 25.0],
    "camera_refine_steps": 20,
    "stages": [[60, 0.1, 0.01], [45, 0.03, 0.003]],
    "chamfer_points": 2048,
    "feature_weight": 0.0,
    "latent_weight": 3.0,
    "latent_centre": 'start',
    "silhouette_weight": 2.0,
    "refine_steps": 60,
    "pole_fill": 2,
}}
GAN2SHAPE_PAPER: dict[str, Any] = {
    "num_stages": None,
    "stage0": None,
    "later": None,
    "batch": None,
    "accumulate": None,
    "collect_iters": 100,
    "flip1": None,
    "flip3": None,
    "prior_iters": 1000,
    "prior_lr": 0.0001,
    "invert_steps": 1000,
    "invert_lr": 0.1,
    "lr": 0.0001,
    "weight_decay": 0.0005,
    "lam_perc": 0.5,
    "lam_smooth": 0.01,
    "lam_regular": 0.01,
    "use_mask": None,
    "relative_enc": None,
    "view_scale": None,
    "f1_d": None,
    "prior_far": None,
    "rand_light": None,
    "view_std": None,
    "view_mean": None,
    "net_width": None,
    "crop": 'object',
    "gan_crop": None,
    "crop_margin": None,
    "pseudo_pose": 'predicted',
    "depth_smoothing": 0.0,
    "mesh_resolution": None,
    "faces": None,
    "quads": False,
    "texture": 'shaded',
    "previews": True,
    "preview_every": 50,
    "scale": 'metres',
    "size_m": None,
}
GAN2SHAPE_FAST = {**GAN2SHAPE_PAPER, **{
    "num_stages": 2,
    "stage0": [60, 50, 50],
    "later": [20, 30, 30],
    "batch": 4,
    "collect_iters": 6,
    "prior_iters": 150,
    "prior_lr": 0.0003,
    "invert_steps": 150,
    "weight_decay": 0.0,
    "lam_smooth": None,
    "net_width": 32,
    "depth_smoothing": 2.0,
    "texture": 'photo',
    "preview_every": 20,
    "pseudo_pose": 'auto',
    "accumulate": 1,
}}
CATEGORY_VALUES: dict[str, dict[str, Any]] = {
    "car": {"flip1": [False] * 4, "flip3": [False] * 4, "use_mask": True, "relative_enc": False,
            "view_scale": 1.0, "f1_d": 2, "prior_far": 1.02, "view_std": [0.05, 0.35, 0.02, 0.1, 0.1, 0.0],
            "rand_light": [-1.0, 1.0, -0.2, 0.8, -0.1, 0.6, -0.6]},
    "synface": {"flip1": [False], "flip3": [True], "use_mask": False, "relative_enc": True, "view_scale": 1.2,
                "f1_d": 8, "prior_far": 1.02, "view_std": [0.05, 0.35, 0.02, 0.1, 0.1, 0.0],
                "rand_light": [-0.9, 0.9, -0.3, 0.8, -0.1, 0.7, -0.4]},
}  # fmt: skip
"""What resolving for a category sets (its published table), and ``lam_smooth`` (``fast``: None)."""
PAPER_SCHEDULES: dict[str, dict[str, Any]] = {
    "car": {"num_stages": 4, "stage0": [700, 700, 600], "later": [200, 500, 400], "batch": 8,
            "accumulate": 4},
    "synface": {"num_stages": 1, "stage0": [500, 500, 200], "later": [500, 500, 200], "batch": 16,
                "accumulate": 1},
}  # fmt: skip
"""``paper``'s stages and batch per category (the category's published schedule)."""
METHOD_ONLY = ("crop_margin", "previews", "texture", "texture_size", "scale", "size_m", "faces",
               "quads", "faces_smoothing")
"""MeshInversion options that are not ``InversionSettings`` fields."""

PINNED: dict[str, dict[str, Any]] = {
    "meshinversion/fast": MESHINVERSION_FAST,
    "meshinversion/paper": MESHINVERSION_PAPER,
    "gan2shape/fast": GAN2SHAPE_FAST,
    "gan2shape/paper": GAN2SHAPE_PAPER,
}
for _preset in ("fast", "paper"):
    _options = PINNED[f"meshinversion/{_preset}"]
    PINNED[f"meshinversion/{_preset}/settings"] = {k: v for k, v in _options.items() if k not in METHOD_ONLY}
    for _category in ("car", "synface"):
        PINNED[f"gan2shape/{_preset}/{_category}"] = {
            **PINNED[f"gan2shape/{_preset}"],
            **CATEGORY_VALUES[_category],
            "lam_smooth": 0.01,
            "crop_margin": 0.1,
            "gan_crop": 1.0,
            **(PAPER_SCHEDULES[_category] if _preset == "paper" else {}),
        }


def plain(values: dict[str, Any]) -> dict[str, Any]:
    """Tuples and lists compare alike, as ``result.json`` writes them."""
    return json.loads(json.dumps(values))


@pytest.mark.parametrize("method", ["meshinversion", "gan2shape"])
@pytest.mark.parametrize("preset", ["fast", "paper"])
def test_parsed_presets_are_pinned(method: str, preset: str) -> None:
    values = as_dict(parse_options(options_class(method), preset, {}))
    assert list(values) == list(PINNED[f"{method}/{preset}"])  # result.json keeps its key order
    assert plain(values) == PINNED[f"{method}/{preset}"]


@pytest.mark.parametrize("preset", ["fast", "paper"])
def test_meshinversion_settings_are_pinned(preset: str) -> None:
    settings = InversionSettings.from_options(parse_options(options_class("meshinversion"), preset, {}))
    assert plain(dataclasses.asdict(settings)) == {
        **PINNED[f"meshinversion/{preset}/settings"],
        "flat_weight": 0.0,
        "restarts": 1,
    }


@pytest.mark.parametrize("category", ["car", "synface"])
@pytest.mark.parametrize("preset", ["fast", "paper"])
def test_gan2shape_resolved_values_are_pinned(preset: str, category: str) -> None:
    options = resolve(category, parse_options(options_class("gan2shape"), preset, {}))
    assert plain(as_dict(options)) == PINNED[f"gan2shape/{preset}/{category}"]
    assert Research() == Research(
        invert_w_plus=False, projection="encoder", projection_lr=0.05, fixed_view=False
    )
