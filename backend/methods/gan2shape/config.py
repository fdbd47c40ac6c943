"""Run options of GAN2Shape: the published per-category schedules (``paper``) and a CPU ``fast`` preset.

Values of ``PAPER`` come from the official ``configs/*.yml`` and ``trainer.py`` (see
``shared/research/gan2shape.md`` section 3.4): stage 0 uses ``stage0`` step lengths, later
stages ``later``; ``flip1``/``flip3`` are per stage; every optimiser is Adam(1e-4, wd 5e-4),
re-created at each step switch. ``fast`` keeps every mechanism but shortens every schedule and
uses narrower networks when no pretrained ones are loaded, to finish in minutes on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from backend.categories import check_scale_options

DEFAULT_VIEW_STD = (0.05, 0.35, 0.02, 0.1, 0.1, 0.0)
"""Pitch 3 deg, yaw 21 deg, roll 1 deg, x/y shifts 0.01: moderate turns a relief can show."""

CATEGORY_SETTINGS: dict[str, dict[str, Any]] = {
    "car": {"use_mask": True, "relative_enc": False, "view_scale": 1.0, "f1_d": 2, "prior_far": 1.02},
    "church": {"use_mask": True, "relative_enc": False, "view_scale": 1.0, "f1_d": 2, "prior_far": 1.0},
    "face": {"use_mask": False, "relative_enc": True, "view_scale": 1.2, "f1_d": 2, "prior_far": 1.02},
    "cat": {"use_mask": False, "relative_enc": True, "view_scale": 1.2, "f1_d": 2, "prior_far": 1.02},
    "synface": {"use_mask": False, "relative_enc": True, "view_scale": 1.2, "f1_d": 8, "prior_far": 1.02,
                "rand_light": (-0.9, 0.9, -0.3, 0.8, -0.1, 0.7, -0.4)},
}
"""Per-category switches of the official configs (``relative_enc``, ``use_mask``, ``view_scale``,
``F1_d``, ``prior_far``, ``rand_light``); unknown categories (procedural demo ones) use ``car``'s."""

PAPER_SCHEDULES: dict[str, dict[str, Any]] = {
    "face": {"num_stages": 4, "stage0": (600, 600, 400), "later": (200, 500, 300), "batch": 16,
             "flip1": (False,) * 4, "flip3": (True, False, False, False)},
    "cat": {"num_stages": 4, "stage0": (600, 600, 400), "later": (200, 500, 300), "batch": 16,
            "flip1": (False,) * 4, "flip3": (True, False, False, False)},
    "car": {"num_stages": 4, "stage0": (700, 700, 600), "later": (200, 500, 400), "batch": 8,
            "flip1": (False,) * 4, "flip3": (False,) * 4},
    "church": {"num_stages": 4, "stage0": (700, 700, 600), "later": (200, 500, 400), "batch": 8,
               "flip1": (False,) * 4, "flip3": (False,) * 4},
    "synface": {"num_stages": 1, "stage0": (500, 500, 200), "later": (500, 500, 200), "batch": 16,
                "flip1": (False,), "flip3": (True,)},
}


@dataclass(frozen=True)
class Options:
    """Everything one reconstruction uses; ``resolve`` builds it from a preset plus overrides."""

    num_stages: int = 4
    stage0: tuple[int, int, int] = (700, 700, 600)
    later: tuple[int, int, int] = (200, 500, 400)
    batch: int = 8
    collect_iters: int = 100
    flip1: tuple[bool, ...] = (False,) * 4
    flip3: tuple[bool, ...] = (False,) * 4
    prior_iters: int = 1000
    prior_lr: float = 1e-4
    invert_steps: int = 1000
    invert_lr: float = 0.1
    invert_w_plus: bool = False
    """Invert to W+ (one code per layer; closer fits, less on-manifold) instead of GAN2Shape's W."""
    lr: float = 1e-4
    weight_decay: float = 5e-4
    lam_perc: float = 0.5
    lam_smooth: float = 0.01
    lam_regular: float = 0.01
    use_mask: bool = True
    relative_enc: bool = False
    """Offsets are ``E(pseudo) - E(inverted input)`` instead of ``E(pseudo)``; a pretrain file
    may set it (an encoder pretrained to read GAN codes is only meaningful relative)."""
    view_scale: float = 1.0
    f1_d: int = 2
    prior_far: float = 1.02
    rand_light: tuple[float, ...] = (-1.0, 1.0, -0.2, 0.8, -0.1, 0.6, -0.6)
    """x range, y range of the light direction, range of the extra diffuse strength r, and the
    ambient change per unit r (pseudo samples: ambient + alpha r + (diffuse + r) max(0, n.l))."""
    view_std: tuple[float, ...] | None = None
    """Std of sampled views (network units: x 60 deg, x 0.1) when no official ``view_mvn`` is
    registered; None = the GAN entry's ``view_std`` (the spread of its training views), else
    ``DEFAULT_VIEW_STD``. The official files fitted mean/cov to Unsup3d predictions (issue #17)."""
    view_mean: tuple[float, ...] | None = None
    """Mean view (network units) of sampled views, also added to every view-net prediction; None =
    the GAN entry's ``view_mean`` (the mean of its training views in its canonical frame), else
    zero. An official ``view_mvn`` file replaces both ``view_mean`` and ``view_std``."""
    net_width: int | None = None
    """``nf`` of freshly initialised depth/albedo/view/light nets; None = official width."""
    crop: str = "object"
    """``object``: square crop around the mask (``crop_margin`` added per side); ``full``: the
    whole image padded to a square, for photos already framed like the GAN's images."""
    crop_margin: float = 0.1
    projection: str = "encoder"
    """How step 2 projects pseudo samples onto the GAN: ``encoder`` (published: a net predicts
    latent offsets, trained over the schedule) or ``optimise`` (a free offset per pseudo sample,
    same parametrisation and loss, optimised directly; fresh each stage)."""
    projection_lr: float = 0.05
    fixed_view: bool = False
    """Not in the paper: the view net does not learn (joint pretraining of a category without a
    symmetric canonical frame: with it frozen at the identity view every image's depth is learnt in
    its own view, instead of drifting to views at the ends of the range)."""
    pseudo_pose: str = "auto"
    """View and light of each projected sample in step 3: ``predicted`` by the view and light nets
    (published); ``sampled``: those its pseudo sample was rendered with (the projection keeps
    them up to the GAN's error); ``auto``: ``predicted`` with the category's joint-pretrained
    depth/view/light nets, ``sampled`` with fresh ones (an encoder-only pretrain file keeps them
    fresh), which would otherwise learn views from scratch, far too slowly for a CPU schedule
    (see benchmarks/GAN2SHAPE.md)."""
    depth_smoothing: float = 0.0
    """Std in pixels of a Gaussian blur of the final canonical depth on the object (0 = off, as
    published). ``fast`` sets 2: its short schedule leaves pixel-scale ripples that cost normals
    about 2 deg of MAD (benchmarks/GAN2SHAPE.md); exported relief, previews and metrics all
    use the smoothed depth."""
    mesh_resolution: int | None = None
    """Vertices across the exported relief (the canonical depth is resampled to this grid); None
    follows the photo: one vertex per photo pixel of the crop, up to ``AUTO_MESH_RESOLUTION``."""
    texture: str = "photo"
    """The exported texture: ``photo`` (the input crop itself at the photo's resolution, mapped
    through the recovered view), ``albedo`` (that photo divided by the recovered shading: de-lit),
    ``net`` (the albedo net's canonical output at the nets' resolution) or ``shaded`` (the net's
    albedo times the recovered shading, the official OBJ's texture; ``paper``)."""
    previews: bool = True
    preview_every: int = 50
    scale: str = "metres"
    """``metres``: the relief's largest extent is the category's size (``backend/categories.py``;
    a relief has no reliable length), origin at its bottom centre; ``unit``: centred, extent 1."""
    size_m: float | None = None
    """The size in metres instead of the category's typical size."""

    def stage_lengths(self, stage: int) -> tuple[int, int, int]:
        return self.stage0 if stage == 0 else self.later

    def flips(self, stage: int) -> tuple[bool, bool]:
        """(flip1, flip3) of a stage; the last listed value repeats for later stages."""
        return self.flip1[min(stage, len(self.flip1) - 1)], self.flip3[min(stage, len(self.flip3) - 1)]

    def total_steps(self, kind: int) -> int:
        """Iterations of step ``kind`` (0, 1, 2 for step 1, 2, 3) summed over all stages."""
        return sum(self.stage_lengths(s)[kind] for s in range(self.num_stages))


CATEGORY_FIELDS = frozenset(
    ["num_stages", "stage0", "later", "batch", "flip1", "flip3", "use_mask", "relative_enc", "view_scale",
     "f1_d", "prior_far", "rand_light"]
)
"""Options whose value depends on the category; ``None`` in a preset means the published value."""


TEXTURES = ("photo", "albedo", "net", "shaded")
VIEW_TEXTURES = ("photo", "albedo")
"""Textures that are images of the input view (the relief's UVs are its vertices' projections)."""
AUTO_MESH_RESOLUTION = 256


def preset(**changes: Any) -> dict[str, Any]:
    """Every option (so each can be overridden), category-dependent ones ``None``, then ``changes``."""
    values = {f.name: (None if f.name in CATEGORY_FIELDS else f.default) for f in fields(Options)}
    unknown = sorted(set(changes) - set(values))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}")
    return {**values, **changes}


PRESETS: dict[str, dict[str, Any]] = {
    "fast": preset(
        num_stages=2, stage0=(60, 50, 50), later=(20, 30, 30), batch=4, collect_iters=6, prior_iters=150,
        prior_lr=3e-4, weight_decay=0.0, invert_steps=150, net_width=32, preview_every=20, lam_smooth=None,
        depth_smoothing=2.0,
    ),
    "paper": preset(texture="shaded"),
}
"""``fast``: CPU preset (demo model, 64 px, about 2.5 min on one core): every mechanism, fewer and
shorter steps, narrower fresh nets, a 3x faster prior fit, and no weight decay: with Adam the
official L2 decay (5e-4) pulls every weight whose gradient is small towards zero at the full
step size, which in a short schedule erodes the fitted depth net faster than the losses restore
it (measured on a held-out car: normal error 39 -> 63 deg within 10 step-3 iterations, against
38 -> 41 deg without). Its ``lam_smooth`` is ``None``: the published 0.01, or the value the
category's registered pretrained nets were made for (``extras.option_defaults``). ``paper``: the
category's published schedule. ``fast`` also smooths the final depth (``depth_smoothing``)."""


def resolve(category: str, options: dict[str, Any]) -> Options:
    """The category's switches and published schedule, then ``options`` (a preset merged with user
    overrides; ``None`` for a category-dependent option keeps the published value). Unknown names
    are an error so typos never pass silently."""
    known = {f.name for f in fields(Options)}
    unknown = sorted(set(options) - known)
    if unknown:
        names = ", ".join(sorted(known))
        raise ValueError(f"unknown gan2shape option(s): {', '.join(unknown)}; known: {names}")
    switches = CATEGORY_SETTINGS.get(category, CATEGORY_SETTINGS["car"])
    published = PAPER_SCHEDULES.get(category, PAPER_SCHEDULES["car"])
    chosen = {k: v for k, v in options.items() if v is not None}  # None: the published/default value
    values: dict[str, Any] = {**switches, **published, **chosen}
    tuples = {f.name for f in fields(Options) if "tuple" in str(f.type)}
    values = {k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in values.items()}
    options = replace(Options(), **values)
    validate(options)
    return options


def validate(options: Options) -> None:
    """Refuse values that would fail later in a less obvious way."""
    checks = [
        (options.num_stages >= 1, "num_stages must be >= 1"),
        (all(n >= 0 for n in options.stage0 + options.later), "step lengths must be >= 0"),
        (options.batch >= 1 and options.collect_iters >= 1, "batch and collect_iters must be >= 1"),
        (options.texture in TEXTURES, f"texture must be one of {', '.join(TEXTURES)}"),
        (options.crop in ("object", "full"), "crop must be 'object' or 'full'"),
        (options.pseudo_pose in ("auto", "predicted", "sampled"), "pseudo_pose: auto, predicted or sampled"),
        (options.projection in ("encoder", "optimise"), "projection must be 'encoder' or 'optimise'"),
        (options.mesh_resolution is None or 4 <= options.mesh_resolution <= 1024,
         "mesh_resolution must be within 4..1024 (or null to follow the photo)"),
        (options.view_std is None or len(options.view_std) == 6, "view_std needs 6 values"),
        (options.view_mean is None or len(options.view_mean) == 6, "view_mean needs 6 values"),
        (len(options.rand_light) == 7, "rand_light needs 7 values"),
        (options.invert_steps >= 0 and options.prior_iters >= 0, "invert_steps/prior_iters must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    check_scale_options({"scale": options.scale, "size_m": options.size_m})

