"""File permissions enforced for real (an unprivileged backend process) and a full disk mid-write.

As root every file is readable and every folder writable, so these tests run the CLI as the
``nobody`` user; the full disk is simulated by the write itself failing with ``ENOSPC``.
"""

from __future__ import annotations

import errno
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend import jobs, results
from backend.jobs import ModelCache, run_job
from backend.protocol import JobRequest, UserError
from backend.weights import Registry
from tests.core.tiny_models import object_photo
from tests.reliability.conftest import TinyWeights, leftovers, make_tiny_weights, run_as_other_user

pytestmark = pytest.mark.slow  # subprocesses that import torch


@pytest.fixture
def world(shared_dir: Path) -> tuple[TinyWeights, Path, Path]:
    """Weights, a photo and a HOME the unprivileged user can read (HOME also writable)."""
    tiny = make_tiny_weights(shared_dir / "weights")
    photo = object_photo(shared_dir / "photo.png")
    home = shared_dir / "home"
    home.mkdir()
    home.chmod(0o777)
    for path in [*tiny.root.iterdir(), photo]:
        path.chmod(0o644)
    return tiny, photo, home


def _reconstruct(tiny: TinyWeights, image: Path, out: Path, home: Path) -> tuple[int, str, float]:
    sets = [f"--set={k}={json.dumps(v)}" for k, v in tiny.overrides["meshinversion"].items()]
    args = ["--weights-dir", str(tiny.root), "reconstruct", str(image), "-o", str(out), *sets]
    started = time.monotonic()
    done = run_as_other_user(args, home)
    return done.returncode, done.stderr, time.monotonic() - started


def test_unreadable_image_is_named(world: tuple[TinyWeights, Path, Path], shared_dir: Path) -> None:
    tiny, photo, home = world
    secret = shared_dir / "secret photo.png"
    shutil.copy(photo, secret)
    secret.chmod(0o000)
    code, stderr, _ = _reconstruct(tiny, secret, home / "out", home)
    assert code == 1 and "[not_readable]" in stderr and "secret photo.png" in stderr, stderr
    assert "hint: check the file's permissions" in stderr and "Traceback" not in stderr
    assert not (home / "out").exists()
    private = shared_dir / "private folder"
    private.mkdir()
    shutil.copy(photo, private / "photo.png")
    private.chmod(0o700)  # the file is readable, the folder cannot be entered
    code, stderr, _ = _reconstruct(tiny, private / "photo.png", home / "out", home)
    assert code == 1 and "[not_readable]" in stderr and "Traceback" not in stderr, stderr


def test_read_only_output_folder_fails_before_the_run(
    world: tuple[TinyWeights, Path, Path], shared_dir: Path
) -> None:
    tiny, photo, home = world
    locked = shared_dir / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    code, stderr, _ = _reconstruct(tiny, photo, locked / "out", home)
    assert code == 1 and "[not_writable]" in stderr and "hint:" in stderr, stderr
    assert "prepare" not in stderr  # refused before any work (no progress bar), not after the optimisation
    assert list(locked.iterdir()) == []


def test_full_disk_keeps_the_previous_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC while writing: a clear error, no debris, and an overwritten result is still the old one."""
    tiny = make_tiny_weights(tmp_path / "weights")
    registry = Registry(tiny.root, shipped_dir=tmp_path / "none")
    photo = object_photo(tmp_path / "photo.png")
    cache = ModelCache()

    def job(out: Path, **kw: Any) -> None:
        request = JobRequest(
            image=str(photo), output_dir=str(out), method="meshinversion", weights=tiny.meshinversion,
            overrides=tiny.overrides["meshinversion"], **kw,
        )  # fmt: skip
        run_job(request, lambda event: None, registry=registry, cache=cache)

    job(tmp_path / "result")
    before = {p.name: p.read_bytes() for p in (tmp_path / "result").iterdir()}

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results.np, "savez_compressed", disk_full)
    for out, overwrite in ((tmp_path / "fresh", False), (tmp_path / "result", True)):
        with pytest.raises(UserError) as err:
            job(out, overwrite=overwrite)
        assert err.value.code == "disk_full" and "free disk space" in err.value.hint
    assert not (tmp_path / "fresh").exists() and leftovers(tmp_path) == []
    assert {p.name: p.read_bytes() for p in (tmp_path / "result").iterdir()} == before
    with np.load(tmp_path / "result" / "mesh.npz") as mesh:
        assert mesh["faces"].shape[1] == 3  # still the complete earlier mesh


def test_full_temp_disk_only_turns_live_previews_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Live previews go to the temp disk; when it is full the job still finishes (was: the job died
    with an internal error at its first preview)."""
    tiny = make_tiny_weights(tmp_path / "weights")
    registry = Registry(tiny.root, shipped_dir=tmp_path / "none")
    photo = object_photo(tmp_path / "photo.png")

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    faults = [(jobs, "save_preview", disk_full), (tempfile, "tempdir", str(tmp_path / "gone" / "tmp"))]
    for target, name, fault in faults:  # a full temp disk; a temp folder that does not exist
        with monkeypatch.context() as patch:
            patch.setattr(target, name, fault)
            events: list[dict[str, Any]] = []
            request = JobRequest(
                image=str(photo), output_dir=str(tmp_path / name), method="gan2shape", weights=tiny.gan2shape,
                overrides=tiny.overrides["gan2shape"], preview=True,
            )  # fmt: skip
            run_job(request, events.append, registry=registry)
        assert (tmp_path / name / "mesh.npz").is_file()
        assert len(events) > 5 and not any("preview" in event for event in events)
