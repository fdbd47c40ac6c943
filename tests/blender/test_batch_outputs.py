"""The batch script's outputs follow the backend's rules (issue 25): ``--output`` through a link writes
into its target, a user's file is never replaced unless asked, every file is renamed into place from
a short hidden name, and debris of a killed run of ours (only ours) is cleared."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.file_tree import tree

ROOT = Path(__file__).resolve().parents[2]
BATCH = ROOT / "blender_addon" / "batch.py"

pytestmark = pytest.mark.slow  # bpy processes and a real backend


def debris_name(name: str, token: str, kind: str) -> str:
    """What ``backend.protocol.staging_name`` makes (spelled out: this module imports nothing of ours)."""
    return f".rfi-{hashlib.sha256(os.fsencode(name)).hexdigest()[:12]}-{token}.{kind}"


def batch(tools: Any, case: Any, user: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """The batch script from the source checkout, with the bpy module and a real backend."""
    env = tools.env(user)
    env["RFI_WEIGHTS_DIR"] = case.weights_dir
    command = [tools.bpy_python, str(BATCH), *map(str, args), *case.batch_args(), "--seed", "3",
               "--backend-python", tools.backend_python]  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)


def test_output_through_a_link_never_replaces_a_users_file(
    tmp_path: Path, tools: Any, backend_case: Any
) -> None:
    inputs, projects, target = tmp_path / "in", tmp_path / "projects", tmp_path / "disk" / "results"
    for folder in (inputs, projects, target):
        folder.mkdir(parents=True)
    tools.photo(inputs / "car.png")
    link = projects / "OUT"
    link.symlink_to(target, target_is_directory=True)
    (target / "notes.txt").write_text("mine")
    killed = target / debris_name("car.glb", "0123abcd", "tmp.glb")  # a killed run's half file
    killed.write_bytes(b"glTF half")
    (target / debris_name("car.blend", "0123abcd", "tmp.blend@")).write_bytes(b"BLENDER half")
    lookalike = target / debris_name("car.glb", "not-hex!", "tmp.glb")  # not a name we make
    lookalike.write_bytes(b"mine")
    outputs = ["--save-blend", "--export", "glb", "--preview"]

    done = batch(tools, backend_case, tmp_path / "user", "--input", inputs, "--output", link, *outputs)
    assert done.returncode == 0, done.stdout + done.stderr
    assert link.is_symlink() and os.readlink(link) == str(target) and os.listdir(projects) == ["OUT"]
    expected = sorted(["car", "car.blend", "car.glb", "car_preview.png", "notes.txt", lookalike.name])
    assert sorted(os.listdir(target)) == expected  # the killed run's half files are gone
    assert (target / "car.glb").read_bytes()[:4] == b"glTF" and (target / "car" / "mesh.npz").is_file()
    assert (target / "car.blend").read_bytes()[:4] in (b"BLEN", b"\x28\xb5\x2f\xfd")  # plain or zstd

    before = tree(tmp_path / "disk")
    done = batch(tools, backend_case, tmp_path / "user", "--input", inputs, "--output", link, *outputs)
    assert done.returncode == 1 and "0 of 1 reconstructed" in done.stdout, done.stdout + done.stderr
    assert "exists (pass --overwrite to replace it" in done.stdout
    assert tree(tmp_path / "disk") == before  # refused before any work; every file byte-identical

    inode = (target / "car.glb").stat().st_ino
    done = batch(tools, backend_case, tmp_path / "user", "--input", inputs, "--output", link, *outputs,
                 "--overwrite")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (target / "car.glb").stat().st_ino != inode  # a new file renamed into place
    assert sorted(os.listdir(target)) == expected
    assert (target / "notes.txt").read_text() == "mine" and lookalike.read_bytes() == b"mine"


def test_a_link_or_too_long_a_name_is_refused_before_any_work(
    tmp_path: Path, tools: Any, backend_case: Any
) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    tools.photo(inputs / "car.png")
    tools.photo(inputs / ("c" * 245 + ".png"))
    (tmp_path / "mine.blend").write_bytes(b"BLENDER mine")
    (out / "car.blend").symlink_to(tmp_path / "mine.blend")
    before = tree(tmp_path)
    done = batch(tools, backend_case, tmp_path / "user", "--input", inputs, "--output", out,
                 "--save-blend", "--preview", "--overwrite")  # fmt: skip
    assert done.returncode == 1 and "0 of 2 reconstructed, 2 failed" in done.stdout, done.stdout + done.stderr
    assert "is a link or a folder, never replaced" in done.stdout
    assert "is too long a file name here (rename the photo)" in done.stdout
    assert tree(tmp_path) == before


BAD_OUTPUTS = {
    "dangling link": (lambda tmp: tmp / "out", lambda tmp: (tmp / "out").symlink_to(tmp / "gone"),
                      "which is missing or loops"),
    "link loop": (lambda tmp: tmp / "out", lambda tmp: ((tmp / "out").symlink_to(tmp / "loop"),
                                                        (tmp / "loop").symlink_to(tmp / "out")),
                  "which is missing or loops"),
    "a file": (lambda tmp: tmp / "out", lambda tmp: (tmp / "out").write_text("mine"), "is a file"),
    "inside a file": (lambda tmp: tmp / "out" / "sub", lambda tmp: (tmp / "out").write_text("mine"),
                      "Not a directory"),
    "too long a name": (lambda tmp: tmp / ("o" * 256), lambda tmp: None, "File name too long"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_OUTPUTS, ids=list(BAD_OUTPUTS))
def test_unusable_output_is_one_line_and_nothing_changes(
    tmp_path: Path, tools: Any, backend_case: Any, case: str
) -> None:
    output, make, words = BAD_OUTPUTS[case]
    photo = tools.photo(tmp_path / "car.png")
    (tmp_path / "user").mkdir()
    make(tmp_path)
    before = tree(tmp_path)
    done = batch(tools, backend_case, tmp_path / "user", "--input", photo, "--output", output(tmp_path))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and lines and lines[-1].startswith("batch.py: "), done.stderr
    assert words in lines[-1] and tree(tmp_path) == before


def test_a_real_photo_goes_through_the_batch_script(tmp_path: Path, tools: Any, backend_case: Any) -> None:
    """A JPEG photo (no alpha, a real background): ``auto`` finds its object with the salient net,
    and the result holds that mask at the photo's size beside the saved ``.blend``."""
    photo = ROOT / "tests" / "data" / "coffee.jpg"
    out = tmp_path / "out"
    done = batch(tools, backend_case, tmp_path / "user", "--input", photo, "--output", out, "--save-blend",
                 "--aligned-camera")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "coffee.blend").is_file()
    info = json.loads((out / "coffee" / "result.json").read_text())
    assert info["input"]["mask_resolved"] == "salient"
    assert info["notes"] and all(f"coffee.jpg: {note}" in done.stdout for note in info["notes"])
    with Image.open(out / "coffee" / "mask.png") as mask:
        assert mask.size == Image.open(photo).size
        coverage = (np.asarray(mask) > 127).mean()
    assert 0.1 < coverage < 0.9  # the cup and saucer, not the whole frame or nothing
