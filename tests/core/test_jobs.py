"""Job-runner pieces that need no model: option resolution, the progress callback, error shapes."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from backend import jobs
from backend.devices import resolve_device
from backend.jobs import ProgressReporter, describe_error
from backend.methods.base import JobCancelled
from backend.options import resolve_options
from backend.protocol import UserError

PRESETS: dict[str, dict[str, Any]] = {
    "fast": {
        "steps": 10,
        "lr": 0.01,
        "symmetric": True,
        "loss": "l1",
        "size": [64, 64],
        "label": None,
        "stages": ((50, 0.1), (20, 0.05)),
        "pair": (3, "a"),
    },
    "paper": {"steps": 200, "lr": 0.001, "symmetric": True, "loss": "l1", "size": [256, 256]},
}


def test_presets_and_typed_overrides() -> None:
    assert resolve_options(PRESETS, "paper", {})["steps"] == 200
    options = resolve_options(
        PRESETS,
        "fast",
        {"steps": "25", "lr": "1e-3", "symmetric": "false", "loss": "l2", "size": "[32, 48]"},
    )
    assert {k: options[k] for k in ("steps", "lr", "symmetric", "loss", "size")} == {
        "steps": 25, "lr": 0.001, "symmetric": False, "loss": "l2", "size": [32, 48],
    }  # fmt: skip
    assert resolve_options(PRESETS, "fast", {"steps": 30.0, "lr": 1})["lr"] == 1.0
    assert resolve_options(PRESETS, "fast", {"label": "3"})["label"] == 3
    assert resolve_options(PRESETS, "fast", {"stages": "[[5, 1], [6, 2], [7, 3]]"})["stages"] == (
        (5, 1.0),
        (6, 2.0),
        (7, 3.0),
    )
    assert PRESETS["fast"]["steps"] == 10  # presets are never mutated


@pytest.mark.parametrize(
    "overrides",
    [
        {"stpes": 5},
        {"steps": "many"},
        {"steps": 2.5},
        {"steps": True},
        {"lr": "nan"},
        {"lr": float("inf")},
        {"symmetric": 1},
        {"loss": 3},
        {"steps": "inf"},
        {"stages": [[5, 1, 2]]},
        {"stages": [["x", 1]]},
        {"pair": [1, 2, 3]},
        {"pair": [1, 2]},
    ],
)
def test_bad_overrides(overrides: dict[str, Any]) -> None:
    with pytest.raises(UserError) as err:
        resolve_options(PRESETS, "fast", overrides)
    assert err.value.code == "bad_option" and err.value.hint


def test_unknown_preset() -> None:
    with pytest.raises(UserError, match="preset") as err:
        resolve_options(PRESETS, "medium", {})
    assert err.value.code == "bad_preset"


def test_progress_cancel_nan_eta_and_preview(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "PROGRESS_INTERVAL_S", 3600.0)  # throttle deterministically
    events: list[dict[str, Any]] = []
    cancel = threading.Event()
    monkeypatch.setattr(jobs.tempfile, "tempdir", str(tmp_path))
    progress = ProgressReporter("j", events.append, cancel, previews=True)
    preview = np.zeros((8, 8, 3), np.uint8)
    progress("fit", 0, 4, loss=3.0)
    assert list(tmp_path.iterdir()) == []  # no folder until there is a preview to put in it
    progress("fit", 1, 4, loss=2.0, preview=preview)
    progress("fit", 2, 4, loss=1.5)  # within the throttle interval: recorded, not sent
    progress("fit", 4, 4, loss=np.float32(1.0))
    assert [e["step"] for e in events] == [0, 1, 4] and events[0]["job"] == "j"
    assert events[-1]["eta"] == 0.0 and events[-1]["loss"] == 1.0
    assert "preview" not in events[0] and Image.open(events[1]["preview"]).size == (8, 8)
    assert progress.losses == {"fit": [3.0, 2.0, 1.5, 1.0]}
    progress.close()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError) as err:
        progress("fit", 5, 6, loss=float("nan"))
    assert err.value.code == "diverged"
    with pytest.raises(UserError) as err:
        progress("fit", 5, 6, loss=torch.tensor(float("inf")))
    assert err.value.code == "diverged"
    cancel.set()
    with pytest.raises(JobCancelled):
        progress("fit", 6, 6)


def test_describe_error_shapes() -> None:
    assert describe_error(UserError("empty_file", "x is empty", "re-export"))[0] == "empty_file"
    code, message, hint = describe_error(ValueError("boom\nsecond line"))
    assert code == "internal" and message == "ValueError: boom" and hint
    code, message, _ = describe_error(FloatingPointError("inversion diverged at step 3"))
    assert code == "diverged" and message == "inversion diverged at step 3"
    code, _, hint = describe_error(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate"))
    assert code == "out_of_memory" and "cpu" in hint


def test_cuda_request_without_cuda() -> None:
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
        return
    with pytest.raises(UserError) as err:
        resolve_device("cuda")
    assert err.value.code == "no_cuda" and "cpu" in err.value.hint
    assert resolve_device("auto").type == "cpu"
