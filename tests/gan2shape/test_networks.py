"""The depth/albedo/view/light networks and the latent encoder match the official layout key for key."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from backend.methods.gan2shape.networks import NET_NAMES, ResBlockDown, ShapeNets, extra_blocks

KEYS_FILE = Path(__file__).parent / "data" / "gan2shape_nets_keys.txt"
HEADER = re.compile(r"^## (\w+) \(.*\), image size (\d+): (\d+) entries, (\d+) parameters")


def official_layout() -> dict[tuple[str, int], tuple[dict[str, list[int]], int]]:
    """(net, size) -> ({key: shape}, parameter count) as listed from the official classes."""
    out: dict[tuple[str, int], tuple[dict[str, list[int]], int]] = {}
    current: dict[str, list[int]] = {}
    for line in KEYS_FILE.read_text().splitlines():
        header = HEADER.match(line)
        if header:
            current = {}
            out[(header[1], int(header[2]))] = (current, int(header[4]))
        elif line and not line.startswith("#"):
            key, shape = line.split("\t")
            current[key] = [int(v) for v in shape.strip("[]").split(",")]
    return out


LAYOUT = official_layout()


def test_layout_file_covers_every_net_and_size():
    assert sorted(LAYOUT) == sorted((n, s) for n in NET_NAMES for s in (64, 128))


@pytest.mark.parametrize("size", [64, 128])
def test_keys_shapes_and_parameter_counts_match_official(size):
    nets = ShapeNets(size)
    for name in NET_NAMES:
        expected, n_params = LAYOUT[(name, size)]
        net = getattr(nets, name)
        got = {k: list(v.shape) for k, v in net.state_dict().items()}
        assert got == expected, name
        assert sum(p.numel() for p in net.parameters()) == n_params, name


@pytest.mark.parametrize("size", [64, 128])
def test_official_style_checkpoint_loads_strictly_and_changes_outputs(size):
    torch.manual_seed(0)
    source, target = ShapeNets(size), ShapeNets(size)
    checkpoint = {name: getattr(source, name).state_dict() for name in NET_NAMES}
    checkpoint["iteration"] = 5
    target.load_official(checkpoint)
    image = torch.rand(1, 3, size, size) * 2 - 1
    with torch.no_grad():
        for name in NET_NAMES:
            torch.testing.assert_close(getattr(target, name)(image), getattr(source, name)(image))
    broken = {"netD": {**checkpoint["netD"]}}
    broken["netD"].pop("network.0.weight")
    with pytest.raises(RuntimeError, match=r"network\.0\.weight"):
        target.load_official(broken)


@pytest.mark.parametrize("size", [64, 128])
def test_output_shapes_and_ranges(size):
    nets = ShapeNets(size, nf=16, gn_base=4, enc_nf=8).eval()
    image = torch.rand(2, 3, size, size) * 2 - 1
    with torch.no_grad():
        depth, albedo = nets.netD(image), nets.netA(image)
        view, light, latent = nets.netV(image), nets.netL(image), nets.netEnc(image)
    assert depth.shape == (2, 1, size, size) and albedo.shape == (2, 3, size, size)
    assert view.shape == (2, 6) and light.shape == (2, 4) and latent.shape == (2, 512)
    assert albedo.abs().max() <= 1 and view.abs().max() <= 1 and light.abs().max() <= 1
    assert not isinstance(nets.netD.network[-1], torch.nn.Tanh)  # depth head is linear
    assert isinstance(nets.netA.network[-1], torch.nn.Tanh)


def test_resblock_shortcut_sees_rectified_input():
    torch.manual_seed(1)
    block = ResBlockDown(4, 8)
    x = torch.randn(1, 4, 8, 8)
    rectified = x.clamp(min=0)
    expected = block.conv_sc(F.avg_pool2d(rectified, 2)) + block.conv2(F.relu(block.conv1(rectified)))
    torch.testing.assert_close(block(x), expected)


def test_invalid_size_is_refused():
    with pytest.raises(ValueError, match="power of two"):
        extra_blocks(96)
