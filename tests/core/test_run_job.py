"""``run_job`` end to end with a real method and tiny real weights (in-process, CPU)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from backend import weights as weights_module
from backend.jobs import ModelCache, describe_error, log_traceback, run_job
from backend.methods import options_class
from backend.methods.base import JobCancelled
from backend.options import preset_values
from backend.protocol import JobRequest, UserError
from backend.weights import Registry
from tests.core.tiny_models import TINY_MODELS, object_photo, tiny_gan2shape, tiny_meshinversion

pytestmark = pytest.mark.slow


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Registry, str, dict[str, Any], Path]:
    weights_id, overrides = tiny_gan2shape(tmp_path / "weights")
    registry = Registry(tmp_path / "weights", shipped_dir=tmp_path / "none")
    return registry, weights_id, overrides, object_photo(tmp_path / "photo.png")


def request(image: Path, out: Path, overrides: dict[str, Any], **kw: Any) -> JobRequest:
    kw.setdefault("method", "gan2shape")
    return JobRequest(image=str(image), output_dir=str(out), overrides=overrides, **kw)


@pytest.mark.parametrize("method", sorted(TINY_MODELS))
def test_job_writes_result_and_is_deterministic(tmp_path: Path, method: str) -> None:
    weights_id, overrides = TINY_MODELS[method](tmp_path / "weights")
    registry = Registry(tmp_path / "weights", shipped_dir=tmp_path / "none")
    photo = object_photo(tmp_path / "photo.png")
    events: list[dict[str, Any]] = []
    cache = ModelCache()

    def job(out: str, seed: int, emit: Any = lambda e: None) -> None:
        req = request(photo, tmp_path / out, overrides, seed=seed, method=method)
        run_job(req, emit, registry=registry, cache=cache)

    job("a", 5, events.append)
    written = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert written == ["mask.png", "mesh.glb", "mesh.npz", "preview.png", "result.json", "texture.png"]
    doc = json.loads((tmp_path / "a" / "result.json").read_text())
    assert doc["input"]["mask"] == "auto" and doc["input"]["mask_resolved"] == "alpha"
    assert (np.asarray(Image.open(tmp_path / "a" / "mask.png")) == 255).sum() == 32 * 40  # the alpha box
    entry = registry.find(weights_id)
    assert doc["weights"]["id"] == weights_id and doc["weights"]["sha256"] == entry.sha256
    assert (doc["seed"], doc["preset"], doc["device"], doc["method"]) == (5, "fast", "cpu", method)
    presets = preset_values(options_class(method))["fast"]
    assert doc["options"] == json.loads(json.dumps({**presets, **overrides}))
    assert doc["camera"]["image_size"] == [80, 64]
    assert set(doc["timings"]) >= {"load_image", "load_model", "run"}
    stages = [e["stage"] for e in events if e["type"] == "progress"]
    assert len(set(stages)) >= 3 and stages[-1] == "export"
    assert all({"step", "total", "eta", "loss", "job"} <= set(e) for e in events)

    job("b", 5)
    job("c", 6)
    with np.load(tmp_path / "a" / "mesh.npz") as a, np.load(tmp_path / "b" / "mesh.npz") as b:
        np.testing.assert_array_equal(a["vertices"], b["vertices"])
        np.testing.assert_array_equal(a["uvs"], b["uvs"])

    def texture(out: str) -> np.ndarray:
        return np.asarray(Image.open(tmp_path / out / "texture.png"))

    np.testing.assert_array_equal(texture("a"), texture("b"))
    with np.load(tmp_path / "a" / "mesh.npz") as a, np.load(tmp_path / "c" / "mesh.npz") as c:
        other_shape = a["vertices"].shape != c["vertices"].shape
        assert other_shape or not np.array_equal(a["vertices"], c["vertices"])  # another seed, another result
    second = json.loads((tmp_path / "b" / "result.json").read_text())
    assert second["timings"]["load_model"] < doc["timings"]["load_model"]  # cached model


def test_model_cache_reuses_and_evicts(setup) -> None:
    registry, weights_id, _, _ = setup
    entry = registry.find(weights_id)
    cache = ModelCache(capacity=1)
    model = cache.get(registry, entry, torch.device("cpu"))
    assert cache.get(registry, entry, torch.device("cpu")) is model
    other_id, _ = tiny_gan2shape(registry.user_dir, "tiny-g2s-2")
    cache.get(registry, registry.find(other_id), torch.device("cpu"))
    assert cache.get(registry, entry, torch.device("cpu")) is not model


def test_cancel_before_model_run_leaves_nothing(setup, tmp_path: Path) -> None:
    registry, _, overrides, photo = setup
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(JobCancelled):
        run_job(request(photo, tmp_path / "out", overrides), lambda e: None, cancel, registry=registry)
    assert not (tmp_path / "out").exists()


def test_cancel_between_steps(setup, tmp_path: Path) -> None:
    registry, _, overrides, photo = setup
    cancel = threading.Event()
    seen: list[int] = []

    def emit(event: dict[str, Any]) -> None:
        seen.append(event["step"])
        if event["stage"] == "invert" and event["step"] >= 1:
            cancel.set()

    with pytest.raises(JobCancelled):
        run_job(
            request(photo, tmp_path / "out", {**overrides, "invert_steps": 50}),
            emit,
            cancel,
            registry=registry,
        )
    assert max(seen) < 50 and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"overrides": {"invert_step": 3}}, "bad_option"),
        ({"overrides": {"invert_steps": "lots"}}, "bad_option"),
        ({"weights": "nope"}, "unknown_weights"),
        ({"preset": "paper", "device": "cuda"}, "no_cuda"),
        ({"mask": "grabcut", "box": [0, 0, 1, 1]}, "bad_box"),
    ],
)
def test_user_errors(setup, tmp_path: Path, change: dict[str, Any], code: str) -> None:
    registry, _, overrides, photo = setup
    if code == "no_cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    kwargs = {"overrides": overrides, **change}
    with pytest.raises(UserError) as err:
        run_job(request(photo, tmp_path / "out", **kwargs), lambda e: None, registry=registry)
    assert err.value.code == code
    assert not (tmp_path / "out").exists()


def test_existing_output_refused_before_running(setup, tmp_path: Path) -> None:
    registry, _, overrides, photo = setup
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    events: list[dict[str, Any]] = []
    with pytest.raises(UserError) as err:
        run_job(request(photo, tmp_path / "out", overrides), events.append, registry=registry)
    assert err.value.code == "output_exists" and events == []  # refused before any optimisation


def test_wrong_shapes_name_the_tensor(setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry, weights_id, overrides, photo = setup
    entry = registry.find(weights_id)
    tensors = load_file(entry.path)
    key = "g_ema.style.1.weight"
    tensors[key] = torch.zeros(16, 32)
    save_file(tensors, entry.path)
    monkeypatch.setattr(weights_module, "_VERIFIED", {})
    entry_dict = entry.to_dict()
    entry_dict.update(sha256=weights_module.sha256_file(entry.path), size=entry.path.stat().st_size)
    (registry.user_dir / "manifest.toml").unlink()
    weights_module.write_manifest(
        registry.user_dir, [weights_module.WeightsEntry(**entry_dict, root=entry.root)]
    )
    with pytest.raises(UserError) as err:
        run_job(request(photo, tmp_path / "out", overrides), lambda e: None, registry=registry)
    assert err.value.code == "architecture_mismatch" and "style.1.weight" in err.value.message


def test_bad_config_is_a_weights_error(tmp_path: Path) -> None:
    weights_id, overrides = tiny_meshinversion(tmp_path / "weights")
    manifest = tmp_path / "weights" / "manifest.toml"
    manifest.write_text(manifest.read_text().replace("width = 0.03125", "width = -1.0"))
    registry = Registry(tmp_path / "weights", shipped_dir=tmp_path / "none")
    photo = object_photo(tmp_path / "photo.png")
    with pytest.raises(UserError) as err:
        run_job(request(photo, tmp_path / "out", overrides, method="meshinversion"), print, registry=registry)
    assert err.value.code == "bad_config" and weights_id in err.value.message


def test_internal_errors_log_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    try:
        {}["missing"]
    except KeyError as exc:
        log_traceback(exc)
        code, message, _ = describe_error(exc)
    assert code == "internal" and message == "KeyError: 'missing'"
    assert "Traceback" in capsys.readouterr().err
    log_traceback(UserError("bad_option", "x"))
    assert capsys.readouterr().err == ""  # user errors need no traceback
