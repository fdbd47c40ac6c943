"""The texture stage after the latent search: the photo's own colours on the texels it sees.

``generated`` keeps the GAN's texture (as published). ``projected`` and ``blended`` bake the photo
into the UV map through the final camera (``backend.render.bake``), copy it to the mirrored texels
of a symmetric model (u -> 0.5 - u: the hidden side of a car looks like its visible side), and
fill what neither sees with the photo's colours diffused from the seen texels (``pull_push``), so
no seam shows; ``blended`` also fades in, away from the seen texels, the GAN texture's brightness
detail (windows, lights, panel lines) on those colours. Layers are composited front to back
(seen, mirrored, fill).

The texture is written in the exported-UV convention (``mesh_gan.exported_uvs``, texel centres),
at a size that follows the photo: twice the crop's side (a visible half of the surface spans
about half the UV square), as a power of two between the GAN's resolution and ``MAX_AUTO_SIZE``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from backend.render.bake import Bake, blur, pull_push

MAX_AUTO_SIZE = 1024
DETAIL_SCALE = 1 / 16
"""Neighbourhood (Gaussian std, fraction of the texture size) the GAN's brightness detail is
measured against."""
GAN_FADE = 1 / 32
"""``blended``: how far (Gaussian std, as a fraction of the texture size) the photo's diffused colours
reach into the unseen texels before the GAN's texture takes over."""


@dataclass
class Appearance:
    """``texture`` (3, N, N) in [0, 1]; ``seen`` and ``mirrored``: fractions of the texture's area
    taken from the photo directly and through the mirror (for ``result.json``)."""

    texture: Tensor
    seen: float
    mirrored: float


def texture_size(requested: int | None, photo_side: float, gan_size: int) -> int:
    """The output texture's size: ``requested``, or twice the photo crop's side in pixels rounded up
    to a power of two, within [``gan_size``, ``MAX_AUTO_SIZE``]."""
    if requested is not None:
        return requested
    wanted = 2 ** math.ceil(math.log2(max(2.0 * photo_side, 1.0)))
    return int(min(max(wanted, gan_size), MAX_AUTO_SIZE))


def mirror_columns(image: Tensor) -> Tensor:
    """(..., N, N) texture -> its mirror image under x -> -x: column j holds column N/2 - 1 - j (mod N),
    the texel centre at u' = 0.5 - u (the template's UV layout, ``template.py``)."""
    size = image.shape[-1]
    source = (size // 2 - 1 - torch.arange(size, device=image.device)) % size
    return image.index_select(-1, source)


def resample_texture(texture: Tensor, size: int) -> Tensor:
    """(3, T, T) GAN texture in [-1, 1] -> (3, N, N) in [0, 1] at texel centres, wrapping in u (the
    seam) and clamping in v, so it reads as the T x T one does under the exported UVs."""
    wrapped = torch.cat((texture[..., -1:], texture, texture[..., :1]), dim=-1)[None]
    resized = F.interpolate(wrapped, size=(size, size * (texture.shape[-1] + 2) // texture.shape[-1]),
                            mode="bilinear", align_corners=False)
    pad = (resized.shape[-1] - size) // 2
    return (resized[0, :, :, pad : pad + size].clamp(-1, 1) + 1) / 2


def gan_detail(texture: Tensor) -> Tensor:
    """(1, N, N) the GAN texture's brightness relative to its neighbourhood (windows darker, lights
    brighter than the body), to modulate colours taken from the photo."""
    luminance = texture.mean(dim=0)
    local = blur(luminance, DETAIL_SCALE * texture.shape[-1])
    return ((luminance + 0.05) / (local + 0.05)).clamp(0.3, 1.7)[None]


def compose(mode: str, gan_texture: Tensor, bake: Bake, symmetric: bool) -> Appearance:
    """The final texture of ``mode`` from the GAN's (3, T, T) texture in [-1, 1] and the photo's bake.

    Seen texels keep the photo's colour; the rest get the photo's colours diffused from the seen
    ones (``pull_push``), so every seam between photo and fill is continuous. ``blended`` then fades
    the recoloured GAN texture in with the distance from the seen texels.
    """
    size = bake.weight.shape[-1]
    direct, photo = bake.opacity, bake.photo
    if symmetric:
        mirrored = mirror_columns(direct) * (1 - direct)
        photo_mirrored = mirror_columns(photo)
    else:
        mirrored = torch.zeros_like(direct)
        photo_mirrored = photo
    seen = direct + mirrored
    from_photo = (direct * photo + mirrored * photo_mirrored) / seen.clamp(min=1e-6)
    fill = pull_push(from_photo, seen)
    if mode == "blended":
        gan = gan_detail(resample_texture(gan_texture, size)) * fill
        nearby = (2 * blur(seen, GAN_FADE * size)).clamp(0, 1)
        fill = nearby * fill + (1 - nearby) * gan
    texture = from_photo * seen + fill * (1 - seen)
    area = float(bake.covered.float().sum().clamp(min=1))
    return Appearance(
        texture=pull_push(texture, bake.covered.to(texture.dtype)).clamp(0, 1),
        seen=float(direct[bake.covered].sum()) / area,
        mirrored=float(mirrored[bake.covered].sum()) / area,
    )
