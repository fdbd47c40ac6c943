"""The MeshInversion demo GAN trainer: a tiny run that resumes exactly and exports loadable weights."""

from __future__ import annotations

import tomllib

import pytest
import torch
from safetensors.torch import load_file

from backend.methods.meshinversion.generator import Generator, GeneratorConfig
from backend.methods.meshinversion.template import sphere_template
from workbench.train.mesh_smoothness import face_neighbours, flat_loss
from workbench.train.meshinversion_gan import (
    CHECKPOINT,
    WEIGHTS_FILE,
    WEIGHTS_ID,
    TrainSettings,
    ema_alpha,
    main,
)


def test_face_neighbours_share_an_edge():
    faces = sphere_template(16).faces
    nb = face_neighbours(faces)
    for slot in range(3):
        shared = (faces[:, :, None] == faces[nb[:, slot]][:, None, :]).any(-1).sum(-1)
        assert (shared == 2).all()
        assert (nb[:, slot] != torch.arange(faces.shape[0])).all()


def test_flat_loss_prefers_smooth_meshes():
    template = sphere_template(16)
    faces, nb = template.faces, face_neighbours(template.faces)
    sphere = template.vertices[None]
    bumpy = sphere * (1 + 0.2 * torch.rand(1, sphere.shape[1], 1, generator=torch.Generator().manual_seed(0)))
    assert flat_loss(sphere, faces, nb) < flat_loss(bumpy, faces, nb)


def test_ema_schedule_follows_convmesh():
    s = TrainSettings()
    assert ema_alpha(s, 1) == pytest.approx(0.999**100)
    assert ema_alpha(s, 50) == pytest.approx(0.999**10)
    assert ema_alpha(s, 200) == 0.999


@pytest.mark.slow
def test_two_steps_resume_exactly_and_export_loads(tmp_path):
    cache = tmp_path / "cache.npz"
    tiny = ["--batch", "2", "--g-width", "0.0625", "--d-width", "0.0625"]
    common = ["--cache", str(cache), "--cars", "3", *tiny]
    main(["--out", str(tmp_path / "straight"), "--steps", "2", "--sample-every", "2", *common])
    main(["--out", str(tmp_path / "resumed"), "--steps", "1", *common])
    main(["--out", str(tmp_path / "resumed"), "--steps", "2", "--sample-every", "2", "--export-every", "1",
          "--weights-dir", str(tmp_path / "w"), "--copy-checkpoint", *common])
    a = torch.load(tmp_path / "straight" / CHECKPOINT, weights_only=True)
    b = torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)
    assert a["step"] == b["step"] == 2
    for part in ("g", "d", "g_ema"):
        for key, value in a[part].items():
            assert torch.equal(value, b[part][key]), (part, key)
    assert (tmp_path / "straight" / "samples_000002.png").stat().st_size > 1000
    assert len((tmp_path / "straight" / "log.jsonl").read_text().splitlines()) == 0  # log every 10 steps

    entry = tomllib.loads((tmp_path / "w" / "manifest.toml").read_text())["weights"][0]
    assert entry["id"] == WEIGHTS_ID and entry["file"] == WEIGHTS_FILE
    generator = Generator(GeneratorConfig.from_dict(entry["config"]))
    generator.load_state_dict(load_file(tmp_path / "w" / WEIGHTS_FILE), strict=True)
    assert torch.equal(generator.state_dict()["fc.weight"], b["g_ema"]["fc.weight"])
    assert (tmp_path / "w" / "training" / "meshinversion_demo_car.pt").stat().st_size < 15e6


def test_moment_loss_vanishes_on_the_data_itself():
    import numpy as np

    from workbench.data.map_cache import MapCache
    from workbench.train.meshinversion_gan import Trainer

    rng = np.random.default_rng(0)
    data = MapCache(np.arange(6), rng.integers(0, 255, (6, 3, 256, 128), dtype=np.uint8),
                    rng.normal(-0.4, 0.2, (6, 32, 16)).astype(np.float16))
    trainer = Trainer(TrainSettings(g_width=0.0625, d_width=0.0625), torch.device("cpu"))
    _, maps = data.full_batch(torch.arange(6), torch.device("cpu"))
    assert trainer.moment_loss(maps, data) < 1e-10
    assert trainer.moment_loss(torch.zeros_like(maps), data) > 0.01
