"""How GAN2Shape's ``Options`` become the values one reconstruction runs with: ``resolve``.

Values of the published schedules come from the official ``configs/*.yml`` and ``trainer.py`` (see
``shared/research/gan2shape.md`` section 3.4): stage 0 uses ``stage0`` step lengths, later
stages ``later``; ``flip1``/``flip3`` are per stage; every optimiser is Adam(1e-4, wd 5e-4),
re-created at each step switch. ``Research`` holds the experiments no preset uses, set only by code.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from backend.methods.gan2shape.options import Options

DEFAULT_VIEW_STD = (0.05, 0.35, 0.02, 0.1, 0.1, 0.0)
"""Pitch 3 deg, yaw 21 deg, roll 1 deg, x/y shifts 0.01: moderate turns a relief can show."""

CATEGORY_SETTINGS: dict[str, dict[str, Any]] = {
    "car": {"use_mask": True, "relative_enc": False, "view_scale": 1.0, "f1_d": 2, "prior_far": 1.02},
    "church": {"use_mask": True, "relative_enc": False, "view_scale": 1.0, "f1_d": 2, "prior_far": 1.0},
    "face": {"use_mask": False, "relative_enc": True, "view_scale": 1.2, "f1_d": 2, "prior_far": 1.02},
    "cat": {"use_mask": False, "relative_enc": True, "view_scale": 1.2, "f1_d": 2, "prior_far": 1.02,
            "gan_crop": 170 / 256},
    "synface": {"use_mask": False, "relative_enc": True, "view_scale": 1.2, "f1_d": 8, "prior_far": 1.02,
                "rand_light": (-0.9, 0.9, -0.3, 0.8, -0.1, 0.7, -0.4)},
}
"""Per-category switches of the official configs (``relative_enc``, ``use_mask``, ``view_scale``,
``F1_d``, ``prior_far``, ``rand_light``; ``gan_crop``: cat's ``crop: 170`` of its 256 px data, which
are the GAN's own samples); unknown categories (procedural demo ones) use ``car``'s. Synface's
``crop: 170`` is not applied: the size of its data images is not in the config."""

PAPER_SCHEDULES: dict[str, dict[str, Any]] = {
    "face": {"num_stages": 4, "stage0": (600, 600, 400), "later": (200, 500, 300), "batch": 16,
             "accumulate": 1, "flip1": (False,) * 4, "flip3": (True, False, False, False)},
    "cat": {"num_stages": 4, "stage0": (600, 600, 400), "later": (200, 500, 300), "batch": 16,
            "accumulate": 1, "flip1": (False,) * 4, "flip3": (True, False, False, False)},
    "car": {"num_stages": 4, "stage0": (700, 700, 600), "later": (200, 500, 400), "batch": 8,
            "accumulate": 4, "flip1": (False,) * 4, "flip3": (False,) * 4},
    "church": {"num_stages": 4, "stage0": (700, 700, 600), "later": (200, 500, 400), "batch": 8,
               "accumulate": 4, "flip1": (False,) * 4, "flip3": (False,) * 4},
    "synface": {"num_stages": 1, "stage0": (500, 500, 200), "later": (500, 500, 200), "batch": 16,
                "accumulate": 1, "flip1": (False,), "flip3": (True,)},
}
"""``accumulate``: car and church ran data-parallel on 4 GPUs, all on the one image (each GPU its own
batch and its own buffer of ``collect_iters`` batches, gradients averaged): 4 accumulated batches
are that. Face, cat and synface ran one image per GPU (cat's 4 images sharing one model, which one
image cannot reproduce): 1."""

FALLBACKS: dict[str, Any] = {
    "lam_smooth": 0.01, "rand_light": (-1.0, 1.0, -0.2, 0.8, -0.1, 0.6, -0.6), "view_std": DEFAULT_VIEW_STD,
    "crop_margin": 0.1, "gan_crop": 1.0,
}  # fmt: skip
"""The values of options a preset may leave ``None`` that no category table or entry sets (the
published ones where the paper has one; ``crop_margin``: the demo GAN's framing)."""
MODEL_FIELDS = ("view_std", "view_mean", "crop_margin")
"""Options a GAN entry's config may set: the spread and mean of its training views, and how its
samples frame the object (``framing.py``, measured when an official GAN is imported)."""


@dataclass(frozen=True)
class Research:
    """Experiments a user never needs, reachable from Python only (benchmarks, training)."""

    invert_w_plus: bool = False
    """Invert to W+ (one code per layer; closer fits, less on-manifold) instead of GAN2Shape's W."""
    projection: str = "encoder"
    """How step 2 projects pseudo samples onto the GAN: ``encoder`` (published: a net predicts
    latent offsets, trained over the schedule) or ``optimise`` (a free offset per pseudo sample,
    same parametrisation and loss, optimised directly; fresh each stage)."""
    projection_lr: float = 0.05
    """Learning rate of ``projection="optimise"``."""
    fixed_view: bool = False
    """The view net does not learn (joint pretraining of a category without a symmetric canonical
    frame: with it frozen at the identity view every image's depth is learnt in its own view)."""

    def __post_init__(self) -> None:
        if self.projection not in ("encoder", "optimise"):
            raise ValueError("projection must be 'encoder' or 'optimise'")


AUTO_MESH_RESOLUTION = 256


def resolve(category: str, options: Options, model: dict[str, Any] | None = None) -> Options:
    """``options`` with each category-dependent ``None`` filled in, in one order: the user's or
    preset's value, else
    ``model``'s (what the GAN entry and the category's pretrained nets were made for), else the
    category's published schedule and switches (``car``'s for unknown categories), else
    ``FALLBACKS``. Lists (JSON, entry configs) become tuples."""
    switches = CATEGORY_SETTINGS.get(category, CATEGORY_SETTINGS["car"])
    published = PAPER_SCHEDULES.get(category, PAPER_SCHEDULES["car"])
    given = {k: v for k, v in vars(options).items() if v is not None}
    values = {**FALLBACKS, **switches, **published, **(model or {}), **given}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return replace(options, **values)
