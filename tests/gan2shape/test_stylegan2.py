"""StyleGAN2 (rosinality layout): official key/shape compatibility, strict loading, and op correctness."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from backend.methods.gan2shape.stylegan2 import (
    OFFICIAL_CONFIGS,
    Discriminator,
    Generator,
    StyleGAN2Config,
    build_gan,
    flatten_checkpoint,
    infer_config,
    minibatch_stddev,
)
from backend.methods.gan2shape.stylegan2_ops import (
    demodulated_weight,
    make_blur_kernel,
    modulated_conv2d,
    upfirdn2d,
)

KEYS_FILE = Path(__file__).parent / "data" / "stylegan2_rosinality_keys.txt"
"""Keys and shapes listed by building the official classes (copy of shared/research)."""

SMALL = StyleGAN2Config(
    size=32, style_dim=32, n_mlp=2, channel_multiplier=1, channel_base=512, channel_max=32
)


def official_listing() -> dict[tuple[str, int, int], tuple[int, int, dict[str, list[int]]]]:
    """(net, size, multiplier) -> (entries, parameters, {key: shape}) in file order."""
    sections: dict[tuple[str, int, int], tuple[int, int, dict[str, list[int]]]] = {}
    header = re.compile(
        r"## (g_ema|d): size (\d+), channel_multiplier (\d+) .*: (\d+) entries, (\d+) parameters"
    )
    keys: dict[str, list[int]] = {}
    for line in KEYS_FILE.read_text().splitlines():
        if m := header.match(line):
            keys = {}
            sections[(m[1], int(m[2]), int(m[3]))] = (int(m[4]), int(m[5]), keys)
        elif "\t" in line:
            name, shape = line.split("\t")
            keys[name] = [int(s) for s in shape.strip("[]").split(",")]
    return sections


LISTING = official_listing()


def test_listing_covers_every_official_config() -> None:
    sizes = {(c.size, c.channel_multiplier) for c in OFFICIAL_CONFIGS.values()}
    wanted = {(net, size, mult) for size, mult in sizes for net in ("g_ema", "d")}
    assert wanted == set(LISTING)


@pytest.mark.parametrize("section", sorted(LISTING), ids=lambda s: f"{s[0]}-{s[1]}px-x{s[2]}")
def test_official_keys_shapes_counts_and_strict_load(section: tuple[str, int, int]) -> None:
    net, size, multiplier = section
    entries, n_params, keys = LISTING[section]
    config = StyleGAN2Config(size=size, channel_multiplier=multiplier)
    model = Generator(config) if net == "g_ema" else Discriminator(config)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(ours.items()) == list(keys.items())
    assert len(ours) == entries
    assert sum(p.numel() for p in model.parameters()) == n_params
    gen = torch.Generator().manual_seed(0)
    official = {k: torch.randn(shape, generator=gen) for k, shape in keys.items()}
    model.load_state_dict(official, strict=True)
    assert torch.equal(model.state_dict()[next(iter(keys))], official[next(iter(keys))])


def test_official_celeba_forward_shapes_and_features() -> None:
    config = OFFICIAL_CONFIGS["celeba"]
    g, d = Generator(config).eval(), Discriminator(config).eval()
    with torch.no_grad():
        z = torch.randn(2, config.style_dim)
        img = g(z)
        w = g.style_forward(z)
        assert torch.allclose(g(w, input_is_w=True), img)
        w_plus = w[:, None].expand(-1, config.n_latent, -1)
        assert torch.allclose(g(w_plus, input_is_w=True), img)
        logits = d(img)
        feats = d(F.interpolate(img, size=64), ftr_num=4)
    assert img.shape == (2, 3, 128, 128) and torch.isfinite(img).all()
    assert logits.shape == (2, 1)
    assert [f.shape[1:] for f in feats] == [(256, 32, 32), (512, 16, 16), (512, 8, 8), (512, 4, 4)]


def test_car_discriminator_features_at_gan2shape_image_size() -> None:
    """GAN2Shape feeds 128 px images to the 512 px car discriminator and uses 4 early blocks."""
    d = Discriminator(OFFICIAL_CONFIGS["car"])
    with torch.no_grad():
        feats = d(torch.randn(1, 3, 128, 128), ftr_num=4)
    shapes = [tuple(f.shape) for f in feats]
    assert shapes == [(1, 128, 64, 64), (1, 256, 32, 32), (1, 512, 16, 16), (1, 512, 8, 8)]


def test_mapping_layers_split_like_gan2shape_style_forward() -> None:
    torch.manual_seed(0)
    g = Generator(StyleGAN2Config(size=16, style_dim=16, n_mlp=8, channel_base=256, channel_max=16))
    z = torch.randn(3, 16)
    hidden = g.style_forward(z, depth=6)
    assert torch.allclose(g.style_forward(hidden, skip=6), g.style_forward(z), atol=1e-6)
    normed = g.style_forward(z, depth=1)
    assert torch.allclose(normed.square().mean(dim=1), torch.ones(3), atol=1e-5)
    assert g.style[1].lr_mul == 0.01


def test_fixed_noise_by_default_random_noise_changes_output() -> None:
    torch.manual_seed(0)
    g = Generator(SMALL)
    for m in g.modules():
        if m.__class__.__name__ == "NoiseInjection":
            m.weight.data.fill_(0.5)
    z = torch.randn(2, SMALL.style_dim)
    with torch.no_grad():
        a, b = g(z), g(z)
        c = g(z, noise=g.make_noise(2, torch.Generator().manual_seed(1)))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_truncation_pulls_towards_mean_latent() -> None:
    torch.manual_seed(0)
    g = Generator(SMALL)
    mean = g.mean_latent(64, torch.Generator().manual_seed(0))
    z = torch.randn(2, SMALL.style_dim)
    with torch.no_grad():
        at_mean = g(z, truncation=0.0, truncation_latent=mean)
        direct = g(mean.expand(2, -1), input_is_w=True)
    assert torch.allclose(at_mean, direct, atol=1e-6)
    with pytest.raises(ValueError, match="truncation_latent"):
        g(z, truncation=0.5)


def test_demodulated_weights_have_unit_norm_per_output_channel() -> None:
    gen = torch.Generator().manual_seed(0)
    weight = torch.randn(8, 5, 3, 3, generator=gen)
    style = torch.rand(4, 5, generator=gen) + 0.5
    norms = demodulated_weight(weight, style).square().sum(dim=(2, 3, 4)).sqrt()
    assert torch.allclose(norms, torch.ones(4, 8), atol=1e-5)


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("demodulate", [False, True])
def test_modulated_conv_equals_per_sample_grouped_convolution(upsample: bool, demodulate: bool) -> None:
    """The input-scaling form must equal the official per-sample-weight grouped convolution."""
    gen = torch.Generator().manual_seed(1)
    b, cin, cout, k = 3, 5, 7, 3
    x = torch.randn(b, cin, 6, 6, generator=gen)
    weight = torch.randn(cout, cin, k, k, generator=gen)
    style = torch.randn(b, cin, generator=gen)
    ours = modulated_conv2d(x, weight, style, demodulate, upsample=upsample, padding=k // 2)
    if demodulate:
        per_sample = demodulated_weight(weight, style)
    else:
        per_sample = weight[None] * style[:, None, :, None, None]
    flat_x = x.reshape(1, b * cin, 6, 6)
    if upsample:
        wt = per_sample.transpose(1, 2).reshape(b * cin, cout, k, k)
        ref = F.conv_transpose2d(flat_x, wt, stride=2, groups=b)
    else:
        ref = F.conv2d(flat_x, per_sample.reshape(b * cout, cin, k, k), padding=k // 2, groups=b)
    assert torch.allclose(ours, ref.view(b, cout, *ref.shape[2:]), atol=1e-4)


def test_blur_of_constant_image_stays_constant() -> None:
    kernel = make_blur_kernel((1, 3, 3, 1))
    assert math.isclose(kernel.sum().item(), 1.0, rel_tol=1e-6)
    x = torch.full((2, 3, 12, 12), 0.7)
    blurred = upfirdn2d(x, kernel, pad=(1, 2))
    assert blurred.shape == x.shape
    assert torch.allclose(blurred[:, :, 2:-2, 2:-2], x[:, :, 2:-2, 2:-2])
    up = upfirdn2d(x, kernel * 4, up=2, pad=(2, 1))
    assert up.shape == (2, 3, 24, 24)
    assert torch.allclose(up[:, :, 3:-3, 3:-3], torch.full_like(up[:, :, 3:-3, 3:-3], 0.7))
    down = upfirdn2d(x, kernel, down=2, pad=(1, 1))
    assert down.shape == (2, 3, 6, 6)
    assert torch.allclose(down[:, :, 1:-1, 1:-1], torch.full((2, 3, 4, 4), 0.7))


def test_upfirdn2d_upsampling_equals_transposed_convolution() -> None:
    """Zero insertion + FIR filter is a stride-2 transposed convolution, an independent formulation."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 5, 5, generator=gen)
    kernel = torch.rand(4, 4, generator=gen)
    ours = upfirdn2d(x, kernel, up=2, pad=(2, 1))
    ref = F.conv_transpose2d(x, kernel.expand(3, 1, 4, 4), stride=2, padding=1, groups=3)
    assert torch.allclose(ours, ref, atol=1e-6)


def test_upsampling_and_downsampling_shapes_through_the_networks() -> None:
    torch.manual_seed(0)
    g, d = Generator(SMALL), Discriminator(SMALL)
    assert g.config.n_latent == 8 and len(g.fixed_noise()) == 7
    with torch.no_grad():
        out = g.input(2)
        w = torch.randn(2, SMALL.style_dim)
        out = g.conv1(out, w, g.fixed_noise()[0])
        sizes = []
        for i in range(0, len(g.convs), 2):
            out = g.convs[i](out, w, g.make_noise(2)[i + 1])
            sizes.append(out.shape[-1])
        assert sizes == [8, 16, 32]
        feats = d(torch.randn(2, 3, 32, 32), ftr_num=10)
    assert [f.shape[-1] for f in feats] == [16, 8, 4]


def test_minibatch_stddev_groups_like_official_and_accepts_odd_batches() -> None:
    x = torch.arange(8 * 2 * 2 * 2, dtype=torch.float32).view(8, 2, 2, 2)
    out = minibatch_stddev(x)
    grouped = x.view(4, 2, 2, 2, 2)
    expected = grouped.var(dim=0, unbiased=False).add(1e-8).sqrt().mean(dim=(1, 2, 3))
    assert torch.allclose(out[:, 2, 0, 0], expected.repeat(4))
    assert minibatch_stddev(torch.randn(3, 2, 4, 4)).shape == (3, 3, 4, 4)


def test_config_round_trip_and_validation() -> None:
    table = {**SMALL.to_dict(), "view_mean": [0.0] * 6}
    assert StyleGAN2Config.from_dict(table) == SMALL
    assert [SMALL.channels(r) for r in (4, 8, 16, 32)] == [32, 32, 32, 16]
    with pytest.raises(ValueError, match="power of two"):
        StyleGAN2Config(size=48)


def test_runs_on_gradients_through_discriminator_inputs() -> None:
    """R1 needs a double backward through the discriminator; the plain ops must support it."""
    torch.manual_seed(0)
    d = Discriminator(SMALL)
    x = torch.randn(4, 3, 32, 32, requires_grad=True)
    (grad,) = torch.autograd.grad(d(x).sum(), x, create_graph=True)
    grad.square().sum().backward()
    first_weight = d.convs[1].conv1[0].weight.grad
    assert first_weight is not None and torch.isfinite(first_weight).all() and first_weight.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(OFFICIAL_CONFIGS))
def test_infer_config_recovers_official_tables(name: str) -> None:
    _, _, keys = LISTING[("g_ema", OFFICIAL_CONFIGS[name].size, OFFICIAL_CONFIGS[name].channel_multiplier)]
    state = {k: torch.empty(shape) for k, shape in keys.items()}
    assert infer_config(state) == OFFICIAL_CONFIGS[name]


def test_infer_config_recovers_narrow_demo_tables() -> None:
    demo = StyleGAN2Config(
        size=64, style_dim=256, n_mlp=4, channel_multiplier=1, channel_base=2048, channel_max=64
    )
    inferred = infer_config(Generator(demo).state_dict())
    assert [inferred.channels(2**i) for i in range(2, 7)] == [demo.channels(2**i) for i in range(2, 7)]
    assert (inferred.size, inferred.style_dim, inferred.n_mlp) == (64, 256, 4)


def test_flat_checkpoint_round_trip_builds_frozen_networks() -> None:
    torch.manual_seed(0)
    g, d = Generator(SMALL), Discriminator(SMALL)
    flat = flatten_checkpoint({"g_ema": g.state_dict(), "d": d.state_dict(), "g": {}, "args": None})
    assert all(k.startswith(("g_ema.", "d.")) for k in flat)
    g2, d2 = build_gan(SMALL, flat, "cpu")
    z = torch.randn(2, SMALL.style_dim)
    with torch.no_grad():
        assert torch.equal(g2(z), g.eval()(z))
    assert not any(p.requires_grad for p in [*g2.parameters(), *d2.parameters()])
    with pytest.raises(KeyError, match="'d'"):
        flatten_checkpoint({"g_ema": g.state_dict()})
    broken = {k: v for k, v in flat.items() if k != "d.final_linear.1.bias"}
    with pytest.raises(RuntimeError, match="final_linear"):
        build_gan(SMALL, broken, "cpu")
