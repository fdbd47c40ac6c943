"""Importing official GAN2Shape files: StyleGAN2 {g_ema, d}, *_pretrain.pth nets, view/light priors,
VGG16 and LPIPS heads; strict validation naming the first bad tensor; registry integration."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from backend.methods.gan2shape import METHOD
from backend.methods.gan2shape.auxiliary import find_auxiliary_nets
from backend.methods.gan2shape.config import FALLBACKS, resolve
from backend.methods.gan2shape.convert import CATEGORY_ALIASES
from backend.methods.gan2shape.framing import measure_margin, object_margin
from backend.methods.gan2shape.inversion import gan_view
from backend.methods.gan2shape.networks import NET_NAMES, ShapeNets
from backend.methods.gan2shape.options import Options
from backend.methods.gan2shape.perceptual import TAP_WIDTHS
from backend.methods.gan2shape.stylegan2 import OFFICIAL_CONFIGS, Discriminator, Generator
from backend.models import auxiliary_weights, default_entry, import_official, load_model
from backend.protocol import UserError
from backend.weights import Registry, WeightsEntry
from tests.gan2shape.helpers import NO_AUXILIARY

convert_official = METHOD.convert_official
"""The ``Method`` interface the import command uses."""


def entry_for(config: dict, category: str = "face") -> WeightsEntry:
    return WeightsEntry(id="x", method="gan2shape", category=category, file="x", sha256="", size=0, source="",
                        licence="", config=config)


@pytest.fixture(scope="module")
def celeba_checkpoint() -> dict:
    torch.manual_seed(0)
    config = OFFICIAL_CONFIGS["celeba"]
    return {"g_ema": Generator(config).state_dict(), "d": Discriminator(config).state_dict(), "args": None}


def test_official_stylegan2_checkpoint_converts_and_loads(celeba_checkpoint):
    state, config = convert_official(celeba_checkpoint, "face")
    assert config["kind"] == "stylegan2" and config["size"] == 128 and config["channel_multiplier"] == 1
    assert config["image_size"] == 128
    assert all(k.startswith(("g_ema.", "d.")) for k in state)
    assert len(state) == len(celeba_checkpoint["g_ema"]) + len(celeba_checkpoint["d"])
    model = METHOD.load(entry_for(config), state, "cpu", NO_AUXILIARY)
    assert model.image_size == 128 and METHOD.is_model_entry(entry_for(config))
    z = torch.randn(1, 512)
    with torch.no_grad():
        torch.testing.assert_close(model.generator(z), _reference_image(celeba_checkpoint, z))


def _reference_image(raw: dict, z: torch.Tensor) -> torch.Tensor:
    g = Generator(OFFICIAL_CONFIGS["celeba"])
    g.load_state_dict(raw["g_ema"])
    with torch.no_grad():
        return g(z)


@pytest.mark.parametrize(
    ("category", "size", "multiplier", "nets"),
    [("face", 128, 1, 128), ("cat", 256, 1, 128), ("church", 256, 2, 128), ("car", 512, 2, 128),
     ("synface", 128, 1, 64)],
)
def test_every_official_configuration_converts(category, size, multiplier, nets):
    """Full official shapes (built on the meta device: shapes without memory)."""
    config = OFFICIAL_CONFIGS[CATEGORY_ALIASES[category]]
    with torch.device("meta"):
        raw = {"g_ema": Generator(config).state_dict(), "d": Discriminator(config).state_dict()}
    state, table = convert_official(raw, category)
    assert (table["size"], table["channel_multiplier"], table["image_size"]) == (size, multiplier, nets)
    assert len(state) == len(raw["g_ema"]) + len(raw["d"])
    assert state["d.final_conv.0.weight"].shape == (512, 513, 3, 3)


def test_mismatching_checkpoints_name_the_first_bad_tensor(celeba_checkpoint):
    bad = {"g_ema": dict(celeba_checkpoint["g_ema"]), "d": celeba_checkpoint["d"]}
    bad["g_ema"]["style.3.weight"] = torch.zeros(512, 256)
    with pytest.raises(ValueError, match=r"style\.3\.weight"):
        convert_official(bad, "face")
    no_head = {k: v for k, v in celeba_checkpoint["d"].items() if "final_linear" not in k}
    with pytest.raises(KeyError, match="final_linear"):
        convert_official({"g_ema": celeba_checkpoint["g_ema"], "d": no_head}, "face")
    with pytest.raises(KeyError, match="'d'"):
        convert_official({"g_ema": celeba_checkpoint["g_ema"]}, "face")
    with pytest.raises(ValueError, match="category"):
        convert_official(celeba_checkpoint, "horse")
    # A 128 px checkpoint declared as the 512 px car: the first mismatch is named.
    with pytest.raises((KeyError, ValueError), match="g_ema"):
        convert_official(celeba_checkpoint, "car")


def test_pretrain_nets_convert_at_their_size_and_are_auxiliary():
    torch.manual_seed(0)
    nets = ShapeNets(64)
    raw = {name: getattr(nets, name).state_dict() for name in NET_NAMES}
    raw["iteration"] = 4000
    state, config = convert_official(raw, "synface")
    assert config == {"kind": "pretrain", "image_size": 64, "latent_dim": 512, "nets": sorted(NET_NAMES)}
    assert set(state) == {f"nets.{n}.{k}" for n in NET_NAMES for k in raw[n]}
    entry = entry_for(config, "synface")
    assert not METHOD.is_model_entry(entry)
    aux = METHOD.load(entry, state, "cpu", NO_AUXILIARY)
    with pytest.raises(ValueError, match="not a GAN"):
        aux.run(None, {}, 0, lambda *a, **k: None)
    raw["netV"] = {**raw["netV"], "network.10.weight": torch.zeros(7, 512, 1, 1)}
    with pytest.raises(ValueError, match=r"network\.10\.weight"):
        convert_official(raw, "synface")


def test_priors_vgg16_and_lpips_convert():
    view, config = convert_official({"mean": torch.zeros(6), "cov": torch.eye(6)}, "car")
    assert config == {"kind": "view_mvn"} and view["cov"].shape == (6, 6)
    _, config = convert_official({"mean": torch.zeros(4), "cov": torch.eye(4)}, "car")
    assert config == {"kind": "light_mvn"}
    with pytest.raises(ValueError, match="mean"):
        convert_official({"mean": torch.zeros(5), "cov": torch.eye(5)}, "car")
    heads = {f"lin{i}.model.1.weight": torch.rand(1, w, 1, 1) for i, w in enumerate(TAP_WIDTHS)}
    state, config = convert_official(heads, "lpips")
    assert config == {"kind": "lpips"} and set(state) == set(heads)
    with pytest.raises(KeyError, match="lin4"):
        convert_official({k: v for k, v in heads.items() if "lin4" not in k}, "lpips")
    with pytest.raises(ValueError, match="features"):
        convert_official({"classifier.0.weight": torch.zeros(2)}, "vgg16")


def test_registry_import_then_the_gan_finds_its_extras(tmp_path: Path, tiny_entry):
    gan, _ = tiny_entry
    registry = Registry(user_dir=gan.root, shipped_dir=tmp_path / "no-shipped-weights")
    checkpoint = tmp_path / "view_mvn.pth"
    cov = torch.diag(torch.tensor([0.01, 0.09, 0.01, 0.01, 0.01, 0.0001]))
    torch.save({"mean": torch.zeros(6), "cov": cov}, checkpoint)
    imported = import_official(registry, checkpoint, "gan2shape", "car", "car-view")
    assert imported.config == {"kind": "view_mvn"}
    assert default_entry(registry, "gan2shape").id == gan.id
    extras = find_auxiliary_nets(gan, 64, auxiliary_weights(registry, "gan2shape"))
    assert extras.has("view_mvn") and not extras.has("vgg16")
    torch.testing.assert_close(extras.state("view_mvn")["cov"], cov)
    wrong = tmp_path / "wrong.pth"
    torch.save({"netD": {"network.0.weight": torch.zeros(3)}}, wrong)
    with pytest.raises(UserError, match="network") as err:
        import_official(registry, wrong, "gan2shape", "car")
    assert err.value.code == "not_a_checkpoint"


def test_object_margin_is_crop_to_objects_margin() -> None:
    mask = np.zeros((200, 200), bool)
    mask[80:130, 50:150] = True  # a 100 px wide object: the 200 px frame leaves 50 px per side
    assert object_margin(mask) == pytest.approx(0.5)
    assert object_margin(np.zeros_like(mask)) is None and object_margin(~np.zeros_like(mask)) is None


def test_a_gans_framing_becomes_its_entrys_crop_margin(tmp_path: Path) -> None:
    """The shipped demo GAN's samples frame cars with some margin; an entry that records a margin
    has its crops made with it unless the user gives one."""
    store = Registry()
    demo = load_model(store, default_entry(store, "gan2shape"), "cpu")
    margin = measure_margin(demo.generator)
    assert margin is not None and 0.05 < margin < 0.5
    framed = replace(demo.entry, config={**demo.entry.config, "crop_margin": margin})
    model = METHOD.load(framed, store.load_state_dict(demo.entry, "cpu"), "cpu", NO_AUXILIARY)
    extras = find_auxiliary_nets(framed, model.image_size, NO_AUXILIARY)
    assert model.resolve_options(Options(), extras).crop_margin == margin
    assert model.resolve_options(Options(crop_margin=0.0), extras).crop_margin == 0.0
    assert demo.resolve_options(Options(), extras).crop_margin == FALLBACKS["crop_margin"]


def test_cat_nets_see_the_centre_of_the_gans_frame() -> None:
    """Official cat runs cut the GAN's 256 px images to their centre 170 px (``crop: 170``) before
    resizing them for the nets; other categories keep the whole frame."""
    assert resolve("cat", Options()).gan_crop == pytest.approx(170 / 256)
    assert resolve("car", Options()).gan_crop == resolve("face", Options()).gan_crop == 1.0
    image = torch.arange(256 * 256, dtype=torch.float32).view(1, 1, 256, 256)
    torch.testing.assert_close(gan_view(image, 170, 170 / 256), image[..., 43:213, 43:213])
    assert gan_view(image, 128, 170 / 256).shape[-1] == 128
