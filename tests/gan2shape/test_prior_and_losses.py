"""Ellipsoid prior fitted to the mask; losses on cases with known answers."""

from __future__ import annotations

import pytest
import torch

from backend.methods.gan2shape.depthmap import normals_from_depth, smooth_depth
from backend.methods.gan2shape.losses import (
    discriminator_feature_loss,
    photometric_loss,
    smooth_loss,
)
from backend.methods.gan2shape.prior import PRIOR_NEAR, adjusted_box, ellipsoid_prior, mask_box


def box_mask(size: int, rows: tuple[int, int], cols: tuple[int, int]) -> torch.Tensor:
    mask = torch.zeros(size, size)
    mask[rows[0] : rows[1] + 1, cols[0] : cols[1] + 1] = 1
    return mask


def test_prior_is_a_cap_filling_the_mask_box_ellipse():
    mask = box_mask(64, (20, 39), (8, 55))
    far = 1.02
    prior = ellipsoid_prior(mask, "cat", far=far)
    cy, cx, half_h, half_w = 29.5, 31.5, 9.5, 23.5
    rows = torch.arange(64.0)[:, None]
    cols = torch.arange(64.0)[None, :]
    inside = ((rows - cy) / half_h) ** 2 + ((cols - cx) / half_w) ** 2 <= 1
    assert torch.equal(prior < far, inside & (prior < far))
    assert (prior[~inside] == far).all()
    assert prior.min() == pytest.approx(PRIOR_NEAR, abs=2e-3)
    # Monotone from the centre outwards along the middle row, symmetric about the box centre.
    row = prior[29, 8:32]
    assert (row[1:] <= row[:-1] + 1e-6).all()
    torch.testing.assert_close(prior[20:40, 8:56], prior[20:40, 8:56].flip(1))


def test_category_box_adjustments():
    mask = box_mask(64, (20, 39), (8, 55)) > 0
    assert mask_box(mask) == (20.0, 39.0, 8.0, 55.0)
    assert adjusted_box(mask, "car") == (20.0, 39.0 + 19 / 6, 8.0, 55.0)
    assert adjusted_box(mask, "face")[1] == 63.0
    assert adjusted_box(mask, "face")[2] == pytest.approx(8 + 47 / 12)
    assert adjusted_box(mask, "synface")[0] == pytest.approx(20 - 19 / 6)


def test_prior_refuses_an_empty_mask():
    with pytest.raises(ValueError, match="empty"):
        ellipsoid_prior(torch.zeros(16, 16), "car")


def test_smooth_loss_ignores_slopes_and_penalises_curvature():
    rows, cols = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    plane = 0.3 * rows - 0.2 * cols + 1
    assert smooth_loss(plane[None]).item() == pytest.approx(0.0, abs=1e-5)
    bowl = (rows - 8) ** 2 + (cols - 8) ** 2
    # d2/dx2 = d2/dy2 = 2 everywhere, mixed terms 0: mean |.| sum = 4.
    assert smooth_loss(bowl[None, None]).item() == pytest.approx(4.0)


def test_depth_smoothing_removes_ripples_on_the_object_only():
    """A tilted plane with pixel-scale ripples inside a box: smoothing brings its normals back to
    the plane's, keeps a clean plane (exactly away from the rim; at the rim, which averages only
    object pixels, within a fraction of the plane's slope) and leaves the outside untouched."""
    rows, cols = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    plane = 1 + 0.002 * rows - 0.001 * cols
    mask = box_mask(32, (6, 25), (4, 27)).bool()
    ripples = 0.004 * torch.sin(rows * 2.5) * torch.cos(cols * 2.0)
    background = torch.full_like(plane, 1.2)
    noisy = torch.where(mask, plane + ripples, background)
    smoothed = smooth_depth(noisy[None], mask[None], sigma=2.0)[0]
    assert torch.equal(smoothed[~mask], background[~mask])
    clean = smooth_depth(torch.where(mask, plane, background)[None], mask[None], sigma=2.0)[0]
    far = box_mask(32, (12, 19), (10, 21)).bool()  # 3 sigma inside the rim
    assert torch.allclose(clean[far], plane[far], atol=1e-6)
    assert (clean - plane)[mask].abs().max() < 0.003 * 2.0  # under (slope 0.002 + 0.001) x sigma
    inner = mask.clone()
    inner[[6, 25]], inner[:, [4, 27]] = False, False  # one-pixel rim: normals there need the outside

    def angle_to_plane(depth):
        n, n_plane = normals_from_depth(depth[None])[0], normals_from_depth(plane[None])[0]
        return torch.rad2deg((n * n_plane).sum(-1).clamp(-1, 1).acos())[inner].mean()

    before, after = angle_to_plane(noisy), angle_to_plane(smoothed)
    assert before > 15 and after < 0.3 * before, (before, after)


def test_photometric_loss_is_masked_mean():
    a, b = torch.zeros(1, 3, 4, 4), torch.ones(1, 3, 4, 4)
    b[..., :2] = 5
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., 2:] = 1
    assert photometric_loss(a, b, mask).item() == pytest.approx(1.0)
    assert photometric_loss(a, b).item() == pytest.approx(3.0)


def test_discriminator_feature_loss_pools_the_mask_per_resolution():
    feats = [torch.ones(1, 2, 8, 8), torch.ones(1, 4, 4, 4)]
    target = [torch.zeros(1, 2, 8, 8), torch.zeros(1, 4, 4, 4)]
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :8] = 1
    assert discriminator_feature_loss(feats, target, mask).item() == pytest.approx(2.0)
    assert discriminator_feature_loss(feats, feats, mask).item() == 0.0
