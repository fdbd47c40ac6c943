"""GAN2Shape's options, their types, defaults and presets: the one definition every front end reads.

Standard library only (the Blender add-on reads it). A field's default is its ``paper`` value;
``PRESETS["fast"]`` lists what the CPU preset changes (demo model, 64 px, about 40 s on one
core: every mechanism, fewer and shorter steps, narrower fresh nets, a faster prior fit, no weight
decay, smoothed final depth; see benchmarks/GAN2SHAPE.md). ``None`` in a category-dependent field
means the category's published value, or the value its registered pretrained nets were made for
(``config.resolve`` fills them in); stage 0 uses ``stage0`` step lengths, later stages ``later``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ...options import FACES_RANGE, QUADS_DOC, SCALE_MODES, check_fields, check_size_m, option

TEXTURES = ("photo", "albedo", "net", "shaded")
VIEW_TEXTURES = ("photo", "albedo")
"""Textures that are images of the input view (the relief's UVs are its vertices' projections)."""
PUBLISHED = "null: the category's published value"


@dataclass(frozen=True)
class Options:
    """One GAN2Shape job's options; ``config.resolve`` gives every ``None`` its category's value."""

    num_stages: int | None = option(None, f"stages of the schedule ({PUBLISHED})", low=1)
    stage0: tuple[int, int, int] | None = option(None, f"steps 1, 2, 3 lengths in stage 0 ({PUBLISHED})")
    later: tuple[int, int, int] | None = option(None, f"steps 1, 2, 3 lengths in later stages ({PUBLISHED})")
    batch: int | None = option(None, f"pseudo samples per projection batch ({PUBLISHED})", low=1)
    accumulate: int | None = option(
        None,
        f"batches per step-2/3 update and per collection: the official data-parallel GPUs ({PUBLISHED})",
        low=1,
    )
    collect_iters: int = option(100, "projection batches collected per stage for step 3", low=1)
    flip1: tuple[bool, ...] | None = option(None, f"flip in step 1, per stage ({PUBLISHED})")
    flip3: tuple[bool, ...] | None = option(None, f"flip in step 3, per stage ({PUBLISHED})")
    prior_iters: int = option(1000, "steps fitting the depth net to the ellipsoid prior", low=0)
    prior_lr: float = option(1e-4, "learning rate of the prior fit")
    invert_steps: int = option(1000, "steps inverting the photo to a StyleGAN2 W code", low=0)
    invert_lr: float = option(0.1, "learning rate of the GAN inversion")
    lr: float = option(1e-4, "Adam learning rate of the nets")
    weight_decay: float = option(5e-4, "Adam weight decay of the nets")
    lam_perc: float = option(0.5, "weight of the perceptual (LPIPS) loss")
    lam_smooth: float | None = option(
        0.01, "weight of the smoothness loss (null: the pretrained nets' value)"
    )
    lam_regular: float = option(0.01, "weight of the latent offset regulariser")
    use_mask: bool | None = option(None, f"restrict losses to the object mask ({PUBLISHED})")
    relative_enc: bool | None = option(
        None, f"offsets are E(pseudo) - E(inverted input) instead of E(pseudo) ({PUBLISHED})"
    )
    view_scale: float | None = option(None, f"scale of the view net's rotations ({PUBLISHED})")
    f1_d: int | None = option(None, f"GAN mapping layers after the projected offset ({PUBLISHED})")
    prior_far: float | None = option(None, f"far depth of the ellipsoid prior ({PUBLISHED})")
    rand_light: tuple[float, ...] | None = option(
        None, f"x, y ranges of the light direction, r range, ambient per unit r ({PUBLISHED})"
    )
    view_std: tuple[float, ...] | None = option(
        None, "std of sampled views, 6 values (null: the GAN entry's, else a moderate default)"
    )
    view_mean: tuple[float, ...] | None = option(
        None, "mean view, 6 values (null: the GAN entry's, else zero)"
    )
    net_width: int | None = option(None, "nf of freshly initialised nets (null: the official width)")
    crop: str = option(
        "object",
        "object: square around the mask; full: the whole image padded to a square",
        choices=("object", "full"),
    )
    gan_crop: float | None = option(
        None, "centre fraction of the GAN's frame the nets see (null: the category's; cat 170/256, else 1)",
        low=0.05, high=1.0,
    )
    crop_margin: float | None = option(
        None, "margin around the object per side (crop=object; null: the GAN entry's framing, else 0.1)",
        low=0,
    )
    pseudo_pose: str = option(
        "predicted",
        "view and light of projected samples in step 3: predicted by the nets (published), the pseudo"
        " sample's own (sampled), or auto (sampled with fresh nets, predicted with pretrained ones)",
        choices=("auto", "predicted", "sampled"),
    )
    depth_smoothing: float = option(0.0, "std in pixels of a blur of the final depth (0: off, as published)")
    mesh_resolution: int | None = option(
        None, "vertices across the exported relief (null: follow the photo)", low=4, high=1024
    )
    faces: int | None = option(
        None, "about this many triangles in the relief: sets its grid over mesh_resolution (null: off)",
        low=FACES_RANGE[0], high=FACES_RANGE[1],
    )  # fmt: skip
    quads: bool = option(
        False, f"{QUADS_DOC}; the relief then keeps only whole grid cells on the object (no rim triangles)"
    )
    texture: str = option(
        "shaded",
        "photo, albedo (photo de-lit), net (albedo net) or shaded (the official OBJ's)",
        choices=TEXTURES,
    )
    previews: bool = option(True, "render preview images into the result")
    preview_every: int = option(50, "steps between progress previews")
    scale: str = option(
        "metres", "metres: the category's typical size; unit: largest extent 1", choices=SCALE_MODES
    )
    size_m: float | None = option(
        None, "the relief's largest extent in metres instead of the category's size"
    )

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "fast": {
            "num_stages": 2, "stage0": (60, 50, 50), "later": (20, 30, 30), "batch": 4, "collect_iters": 6,
            "prior_iters": 150, "prior_lr": 3e-4, "weight_decay": 0.0, "invert_steps": 150, "net_width": 32,
            "preview_every": 20, "lam_smooth": None, "depth_smoothing": 2.0, "texture": "photo",
            "pseudo_pose": "auto", "accumulate": 1,
        },
        "paper": {},
    }  # fmt: skip
    """``fast``: the CPU preset; ``paper``: the category's published schedule."""

    def __post_init__(self) -> None:
        check_fields(self)
        check_size_m(self.size_m)
        lengths = (*(self.stage0 or ()), *(self.later or ()))
        checks = [
            (all(n >= 0 for n in lengths), "step lengths must be >= 0"),
            (self.view_std is None or len(self.view_std) == 6, "view_std needs 6 values"),
            (self.view_mean is None or len(self.view_mean) == 6, "view_mean needs 6 values"),
            (self.rand_light is None or len(self.rand_light) == 7, "rand_light needs 7 values"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def stage_lengths(self, stage: int) -> tuple[int, int, int]:
        assert self.stage0 is not None and self.later is not None, "resolve the options first"
        return self.stage0 if stage == 0 else self.later

    def flips(self, stage: int) -> tuple[bool, bool]:
        """(flip1, flip3) of a stage; the last listed value repeats for later stages."""
        assert self.flip1 is not None and self.flip3 is not None, "resolve the options first"
        return self.flip1[min(stage, len(self.flip1) - 1)], self.flip3[min(stage, len(self.flip3) - 1)]

    def total_steps(self, kind: int) -> int:
        """Iterations of step ``kind`` (0, 1, 2 for step 1, 2, 3) summed over all stages."""
        assert self.num_stages is not None
        return sum(self.stage_lengths(s)[kind] for s in range(self.num_stages))
