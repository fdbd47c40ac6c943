"""Procedural backgrounds, from plain to cluttered, because real photos never have an empty backdrop.

Kinds: a plain colour; a sky-to-ground gradient with a horizon and a ground plane; blurry
low-frequency colour noise; and clutter (random boxes and discs over a gradient). Every background
also gets fine grain. Each is a function of its seed alone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KINDS = ("plain", "horizon", "noise", "clutter")


def _grid(size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(size, size) x and y in [0, 1] (y = 0 at the top)."""
    t = (torch.arange(size, device=device, dtype=torch.float32) + 0.5) / size
    return t[None, :].expand(size, size), t[:, None].expand(size, size)


def _lerp(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Blend colours a, b (3,) by a weight image w (H, W) -> (H, W, 3)."""
    return a + (b - a) * w[..., None]


def _horizon(gen: torch.Generator, size: int, device: torch.device) -> torch.Tensor:
    x, y = _grid(size, device)
    sky_top, sky_low, ground_far, ground_near = torch.rand(4, 3, generator=gen).to(device)
    horizon = 0.3 + 0.4 * torch.rand((), generator=gen).item()
    tilt = (torch.rand((), generator=gen).item() - 0.5) * 0.2
    line = horizon + tilt * (x - 0.5)
    sky = _lerp(0.4 + 0.6 * sky_top, 0.5 + 0.5 * sky_low, (y / line.clamp(min=1e-3)).clamp(0, 1))
    ground = _lerp(0.6 * ground_far, 0.5 * ground_near, ((y - line) / (1 - line).clamp(min=1e-3)).clamp(0, 1))
    return torch.where((y < line)[..., None], sky, ground)


def _noise(gen: torch.Generator, size: int, device: torch.device) -> torch.Tensor:
    cells = int(torch.randint(3, 12, (), generator=gen))
    coarse = torch.rand(1, 3, cells, cells, generator=gen).to(device)
    colour_amount = 0.15 + 0.5 * torch.rand((), generator=gen).item()  # real clutter is rarely neon
    coarse = coarse.mean(1, keepdim=True) + colour_amount * (coarse - coarse.mean(1, keepdim=True))
    return F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0].permute(1, 2, 0)


def _clutter(gen: torch.Generator, size: int, device: torch.device) -> torch.Tensor:
    image = _horizon(gen, size, device)
    x, y = _grid(size, device)
    count = int(torch.randint(4, 14, (), generator=gen))
    shapes = torch.rand(count, 8, generator=gen).to(device)  # cx, cy, w, h, r, g, b, disc?
    for cx, cy, w, h, r, g, b, disc in shapes:  # a dozen shapes, each a whole-image tensor op
        hw, hh = 0.04 + 0.25 * w, 0.04 + 0.25 * h
        if disc > 0.5:
            inside = ((x - cx) / hw) ** 2 + ((y - cy) / hh) ** 2 < 1
        else:
            inside = ((x - cx).abs() < hw) & ((y - cy).abs() < hh)
        image = torch.where(inside[..., None], torch.stack([r, g, b]), image)
    return image


def background(seed: int, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(size, size, 3) float32 background in [0, 1] for render seed ``seed``."""
    device = torch.device(device)
    gen = torch.Generator().manual_seed(int(seed))
    kind = KINDS[int(torch.randint(len(KINDS), (), generator=gen))]
    if kind == "plain":
        image = torch.rand(3, generator=gen).to(device).expand(size, size, 3)
    elif kind == "horizon":
        image = _horizon(gen, size, device)
    elif kind == "noise":
        image = _noise(gen, size, device)
    else:
        image = _clutter(gen, size, device)
    grain = 0.03 * torch.rand((), generator=gen).item() * torch.randn(size, size, 1, generator=gen).to(device)
    return (image + grain).clamp(0, 1)
