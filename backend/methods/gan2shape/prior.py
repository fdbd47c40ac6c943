"""The convex shape prior GAN2Shape starts from: a spherical cap fitted to the object mask.

Step 1 needs a rough, convex guess of the depth so that re-lighting and re-projection produce
plausible pseudo samples; everything later refines it. The cap is ``near`` at its centre and
``far`` at its rim, stretched to the mask's bounding box, with the official per-category box
adjustments (faces: down to the image bottom and narrowed; cars/churches: extended downwards,
since the ground contact is usually under-segmented).

Deviation: the official code scales rows about the image centre rather than the box centre,
which shifts the cap off the box when the object is not vertically centred; here the cap is
fitted to the (adjusted) box itself.
"""

from __future__ import annotations

import math

import torch

PRIOR_NEAR, PRIOR_FAR, PRIOR_RADIUS = 0.91, 1.02, 0.4
MASK_THRESHOLD = 0.7


def mask_box(mask: torch.Tensor) -> tuple[float, float, float, float]:
    """(min_y, max_y, min_x, max_x) pixel indices of a non-empty boolean (H, W) mask."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    if rows.numel() == 0:
        raise ValueError("the object mask is empty; no shape prior can be fitted")
    return float(rows[0]), float(rows[-1]), float(cols[0]), float(cols[-1])


def adjusted_box(mask: torch.Tensor, category: str) -> tuple[float, float, float, float]:
    """The official per-category adjustment of the mask box (see module docstring)."""
    min_y, max_y, min_x, max_x = mask_box(mask)
    h = mask.shape[0]
    if category == "synface":
        min_y -= (max_y - min_y) / 6
    elif category == "face":
        max_y = h - 1
        width = max_x - min_x
        min_x, max_x = min_x + width / 12, max_x - width / 12
    elif category in ("car", "church"):
        max_y += (max_y - min_y) / 6
    return min_y, max_y, min_x, max_x


def ellipsoid_prior(
    mask: torch.Tensor, category: str, near: float = PRIOR_NEAR, far: float = PRIOR_FAR,
    radius: float = PRIOR_RADIUS,
) -> torch.Tensor:
    """Canonical depth (H, W) from an object mask (H, W): a cap inside the box's ellipse, ``far`` outside."""
    if not 0 < far - near < radius:
        raise ValueError(f"need 0 < far - near < radius, got near={near}, far={far}, radius={radius}")
    min_y, max_y, min_x, max_x = adjusted_box(mask >= MASK_THRESHOLD, category)
    half_w = max((max_x - min_x) / 2, 0.5)
    half_h = max((max_y - min_y) / 2, 0.5)
    cy, cx = (max_y + min_y) / 2, (max_x + min_x) / 2
    h, w = mask.shape
    rows = torch.arange(h, dtype=torch.float32, device=mask.device)[:, None]
    cols = torch.arange(w, dtype=torch.float32, device=mask.device)[None, :]
    dist = torch.sqrt(((rows - cy) / half_h).square() + ((cols - cx) / half_w).square())
    base = math.sqrt(radius**2 - (radius - (far - near)) ** 2)
    cap = radius - torch.sqrt((radius**2 - (dist * base).square()).abs()) + near
    return torch.where(dist <= 1, cap, torch.full_like(cap, far))
