"""The sRGB transfer curve (IEC 61966-2-1), both ways, extended past 1 by the same power.

Blender decodes an 8-bit colour texture with this curve before lighting it; scaling what a texture
holds by a factor in *linear* light is what a light that many times brighter undoes exactly.
"""

from __future__ import annotations

from torch import Tensor


def srgb_to_linear(encoded: Tensor) -> Tensor:
    """sRGB-encoded values (>= 0) -> linear light."""
    high = ((encoded.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4
    return (encoded / 12.92).where(encoded <= 0.04045, high)


def linear_to_srgb(linear: Tensor) -> Tensor:
    """Linear light (>= 0) -> sRGB-encoded values."""
    high = 1.055 * linear.clamp(min=0.0031308) ** (1 / 2.4) - 0.055
    return (linear * 12.92).where(linear <= 0.0031308, high)
