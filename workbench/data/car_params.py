"""Seeded car parameters: every car is a vector of uniforms drawn from its own seed, mapped to ranges.

Drawing a fixed-length uniform vector per seed makes a car depend on its seed only (not on the batch
it is generated in), and adding a parameter at the end keeps all existing cars unchanged.
"""

from __future__ import annotations

import torch

# Lengths are in car units: the body's half length is about 1 (the template sphere has radius 1).
SHAPE_RANGES: dict[str, tuple[float, float]] = {
    "half_length": (0.86, 1.0),
    "half_width": (0.36, 0.46),
    "body_half_height": (0.12, 0.19),
    "clearance": (0.04, 0.11),
    "body_roundness": (0.25, 0.7),  # rounding radius as a fraction of the body half height
    "hood_slope": (0.05, 0.45),  # drop of the bonnet towards the nose (rise over run)
    "nose_length": (0.15, 0.4),  # where the bonnet slope starts, from the nose
    "tail_slope": (0.0, 0.6),
    "tail_length": (0.08, 0.35),
    "cabin_height": (0.12, 0.24),
    "cabin_half_length": (0.28, 0.55),
    "cabin_offset": (-0.28, 0.06),  # cabin centre along z (negative: towards the tail)
    "cabin_width": (0.74, 0.94),  # cabin half width as a fraction of the body half width
    "windshield_rake": (0.4, 1.6),  # run over rise of the windscreen
    "rear_rake": (0.1, 2.0),  # upright hatchback .. long fastback
    "tumblehome": (0.05, 0.35),  # inward lean of the side windows
    "wheel_radius": (0.13, 0.2),
    "wheelbase": (0.55, 0.74),  # wheel z as a fraction of the half length
    "wheel_half_width": (0.07, 0.11),
    "window_margin": (0.18, 0.38),  # roof band above the windows, as a fraction of the cabin height
    "beltline": (0.0, 0.05),  # window sill above the body top
}

PAINT_PALETTE = torch.tensor(
    [
        [235, 235, 232],  # white
        [25, 26, 30],  # black
        [165, 168, 172],  # silver
        [95, 98, 104],  # graphite
        [180, 24, 28],  # red
        [30, 60, 150],  # blue
        [18, 32, 70],  # dark blue
        [35, 100, 60],  # green
        [230, 190, 30],  # yellow
        [225, 110, 25],  # orange
        [120, 20, 40],  # wine
        [90, 160, 200],  # light blue
    ],
    dtype=torch.float32,
)
PALETTE_WEIGHTS = torch.tensor([5, 4, 5, 3, 3, 2.5, 2, 1.5, 1, 1, 1, 1], dtype=torch.float32)

STYLE_NAMES = (
    "paint_index",
    "paint_jitter_r",
    "paint_jitter_g",
    "paint_jitter_b",
    "two_tone",
    "roof_index",
    "stripe",
    "stripe_index",
    "stripe_width",
    "stripe_gap",
    "side_stripe",
    "side_stripe_height",
    "rim_dark",
    "rim_spokes",
    "trim_dark",
    "glass_tint",
    "light_style",
    "pillar_offset",
)
NUM_UNIFORMS = len(SHAPE_RANGES) + len(STYLE_NAMES)


def car_uniforms(seeds: list[int]) -> torch.Tensor:
    """(B, NUM_UNIFORMS) float32 uniforms in [0, 1), each row a function of its seed alone."""
    rows = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed))
        rows.append(torch.rand(NUM_UNIFORMS, generator=gen, dtype=torch.float64))
    return torch.stack(rows).float()


def _pick(u: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted categorical choice from one uniform per row (inverse CDF)."""
    cdf = torch.cumsum(weights, 0) / weights.sum()
    return torch.searchsorted(cdf, u.contiguous(), right=True).clamp(max=len(weights) - 1)


def car_params(seeds: list[int], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Shape and style parameters of the cars ``seeds``: name -> (B,) float32 tensor on ``device``.

    Colours are (B, 3) in [0, 1] linear-ish sRGB values (painted into an sRGB texture as they are).
    """
    u = car_uniforms(seeds).to(device)
    p: dict[str, torch.Tensor] = {}
    for i, (name, (lo, hi)) in enumerate(SHAPE_RANGES.items()):
        p[name] = lo + (hi - lo) * u[:, i]
    s = {name: u[:, len(SHAPE_RANGES) + i] for i, name in enumerate(STYLE_NAMES)}
    palette, weights = PAINT_PALETTE.to(device) / 255.0, PALETTE_WEIGHTS.to(device)
    jitter = torch.stack([s["paint_jitter_r"], s["paint_jitter_g"], s["paint_jitter_b"]], -1) - 0.5
    p["paint"] = (palette[_pick(s["paint_index"], weights)] + 0.12 * jitter).clamp(0.02, 0.96)
    p["roof_paint"] = palette[_pick(s["roof_index"], weights)]
    p["stripe_paint"] = palette[_pick(s["stripe_index"], weights)]
    p["two_tone"] = (s["two_tone"] < 0.2).float()
    p["stripe"] = (s["stripe"] < 0.22).float()
    p["stripe_width"] = 0.03 + 0.06 * s["stripe_width"]
    p["stripe_gap"] = 0.1 * s["stripe_gap"] * (s["stripe_gap"] > 0.4).float()
    p["side_stripe"] = (s["side_stripe"] < 0.2).float()
    p["side_stripe_height"] = s["side_stripe_height"]
    p["rim_dark"] = (s["rim_dark"] < 0.35).float()
    p["rim_spokes"] = torch.floor(4 + 4 * s["rim_spokes"])
    p["trim_dark"] = (s["trim_dark"] < 0.6).float()
    p["glass_tint"] = s["glass_tint"]
    p["light_style"] = s["light_style"]
    p["pillar_offset"] = s["pillar_offset"] - 0.5
    return p
