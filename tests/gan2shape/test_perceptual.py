"""LPIPS-style distance: torchvision vgg16 layout, LPIPS heads, and the distance's basic properties."""

from __future__ import annotations

import pytest
import torch

from backend.methods.gan2shape.perceptual import (
    TAP_WIDTHS,
    PerceptualDistance,
    masked_perceptual,
    split_vgg_state,
)

TORCHVISION_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
"""Indices of the 13 convolutions in torchvision's ``vgg16().features``."""


def torchvision_style_vgg16() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    widths = [3, 64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    state = {}
    for i, index in enumerate(TORCHVISION_CONVS):
        he_std = (2 / (9 * widths[i])) ** 0.5
        state[f"features.{index}.weight"] = torch.randn(widths[i + 1], widths[i], 3, 3) * he_std
        state[f"features.{index}.bias"] = torch.zeros(widths[i + 1])
    state["classifier.6.bias"] = torch.zeros(1000)  # present in the real file, unused here
    return state


def test_feature_keys_are_torchvision_vgg16s():
    expected = {f"{i}.{p}" for i in TORCHVISION_CONVS for p in ("weight", "bias")}
    assert set(PerceptualDistance().features.state_dict()) == expected


def test_distance_properties():
    model = PerceptualDistance.from_state_dicts(torchvision_style_vgg16())
    torch.manual_seed(1)
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    same = model(a, a)
    assert same.shape == (2,) and same.abs().max() < 1e-6
    torch.testing.assert_close(model(a, b), model(b, a))
    assert (model(a, b) > 0).all()
    near = model(a, a + 0.01 * (b - a))
    assert (near < model(a, b)).all()
    x = a.clone().requires_grad_(True)
    model(x, b).sum().backward()
    assert x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in model.parameters())


def test_lpips_heads_load_and_weigh_channels():
    vgg = torchvision_style_vgg16()
    heads = {f"lin{i}.model.1.weight": torch.zeros(1, w, 1, 1) for i, w in enumerate(TAP_WIDTHS)}
    a, b = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    assert PerceptualDistance.from_state_dicts(vgg, heads)(a, b).item() == 0.0
    broken = dict(heads)
    del broken["lin3.model.1.weight"]
    with pytest.raises(KeyError, match="lin3"):
        PerceptualDistance.from_state_dicts(vgg, broken)


def test_wrong_files_are_refused():
    with pytest.raises(ValueError, match="features"):
        split_vgg_state({"conv.weight": torch.zeros(1)})
    vgg = torchvision_style_vgg16()
    vgg["features.28.weight"] = torch.zeros(512, 256, 3, 3)
    with pytest.raises(RuntimeError, match=r"28\.weight"):
        PerceptualDistance.from_state_dicts(vgg)


def test_masked_perceptual_is_zero_when_off():
    a = torch.rand(1, 3, 16, 16)
    assert masked_perceptual(None, a, -a, torch.ones(1, 1, 16, 16)).item() == 0.0
