"""The texture stage after the search: the mirror in UV space, the texture's size, the composite of
photo, mirror and fill, and the method end to end with each ``texture`` mode."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from backend.methods.meshinversion import METHOD
from backend.methods.meshinversion.appearance import compose, mirror_columns, texture_size
from backend.methods.meshinversion.mesh_gan import MeshGAN
from backend.methods.meshinversion.options import Options
from backend.options import parse_options, preset_options
from backend.protocol import UserError
from backend.render.bake import Bake, uv_fragments
from backend.render.interpolate import blend_vertex_attributes
from tests.meshinversion.helpers import NO_AUXILIARY, small_generator
from tests.meshinversion.test_method import TINY_OVERRIDES, photo_file, quiet


def test_mirrored_columns_hold_the_mirror_image_of_the_surface():
    model = MeshGAN(small_generator())
    size = 64
    texels = uv_fragments(model.exported_uvs, size)
    points = blend_vertex_attributes(texels, model.faces, model.template.vertices)
    image = texels.to_image(torch.cat((points, torch.ones_like(points[:, :1])), dim=1))[0].permute(2, 0, 1)
    mirrored = mirror_columns(image)
    both = (image[3] > 0) & (mirrored[3] > 0)
    assert float(both.float().mean()) > 0.9
    flip = torch.tensor([-1.0, 1.0, 1.0])[:, None]
    error = (mirrored[:3][:, both] - image[:3][:, both] * flip).norm(dim=0)
    assert float(error.mean()) < 0.02 and float(error.max()) < 0.1  # the two halves triangulate differently
    torch.testing.assert_close(mirror_columns(mirrored), image)


def test_texture_size_follows_the_photo_within_limits():
    assert texture_size(None, 120, 256) == 256  # never below the GAN's own texture
    assert texture_size(None, 300, 256) == 1024  # twice the side, rounded up to a power of two
    assert texture_size(None, 240, 256) == 512
    assert texture_size(None, 4000, 256) == 1024  # the automatic size stops at 1024
    assert texture_size(300, 4000, 256) == 300  # an explicit size wins


def seen_left_quarter(size: int) -> Bake:
    """A bake that saw only u in [0.3, 0.45) (its mirror image is u in [0.05, 0.2)), in red."""
    weight = torch.zeros(size, size)
    weight[:, size * 3 // 10 : size * 45 // 100] = 1.0
    colour = torch.tensor([0.9, 0.1, 0.1])[:, None, None] * weight
    return Bake(colour, weight, torch.ones(size, size, dtype=torch.bool))


@pytest.mark.parametrize("mode", ["projected", "blended"])
def test_composite_keeps_the_photo_mirrors_it_and_fills_the_rest(mode):
    size = 64
    g = torch.Generator().manual_seed(0)
    gan = torch.rand(3, 32, 32, generator=g) * 2 - 1
    bake = seen_left_quarter(size)
    result = compose(mode, gan, bake, symmetric=True)
    texture = result.texture
    red = torch.tensor([0.9, 0.1, 0.1])[:, None, None]
    seen = bake.weight > 0
    everywhere = red.expand(-1, size, size)
    for region in (seen, mirror_columns(seen)):
        torch.testing.assert_close(texture[:, region], everywhere[:, region])
    assert result.seen == pytest.approx(float(seen.float().mean()), abs=1e-6)
    assert result.mirrored == pytest.approx(float(mirror_columns(seen).float().mean()), abs=1e-6)
    # Unseen texels: the photo's hue (red dominates), the GAN's random colours nowhere.
    rest = ~(seen | mirror_columns(seen))
    assert bool((texture[0, rest] > texture[1, rest]).all() and (texture[0, rest] > texture[2, rest]).all())
    far = texture[:, :, size * 3 // 4 - 2 : size * 3 // 4 + 2]
    if mode == "projected":
        torch.testing.assert_close(far, red.expand_as(far), atol=1e-4, rtol=0)
    else:  # the GAN's brightness detail modulates the photo's colour far from the seen texels
        assert float(far[0].std()) > 0.05


def test_the_method_exports_the_texture_of_each_mode(tmp_path):
    _, image = photo_file(tmp_path)
    entry = SimpleNamespace(id="tiny-car", category="car", origin="shipped")
    method = METHOD(entry, torch.device("cpu"), MeshGAN(small_generator()), NO_AUXILIARY)
    base = preset_options(Options, "fast", **TINY_OVERRIDES)
    modes = ("generated", "projected", "blended")
    results = {mode: method.run(image, replace(base, texture=mode), 0, quiet) for mode in modes}
    assert results["generated"].texture.shape == (256, 256, 3)
    assert results["generated"].info["texture"] == {"mode": "generated", "size": 256}
    info = results["blended"].info["texture"]
    assert info["mode"] == "blended" and results["blended"].texture.shape == (info["size"],) * 2 + (3,)
    assert 0 < info["seen_fraction"] < 0.7 and info["mirrored_fraction"] > 0
    for mode in modes:  # the texture stage leaves the shape alone
        np.testing.assert_array_equal(results[mode].vertices, results["generated"].vertices)
    # The photo is a render of a random generator: its colours, not the GAN's, fill the baked texture.
    photo_mean = image.rgb[image.mask].mean(axis=0) * 255
    baked_mean = results["projected"].texture.reshape(-1, 3).mean(axis=0)
    assert np.abs(baked_mean - photo_mean).max() < 40
    sized = method.run(image, replace(base, texture="blended", texture_size=128), 0, quiet)
    assert sized.texture.shape == (128, 128, 3)


@pytest.mark.parametrize("overrides", [{"texture": "bogus"}, {"texture_size": 0}, {"texture_size": 100000},
                                       {"texture_size": 2.5}])
def test_bad_texture_options_are_one_line_errors_before_any_work(overrides):
    with pytest.raises(ValueError) as err:
        preset_options(Options, "fast", **overrides)
    assert "\n" not in str(err.value) and "texture" in str(err.value)
    with pytest.raises(UserError) as user_error:
        parse_options(Options, "fast", overrides)
    assert user_error.value.code == "bad_option" and "texture" in user_error.value.message
