"""Output paths a user really has, through the real command line: a folder of the artist's own files
under ``--overwrite``, ``-o`` through a link, long names, and a kill at any moment of the write.

Issue 25: ``--overwrite`` deleted a folder holding the artist's own ``result.json`` and
``texture.png``; ``-o LINK`` replaced the link by a real folder and left ``.LINK.old-*``; a
245-character name failed with "File name too long".
"""

from __future__ import annotations

import builtins
import io
import itertools
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend.cli import main
from backend.protocol import is_staging_name
from backend.results import check_output_dir, write_result
from tests.core.backend_process import ROOT, backend_env
from tests.core.test_results import META, octahedron, tree
from tests.file_tree import link_to_empty_folder
from tests.reliability.conftest import TinyWeights, leftovers

pytestmark = pytest.mark.slow  # real jobs with tiny weights, backend subprocesses

KILLED = 137
"""Exit status of a forked writer stopped mid-write (what a shell reports for SIGKILL)."""


def _args(tiny: TinyWeights, photo: Path, out: Path, *extra: str) -> list[str]:
    sets = [f"--set={key}={json.dumps(value)}" for key, value in tiny.overrides["meshinversion"].items()]
    return ["--weights-dir", str(tiny.root), "reconstruct", str(photo), "--weights", tiny.meshinversion,
            *sets, "-o", str(out), *extra]  # fmt: skip


def _reconstruct(
    capsys: pytest.CaptureFixture[str], tiny: TinyWeights, photo: Path, out: Path, *extra: str
) -> tuple[int, str]:
    """``python -m backend reconstruct`` in this process (each subprocess start costs seconds)."""
    code = main(_args(tiny, photo, out, *extra))
    return code, capsys.readouterr().err


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def _is_whole_result(folder: Path) -> bool:
    """A complete result: its result.json lists exactly the files present, and the mesh loads."""
    listed = json.loads((folder / "result.json").read_text())["files"]
    with np.load(folder / "mesh.npz") as mesh:
        return sorted(listed) == sorted(os.listdir(folder)) and mesh["faces"].shape[1] == 3


def _only_our_staging(folder: Path, output: str) -> bool:
    return all(
        is_staging_name(name, output, "tmp") or is_staging_name(name, output, "old")
        for name in leftovers(folder)
    )


def test_artists_folder_under_overwrite_is_refused_byte_identical(
    capsys: pytest.CaptureFixture[str], tiny: TinyWeights, photo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "my textures"
    out.mkdir()
    (out / "result.json").write_text('{"mine": 1}\n')
    (out / "texture.png").write_bytes(photo.read_bytes())
    before = tree(tmp_path)
    code, err = _reconstruct(capsys, tiny, photo, out, "--overwrite")
    assert code == 1 and len(_error_lines(err)) == 1 and "[output_exists]" in err, err
    assert "result.json" in err and "nothing was changed" in err and "hint: pick another folder" in err
    assert "prepare" not in err  # refused before any work
    assert tree(tmp_path) == before


def test_link_to_an_empty_folder_then_overwrite_through_it(
    capsys: pytest.CaptureFixture[str], tiny: TinyWeights, photo: Path, tmp_path: Path
) -> None:
    link, target = link_to_empty_folder(tmp_path)
    code, err = _reconstruct(capsys, tiny, photo, link)
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target) and _is_whole_result(target)
    assert os.listdir(tmp_path / "work") == ["LINK"] and os.listdir(tmp_path / "store") == ["results"]
    first = (target / "result.json").read_bytes()
    code, err = _reconstruct(capsys, tiny, photo, link, "--overwrite", "--seed", "7")
    assert code == 0, err
    assert link.is_symlink() and _is_whole_result(target) and (target / "result.json").read_bytes() != first
    assert json.loads((target / "result.json").read_text())["seed"] == 7
    assert os.listdir(tmp_path / "work") == ["LINK"] and os.listdir(tmp_path / "store") == ["results"]


def test_245_character_name_works_and_256_is_one_line(
    capsys: pytest.CaptureFixture[str], tiny: TinyWeights, photo: Path, tmp_path: Path
) -> None:
    name = "n" * 245
    code, err = _reconstruct(capsys, tiny, photo, tmp_path / name)
    assert code == 0, err
    code, err = _reconstruct(capsys, tiny, photo, tmp_path / name, "--overwrite")
    assert code == 0, err
    assert os.listdir(tmp_path) == [name] and _is_whole_result(tmp_path / name)
    code, err = _reconstruct(capsys, tiny, photo, tmp_path / ("n" * 256))
    assert code == 1 and "[bad_output]" in err and "256 bytes" in err and "prepare" not in err, err
    assert len(_error_lines(err)) == 1 and os.listdir(tmp_path) == [name]


def _die_at_filesystem_call(step: int) -> None:
    """From now on, end this process without any cleanup (as SIGKILL does) at the ``step``-th
    file-system call: folder and rename calls, file removals, and every file opened."""
    counter = itertools.count()

    def counted(real: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if next(counter) == step:
                os._exit(KILLED)
            return real(*args, **kwargs)

        return call

    for name in ("mkdir", "rmdir", "rename", "replace", "unlink"):
        setattr(os, name, counted(getattr(os, name)))
    builtins.open = io.open = counted(io.open)


def _write_in_a_child_killed_at(step: int, out: Path) -> int:
    """``write_result(..., overwrite=True)`` in a forked child that dies at file-system call ``step``."""
    newer = octahedron()
    newer.vertices = newer.vertices * 2
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            _die_at_filesystem_call(step)
            write_result(newer, out, META, overwrite=True)
            code = 0
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def test_a_kill_at_every_step_of_an_overwrite_loses_nothing(tmp_path: Path) -> None:
    """The writer dies before each of its file-system calls in turn, until one run gets through.
    After every death the output is the whole earlier result or the whole new one (or the earlier one
    renamed aside, between the two renames); only our own staging names are left, and the next run
    clears them (restoring the earlier result where needed)."""
    outcomes = []
    for step in range(500):
        folder = tmp_path / f"step{step}"
        out = folder / "out"
        write_result(octahedron(), out, META)
        before = tree(out)
        code = _write_in_a_child_killed_at(step, out)
        if code == 0:
            break
        assert code == KILLED and _only_our_staging(folder, "out"), (step, leftovers(folder))
        if out.exists():
            with np.load(out / "mesh.npz") as mesh:
                outcomes.append("new" if mesh["vertices"].max() > 0.9 else "earlier")
            assert tree(out) == before if outcomes[-1] == "earlier" else _is_whole_result(out)
        else:
            outcomes.append("renamed aside")
        check_output_dir(out, overwrite=True)  # the first thing the next run does
        assert leftovers(folder) == [] and _is_whole_result(out), step
        assert outcomes[-1] == "new" or tree(out) == before, step
    else:
        pytest.fail("the writer never got through")
    assert leftovers(folder) == [] and _is_whole_result(out)
    assert {"earlier", "renamed aside", "new"} <= set(outcomes) and len(outcomes) > 10, outcomes


def _wait_for_staging(proc: subprocess.Popen[bytes], folder: Path) -> None:
    """Until a hidden entry shows up in ``folder`` (the write has begun) or ``proc`` ends."""
    deadline = time.monotonic() + 120
    while not leftovers(folder) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)


def test_sigkill_of_the_command_at_random_moments(tiny: TinyWeights, photo: Path, tmp_path: Path) -> None:
    """20 real ``python -m backend reconstruct --overwrite`` processes SIGKILLed at a random moment:
    of the whole run, or (every other one) of the write, within 50 ms of its staging folder showing
    up. The output is always a whole result, only our staging names are ever left, the next run
    clears them, and a final run works and leaves nothing hidden."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "backend", *_args(tiny, photo, out, "--overwrite")]

    def run() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command, cwd=ROOT, env=backend_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    started = time.monotonic()
    assert run().wait(300) == 0
    duration = time.monotonic() - started
    rng = random.Random(25)
    for attempt in range(20):
        proc = run()
        if attempt % 2:
            time.sleep(rng.uniform(0, duration))
        else:
            _wait_for_staging(proc, tmp_path)
            time.sleep(rng.uniform(0, 0.05))
        proc.kill()
        proc.wait(60)
        assert _only_our_staging(tmp_path, "out"), (attempt, leftovers(tmp_path))
        assert not out.exists() or _is_whole_result(out), attempt
        check_output_dir(out, overwrite=True)  # the next run's first step
        assert leftovers(tmp_path) == [] and _is_whole_result(out), attempt
    assert run().wait(300) == 0
    assert os.listdir(tmp_path) == ["out"] and _is_whole_result(out)
