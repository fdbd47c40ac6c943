"""Fixtures for the add-on tests: the real extension zip, built once, and bpy scenario runs.

bpy runs only in subprocesses (``bpy_scenarios.py``): it can be imported once per process and
may hang at interpreter exit, and it must not share a process with the rest of the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).with_name("bpy_scenarios.py")
PYTHON = sys.executable
"""The backend's Python (torch) in these tests: the one running pytest."""
BPY_PYTHON = os.environ.get("RFI_TEST_BPY_PYTHON", sys.executable)
"""The Python whose ``bpy`` runs the add-on; point it at another venv to test another Blender
version (e.g. bpy 4.5 LTS) against the same backend."""


class Tools:
    """What the add-on tests share, handed out as the ``tools`` fixture (test modules import nothing
    from here, so they work whatever import mode or package layout pytest uses)."""

    backend_python = PYTHON
    bpy_python = BPY_PYTHON

    @staticmethod
    def env(user_dir: Path) -> dict[str, str]:
        """A Blender user folder of its own, one torch thread, no inherited PYTHONPATH."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env.update(BLENDER_USER_RESOURCES=str(user_dir), OMP_NUM_THREADS="1")
        return env

    def scenario(
        self, name: str, args: dict[str, Any], user_dir: Path, timeout: float = 600
    ) -> dict[str, Any]:
        """Run one scenario in a fresh bpy process; its assertion errors fail the test with the log."""
        proc = subprocess.run(
            [self.bpy_python, str(SCENARIOS), name, json.dumps(args)],
            env=self.env(user_dir), capture_output=True, text=True, timeout=timeout, cwd=user_dir.parent,
        )  # fmt: skip
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, (
            f"scenario {name} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
        )
        return json.loads(lines[-1][len("RESULT ") :])

    @staticmethod
    def photo(path: Path, size: int = 160) -> Path:
        """A real RGBA photo-like image: a shaded, textured blob on transparent background."""
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        inside = ((xx - 0.5) / 0.38) ** 2 + ((yy - 0.55) / 0.25) ** 2 < 1.0
        rgb = np.stack([0.8 - 0.4 * yy, 0.2 + 0.5 * xx, 0.3 + 0.2 * np.sin(20 * xx)], -1)
        rgba = np.concatenate([rgb, inside[..., None].astype(np.float32)], -1)
        Image.fromarray((rgba * 255).astype(np.uint8), "RGBA").save(path)
        return path


@pytest.fixture(scope="session")
def tools() -> Tools:
    return Tools()


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``build.py package``: the zip users install, validated by Blender's own tool."""
    proc = subprocess.run(
        [PYTHON, str(ROOT / "build.py"), "package"], capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return next((ROOT / "dist").glob("reconstruct_from_image-*.zip"))


@dataclass(frozen=True)
class BackendCase:
    """Which method and weights the end-to-end tests run, with option overrides that keep them short."""

    method: str
    weights_dir: str
    overrides: str

    def settings(self, seed: int = 3) -> dict[str, Any]:
        return {"method": self.method, "overrides": self.overrides, "seed": seed}

    def scenario_args(self, extension_zip: Path, photo: Path, **extra: Any) -> dict[str, Any]:
        """What a scenario needs to install the add-on and reconstruct ``photo`` with this case."""
        return {"zip": str(extension_zip), "python": PYTHON, "weights_dir": self.weights_dir,
                "image": str(photo), "settings": self.settings(), **extra}  # fmt: skip

    def batch_args(self) -> list[str]:
        return ["--method", self.method, *(f"--set={item}" for item in self.overrides.split())]


MESHINVERSION_SHORT = (
    "render_size=64 z_candidates=4 rendered_candidates=2 azimuths=4 elevations=[0.0] camera_keep=1 "
    "camera_refine_steps=2 stages=[[10,0.1,0.01]] chamfer_points=256"
)
GAN2SHAPE_SHORT = (
    "num_stages=1 stage0=[6,6,6] batch=2 collect_iters=2 prior_iters=10 invert_steps=12 net_width=8"
)


def shipped_generator(method: str) -> bool:
    """Whether ``weights/manifest.toml`` ships a model of ``method`` the backend would pick by default."""
    entries = tomllib.loads((ROOT / "weights" / "manifest.toml").read_text()).get("weights", [])
    return any(entry["method"] == method and entry["config"].get("network") != "vgg19" for entry in entries)


@pytest.fixture(scope="session")
def backend_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BackendCase]:
    """Per method: the shipped demo weights when present, else a tiny randomly initialised model written
    as a real weights file into a user weights folder; with overrides that keep each job to seconds."""
    cases = {}
    for method, short, tiny in (
        ("meshinversion", MESHINVERSION_SHORT, tiny_meshinversion),
        ("gan2shape", GAN2SHAPE_SHORT, tiny_gan2shape),
    ):
        folder = "" if shipped_generator(method) else str(tiny(tmp_path_factory.mktemp(f"weights-{method}")))
        cases[method] = BackendCase(method, folder, short)
    return cases


@pytest.fixture(scope="session")
def backend_case(backend_cases: dict[str, BackendCase]) -> BackendCase:
    """The add-on's default method."""
    return backend_cases["meshinversion"]


def register_weights(folder: Path, weights_id: str, method: str, state: dict, config: dict) -> Path:
    from safetensors.torch import save_file

    from backend.weights import WeightsEntry, sha256_file, write_manifest

    path = folder / f"{weights_id}.safetensors"
    save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    entry = WeightsEntry(
        id=weights_id, method=method, category="car", file=path.name, sha256=sha256_file(path),
        size=path.stat().st_size, source="randomly initialised for tests", licence="GPL-3.0-or-later",
        config=config, root=folder, origin="user",
    )  # fmt: skip
    write_manifest(folder, [entry])
    return folder


def tiny_meshinversion(folder: Path) -> Path:
    import torch

    from backend.methods.meshinversion.generator import Generator, GeneratorConfig

    config = GeneratorConfig(width=0.0625, texture_resolution=256)
    torch.manual_seed(0)
    return register_weights(
        folder, "tiny-meshinversion", "meshinversion", Generator(config).state_dict(), asdict(config)
    )


def tiny_gan2shape(folder: Path) -> Path:
    import torch

    from backend.methods.gan2shape.stylegan2 import Discriminator, Generator, StyleGAN2Config

    config = StyleGAN2Config(
        size=64, style_dim=32, n_mlp=2, channel_multiplier=1, channel_base=256, channel_max=32
    )
    torch.manual_seed(0)
    state = {}
    for prefix, net in (("g_ema", Generator(config)), ("d", Discriminator(config))):
        state.update({f"{prefix}.{key}": value for key, value in net.state_dict().items()})
    return register_weights(
        folder,
        "tiny-gan2shape",
        "gan2shape",
        state,
        {**asdict(config), "kind": "stylegan2", "image_size": 64},
    )
