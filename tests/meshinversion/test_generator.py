"""The generator matches the official ConvMesh layout key for key, and its outputs keep the
symmetry and pole structure the template relies on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from backend.methods.meshinversion.generator import Generator, GeneratorConfig, symmetrize_map

KEYS_FILE = Path(__file__).with_name("convmesh_cub_generator_keys.txt")


def official_cub_entries() -> list[tuple[str, list[int], str]]:
    """(key, shape, dtype) of the released CUB class-conditional generator, in state-dict order."""
    entries = []
    for line in KEYS_FILE.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, dtype = line.split("\t")
        dims = [int(d) for d in shape.strip("[]").split(",") if d.strip()]
        entries.append((key, dims, dtype))
    return entries


@pytest.fixture(scope="module")
def cub_generator() -> Generator:
    return Generator(GeneratorConfig(n_classes=200, texture_resolution=512)).eval()


def test_official_cub_layout_key_for_key(cub_generator: Generator) -> None:
    expected = official_cub_entries()
    assert len(expected) == 179
    state = cub_generator.state_dict()
    got = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in state.items()]
    assert got == expected
    assert sum(p.numel() for p in cub_generator.parameters()) == 13_062_534
    assert sum(b.numel() for b in cub_generator.buffers()) == 47_376


def test_strict_load_of_official_keys(cub_generator: Generator) -> None:
    g = torch.Generator().manual_seed(0)
    official = {
        key: torch.randint(0, 5, shape, generator=g) if dtype == "int64" else torch.randn(shape, generator=g)
        for key, shape, dtype in official_cub_entries()
    }
    cub_generator.load_state_dict(official, strict=True)
    assert torch.equal(cub_generator.state_dict()["blk4.conv2.weight_v"], official["blk4.conv2.weight_v"])
    official.pop("conv_mesh.bias")
    with pytest.raises(RuntimeError, match=r"conv_mesh\.bias"):
        cub_generator.load_state_dict(official, strict=True)


def test_unconditional_variant_differs_only_in_embedding_widths(cub_generator: Generator) -> None:
    cond = {k: list(v.shape) for k, v in cub_generator.state_dict().items()}
    uncond = {k: list(v.shape) for k, v in Generator(GeneratorConfig(n_classes=0)).state_dict().items()}
    assert set(cond) - set(uncond) == {"emb_class.weight"}
    assert set(uncond) <= set(cond)
    changed = {k for k in uncond if uncond[k] != cond[k]}
    assert changed == {"fc.weight"} | {k for k in uncond if k.endswith(("fc_gamma.weight", "fc_beta.weight"))}
    assert uncond["fc.weight"] == [16384, 64]
    assert uncond["blk1.norm1.fc_gamma.weight"] == [512, 64]


@pytest.mark.parametrize(
    ("resolution", "present", "absent"),
    [
        (256, set(), {"blk3b", "blk3c"}),
        (1024, {"blk3b", "blk3c"}, set()),
    ],
)
def test_texture_resolution_selects_blocks(resolution: int, present: set[str], absent: set[str]) -> None:
    config = GeneratorConfig(n_classes=0, texture_resolution=resolution, width=1 / 16)
    modules = {name.split(".")[0] for name, _ in Generator(config).named_children()}
    assert present <= modules and not absent & modules
    assert config.channels == (32, 16, 8, 4)


@pytest.mark.parametrize("symmetric", [True, False])
def test_small_generator_outputs(symmetric: bool) -> None:
    torch.manual_seed(0)
    config = GeneratorConfig(n_classes=3, texture_resolution=256, width=1 / 16, symmetric=symmetric)
    g = Generator(config)
    for p in g.conv_mesh.parameters():  # the zero init would hide the mesh branch
        torch.nn.init.normal_(p, std=0.1)
    g.eval()
    assert g.state_dict()["fc.weight"].shape[0] == 32 * 8 * (4 if symmetric else 8)
    with torch.no_grad():
        tex, disp = g(torch.randn(2, 64), torch.tensor([0, 2]))
    assert tex.shape == (2, 3, 256, 256) and disp.shape == (2, 3, 32, 32)
    assert tex.dtype == disp.dtype == torch.float32
    assert tex.abs().max() <= 1
    # Every column of the first and last rows is the same pole vertex.
    assert torch.allclose(disp[:, :, 0], disp[:, :, 0, :1].expand(-1, -1, 32))
    assert torch.allclose(disp[:, :, -1], disp[:, :, -1, :1].expand(-1, -1, 32))
    # Mirror x -> -x is u -> 0.5 - u: column c <-> column (N/2 - 1 - c) mod N.
    mirror = (torch.arange(32).flip(0) + 16 + 32) % 32
    mirrored = disp[..., mirror]
    assert torch.equal(disp, mirrored) == symmetric


def test_symmetrize_map_places_half_in_the_centre() -> None:
    half = torch.arange(4.0).view(1, 1, 1, 4)
    assert symmetrize_map(half).flatten().tolist() == [1, 0, 0, 1, 2, 3, 3, 2]


def test_conditional_generator_needs_labels() -> None:
    g = Generator(GeneratorConfig(n_classes=2, texture_resolution=256, width=1 / 16)).eval()
    with pytest.raises(ValueError, match="class labels"):
        g(torch.zeros(1, 64))


def test_config_rejects_unknown_and_invalid_values() -> None:
    with pytest.raises(ValueError, match="unknown"):
        GeneratorConfig.from_dict({"latent_dim": 64, "texture_res": 512})
    with pytest.raises(ValueError, match="texture_resolution"):
        GeneratorConfig(texture_resolution=300)
    config = GeneratorConfig(n_classes=5, width=0.25)
    assert GeneratorConfig.from_dict(config.to_dict()) == config


def test_displacement_only_path_matches_full_forward() -> None:
    torch.manual_seed(3)
    g = Generator(GeneratorConfig(n_classes=0, texture_resolution=256, width=1 / 16))
    torch.nn.init.normal_(g.conv_mesh.weight, std=0.1)
    g.eval()
    z = torch.randn(3, 64)
    with torch.no_grad():
        assert torch.equal(g.displacement(z), g(z)[1])
