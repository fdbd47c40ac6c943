"""The ``mask`` job (issue 22): only the object mask, the very one a reconstruction would use, written
all or nothing as ``mask.png`` and ``result.json``."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from backend.cli import main
from backend.jobs import run_job, run_mask
from backend.methods.base import JobCancelled
from backend.protocol import JobRequest, MaskRequest, ResultMessage, UserError
from backend.result_format import MASK_FILE, MASK_KIND, RESULT_JSON
from backend.weights import Registry
from tests.core.backend_process import BackendProcess
from tests.core.tiny_models import object_photo, tiny_gan2shape

CAR = Path(__file__).resolve().parents[2] / "examples" / "car_01.png"


def read_mask(folder: Path) -> np.ndarray:
    with Image.open(folder / MASK_FILE) as image:
        return np.array(image)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("photo", "mask", "box", "resolved"),
    [
        ("object", "auto", None, "alpha"),
        ("car", "auto", None, "salient"),
        ("car", "grabcut", [40, 90, 350, 300], "grabcut"),
    ],
)
def test_mask_is_the_one_a_reconstruction_uses(
    tmp_path: Path, photo: str, mask: str, box: list[int] | None, resolved: str
) -> None:
    image = str(object_photo(tmp_path / "photo.png") if photo == "object" else CAR)
    weights_id, overrides = tiny_gan2shape(tmp_path / "weights")
    registry = Registry(tmp_path / "weights", shipped_dir=tmp_path / "none")
    job = JobRequest(image=image, output_dir=str(tmp_path / "rec"), method="gan2shape", weights=weights_id,
                     overrides=overrides, mask=mask, box=box, preview=False)  # fmt: skip
    run_job(job, lambda event: None, registry=registry)
    events: list[dict[str, Any]] = []
    outcome = run_mask(
        MaskRequest(image=image, output_dir=str(tmp_path / "m"), mask=mask, box=box), events.append
    )

    expected, got = read_mask(tmp_path / "rec"), read_mask(tmp_path / "m")
    assert got.dtype == np.uint8 and got.shape == expected.shape and np.array_equal(got, expected)
    assert set(np.unique(got)) <= {0, 255}
    document = json.loads((tmp_path / "m" / RESULT_JSON).read_text())
    reconstruction = json.loads((tmp_path / "rec" / RESULT_JSON).read_text())
    assert document["kind"] == MASK_KIND and "method" not in document
    assert document["input"] == reconstruction["input"] and document["input"]["mask_resolved"] == resolved
    assert document["coverage"] == pytest.approx(np.count_nonzero(got) / got.size, abs=1e-4)
    assert document["image_size"] == [got.shape[1], got.shape[0]] and document["files"] == [
        MASK_FILE,
        RESULT_JSON,
    ]
    assert (
        sorted(p.name for p in (tmp_path / "m").iterdir())
        == sorted(outcome.files)
        == [MASK_FILE, RESULT_JSON]
    )
    assert outcome.summary["mask_source"] == resolved and outcome.summary["kind"] == "mask"
    assert {event["stage"] for event in events} == {"mask"}


def test_file_mask_round_trips_and_overwrites_an_earlier_preview(tmp_path: Path) -> None:
    photo = object_photo(tmp_path / "photo.png")
    first = run_mask(MaskRequest(image=str(photo), output_dir=str(tmp_path / "m")), lambda event: None)
    painted = read_mask(tmp_path / "m").copy()
    painted[20:30, 25:35] = 0  # the artist paints part of the object out
    Image.fromarray(painted).save(tmp_path / "painted.png")
    again = MaskRequest(image=str(photo), output_dir=str(tmp_path / "m"), mask="file",
                        mask_path=str(tmp_path / "painted.png"), overwrite=True)  # fmt: skip
    second = run_mask(again, lambda event: None)
    assert np.array_equal(read_mask(tmp_path / "m"), painted)
    assert second.summary["mask_source"] == "file" and second.summary["coverage"] < first.summary["coverage"]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"image": "missing.png"}, "not_found"),
        ({"mask": "alpha", "image": str(CAR)}, "no_alpha"),
        ({"mask": "file", "mask_path": "missing.png"}, "not_found"),
        ({"mask": "file"}, "bad_request"),
        ({"mask": "magic"}, "bad_request"),
        ({"box": [5, 5, 1, 1]}, "bad_request"),
        ({"overwrite": True, "output_dir": "mine"}, "output_exists"),
        ({"output_dir": "mine"}, "output_exists"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(
    tmp_path: Path, change: dict[str, Any], code: str
) -> None:
    photo = object_photo(tmp_path / "photo.png")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the artist's own")
    fields = {"image": str(photo), "output_dir": "out", **change}
    fields = {
        k: str(tmp_path / v) if k in ("image", "output_dir", "mask_path") else v for k, v in fields.items()
    }
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(UserError) as err:
        run_mask(MaskRequest(**fields), lambda event: None)
    assert err.value.code == code and err.value.hint and "\n" not in err.value.message
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_cancel_writes_nothing(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    request = MaskRequest(image=str(object_photo(tmp_path / "photo.png")), output_dir=str(tmp_path / "m"))
    with pytest.raises(JobCancelled):
        run_mask(request, lambda event: None, cancel)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = object_photo(tmp_path / "photo.png")
    assert main(["mask", str(photo), "-o", str(tmp_path / "m")]) == 0
    assert "alpha mask" in capsys.readouterr().out and (tmp_path / "m" / MASK_FILE).is_file()
    assert main(["mask", str(photo), "-o", str(tmp_path / "m")]) == 1
    assert "output_exists" in capsys.readouterr().err
    assert main(["mask", str(tmp_path / "nope.png"), "-o", str(tmp_path / "n")]) == 1
    assert not (tmp_path / "n").exists()


def test_server_queues_runs_and_cancels_mask_jobs(tmp_path: Path) -> None:
    """Through the real protocol server: a ``mask`` request is accepted, reports, and ends in a
    ``result`` with a ``MaskSummary``; a queued one can be cancelled; an unknown field is refused."""
    photo = str(object_photo(tmp_path / "photo.png"))
    backend = BackendProcess(tmp_path / "weights", tmp_path / "stderr.txt")
    try:
        backend.expect("hello")
        backend.send({"type": "mask", "id": "m1", "image": photo, "output_dir": str(tmp_path / "m1"), "x": 1})
        assert backend.expect("error", job="m1")["code"] == "bad_request"
        for job in ("m2", "m3"):
            backend.send(MaskRequest(image=photo, output_dir=str(tmp_path / job), id=job).to_message())
        backend.send({"type": "cancel", "job": "m3"})
        result = backend.expect("result", job="m2")
        assert ResultMessage.from_message(result).summary["mask_source"] == "alpha"
        assert result["files"] == {name: str(tmp_path / "m2" / name) for name in (MASK_FILE, RESULT_JSON)}
        if {
            "type": "cancelled",
            "job": "m3",
        } not in backend.seen:  # queued: cancelled at once, before m2 ends
            backend.expect("cancelled", job="m3")
        assert not (tmp_path / "m3").exists()
    finally:
        backend.close()
