"""MeshInversion's options, their types, defaults and presets: the one definition every front end reads.

Standard library only (the Blender add-on reads it). A field's default is its ``paper`` value (the
published schedule and losses, with the start encoder's view in place of CMR's predicted pose);
``PRESETS["fast"]`` lists what the CPU preset changes. Why ``fast`` has its values is recorded in
benchmarks/MESHINVERSION.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ...options import FACES_RANGE, QUADS_DOC, SCALE_MODES, check_fields, check_size_m, option

TEXTURE_MODES = ("generated", "projected", "blended")
START_SCORINGS = ("published", "colour_layout")
LATENT_CENTRES = ("origin", "start")
STARTS = ("search", "encoder_view", "encoder")
ENCODER_STARTS = ("encoder_view", "encoder")
"""Starts that use the start encoder trained for the generator (the search where none is registered)."""
SIZE_RANGE = (64, 2048)
"""Sizes a user may ask for with ``texture_size``."""
PAPER_STAGES = [[50, 0.1, 0.01], [50, 0.05, 0.005], [50, 0.01, 0.001], [50, 0.005, 0.0005]]
"""(steps, z learning rate, camera learning rate) per stage, as published."""


@dataclass(frozen=True)
class Options:
    """One MeshInversion job's options (``InversionSettings.from_options`` turns them into the
    optimisation's settings)."""

    crop_margin: float = option(0.05, "margin added around the object's box per side, as a fraction")
    previews: bool = option(True, "render preview images into the result")
    texture: str = option(
        "generated",
        "generated: the GAN's texture (published); projected or blended: the photo baked into the UV map",
        choices=TEXTURE_MODES,
    )
    texture_size: int | None = option(
        None, "side of a projected/blended texture (null: follow the photo, up to 1024)",
        low=SIZE_RANGE[0], high=SIZE_RANGE[1],
    )  # fmt: skip
    scale: str = option(
        "metres", "metres: the category's typical length; unit: largest extent 1", choices=SCALE_MODES
    )
    size_m: float | None = option(None, "the mesh's length in metres instead of the category's typical size")
    faces: int | None = option(
        None, "about this many triangles in the exported mesh, fitted on the template (null: the template's)",
        low=FACES_RANGE[0], high=FACES_RANGE[1],
    )  # fmt: skip
    quads: bool = option(False, QUADS_DOC)
    faces_smoothing: float = option(
        0.0, "with faces: 0 keeps the fitted facets (and the input-view fit); 1 a spline through them",
        low=0.0, high=1.0,
    )  # fmt: skip
    render_size: int = option(256, "side of the crop the optimisation renders and compares", low=16)
    start: str = option(
        "encoder_view",
        "encoder_view: the start encoder's view as the one camera, z the best random draw under it (the"
        " official start, with the encoder in place of CMR's pose predictor); encoder (not in the paper):"
        " its z as the start's z too, no draws; search (not in the paper): a camera grid. The encoder is"
        " the one trained for the generator; where none is, or the guess fits the mask worse than"
        " encoder_accept_iou, the search runs",
        choices=STARTS,
    )
    encoder_accept_iou: float = option(
        0.7, "silhouette IoU of the refined encoder view that skips the search (official CMR rule: 0.7)",
        low=0.0, high=1.0,
    )
    turn_start: bool = option(
        False,
        "not in the paper: turn the start's view 180 deg about the object's up axis (its front/back twin)"
        " and fit from there, for a photo whose object came back facing the wrong way",
    )
    z_candidates: int = option(500, "latent candidates drawn for the initialisation", low=1)
    start_scoring: str = option(
        "published",
        "published: every (candidate, kept camera) pair scored by the full loss (official); colour_layout"
        " (not in the paper): silhouette pre-ranking, then full loss + 10 x colour-layout error",
        choices=START_SCORINGS,
    )
    rendered_candidates: int = option(64, "colour_layout: pairs, the best by silhouette IoU, scored in full")
    azimuths: int = option(12, "azimuths of the camera search grid")
    elevations: list[float] = option([0.0, 20.0, 40.0], "elevations (degrees) of the camera grid")  # noqa: RUF009
    camera_keep: int = option(4, "cameras kept per image after the search")
    camera_refine_steps: int = option(30, "steps refining each kept camera")
    stages: list[list[float]] = option(PAPER_STAGES, "(steps, z lr, camera lr) per stage")  # noqa: RUF009
    chamfer_points: int = option(8192, "points sampled for the chamfer losses")
    mask_weight: float = option(10.0, "weight of the mask chamfer loss")
    pixel_weight: float = option(1.0, "weight of the pixel chamfer loss")
    feature_weight: float = option(0.04, "weight of the VGG feature chamfer loss (0: off)")
    latent_weight: float = option(0.05, "weight of the latent prior")
    latent_centre: str = option(
        "origin",
        "origin: the latent prior is N(0, I) (published); start (not in the paper): N(z0, I) around the"
        " start's z, which with start=encoder is the encoder's guess of the car's 3D shape",
        choices=LATENT_CENTRES,
    )
    silhouette_weight: float = option(
        0.0, "not in the paper: weight of 1 - soft IoU of the antialiased silhouette (0: published)"
    )
    refine_steps: int = option(
        0, "not in the paper: steps of the smooth mirrored shape refinement (0: off)", low=0
    )
    refine_lr: float = option(0.001, "learning rate of the shape refinement", low=0)
    refine_smoothness: float = option(1000.0, "weight of the Laplacian of the refinement's offsets", low=0)
    pole_fill: int = option(0, "not in the paper: rings around each pole replaced by a smooth cap (0: off)")
    class_label: int | None = option(None, "class of a conditional generator (null: searched)")
    colour_label: int | None = option(None, "colour of a class+colour generator (null: searched)")
    chunk: int = option(64, "candidates per generator/render batch during initialisation (bounds memory)")

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "fast": {
            "texture": "blended", "z_candidates": 64, "rendered_candidates": 16, "azimuths": 8,
            "start_scoring": "colour_layout", "start": "encoder", "encoder_accept_iou": 0.85,
            "elevations": [0.0, 25.0], "camera_refine_steps": 20,
            "stages": [[60, 0.1, 0.01], [45, 0.03, 0.003]],
            "chamfer_points": 2048, "feature_weight": 0.0, "latent_weight": 3.0, "latent_centre": "start",
            "silhouette_weight": 2.0,
            "refine_steps": 60, "pole_fill": 2,
        },
        "paper": {},
    }  # fmt: skip
    """``fast``, for interactive use on a CPU: the encoder's z and view as the start (the search only
    where it fits worse than 0.85), the latent prior centred there, fewer candidates and steps, no VGG
    term, the silhouette term, the shape refinement, capped poles and the photo blended into the
    texture; ``paper``: the defaults."""

    def __post_init__(self) -> None:
        check_fields(self)
        check_size_m(self.size_m)
        if not self.stages:
            raise ValueError("render_size must be >= 16, z_candidates >= 1 and stages non-empty")
