"""``python -m backend`` as a real subprocess: weights commands, doctor, and reconstruct failures."""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from backend.cli import build_parser, main, placement_overrides
from backend.doctor import _published_terms
from backend.methods.meshinversion.vgg import VGG_CONFIG
from backend.weights import Registry
from tests.core.backend_process import ROOT, backend_env
from tests.core.test_weights import _Payload, save_entry
from tests.core.tiny_models import MESHINVERSION_FAST, object_photo, tiny_generator_state


def cli(*args: str | Path, weights_dir: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "backend", "--weights-dir", str(weights_dir), *map(str, args)]
    return subprocess.run(
        command, cwd=ROOT, env=backend_env(), capture_output=True, text=True, timeout=timeout
    )


def in_process(capsys: pytest.CaptureFixture[str], *args: str, weights_dir: Path) -> tuple[int, str, str]:
    """``backend.cli.main`` in this process (cheaper than a subprocess for the quick commands)."""
    code = main(["--weights-dir", str(weights_dir), *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_weights_list_and_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "w"
    entry = save_entry(weights, {"a": torch.zeros(3)}, "good")
    save_entry(weights, {"a": torch.ones(3)}, "bad")
    save_file({"a": torch.full((3,), 2.0)}, weights / "bad.safetensors")  # same size, other bytes

    code, out, _ = in_process(capsys, "weights", "list", weights_dir=weights)
    assert code == 0 and "good" in out and "bad" in out and str(entry.path) in out

    code, out, _ = in_process(capsys, "weights", "verify", weights_dir=weights)
    assert code == 1 and "ok    good" in out and "FAIL  bad" in out and "sha256" in out
    assert in_process(capsys, "weights", "verify", "good", weights_dir=weights)[0] == 0

    code, _, err = in_process(capsys, "weights", "verify", "nope", weights_dir=weights)
    assert code == 1 and "error:" in err and "hint:" in err
    code, out, _ = in_process(capsys, "weights", "list", weights_dir=tmp_path / "empty")
    assert (code == 0 and "no weights registered" in out) or "shipped" in out


def test_import_refuses_malicious_pickle(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"generator_running_avg": {}, "x": _Payload(marker)}, evil)
    done = cli(
        "weights",
        "import",
        evil,
        "--method",
        "meshinversion",
        "--category",
        "car",
        weights_dir=tmp_path / "w",
    )
    assert done.returncode == 1 and "unsafe_checkpoint" in done.stderr and "not executed" in done.stderr
    assert not marker.exists() and not (tmp_path / "w" / "manifest.toml").exists()


def test_doctor_reports(tmp_path: Path) -> None:
    done = cli("doctor", weights_dir=tmp_path / "w")
    lines = done.stdout.splitlines()
    assert any(line.startswith("[ok] torch") for line in lines)
    assert any("user weights folder" in line and "writable" in line for line in lines)
    assert done.returncode == (1 if any(line.startswith("[FAIL]") for line in lines) else 0)
    # The published loss terms that need weights nobody can ship: said off, with the import command.
    off = [line for line in lines if line.startswith("[--]") and ": off (import it:" in line]
    assert any("meshinversion VGG19 feature loss" in line and "--category vgg19" in line for line in off)
    assert any("gan2shape perceptual (LPIPS) loss" in line and "--category vgg16" in line for line in off)


def test_doctor_says_a_published_term_is_on_once_its_weights_are_registered() -> None:
    vgg19 = SimpleNamespace(method="meshinversion", config={"network": VGG_CONFIG["network"]})
    lpips = SimpleNamespace(method="gan2shape", config={"kind": "lpips"})
    lines = dict((text.split(":")[0], status) for status, text in _published_terms([vgg19, lpips]))
    assert lines == {
        "meshinversion VGG19 feature loss (relu3_1, weight 0.04 in the paper)": "ok",
        "gan2shape perceptual (LPIPS) loss (its VGG16 backbone)": "--",
        "gan2shape LPIPS v0.1 heads (equal channel weights without them)": "ok",
    }


def doctor_threads(tmp_path: Path, **env: str) -> tuple[int, str]:
    """``doctor`` in a fresh process with the thread variables of ``env`` only (others removed)."""
    base = {k: v for k, v in backend_env().items() if k not in ("OMP_NUM_THREADS", "RFI_THREADS")}
    command = [sys.executable, "-m", "backend", "--weights-dir", str(tmp_path / "w"), "doctor"]
    done = subprocess.run(command, cwd=ROOT, env={**base, **env}, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout + done.stderr


def test_backend_leaves_one_core_free_unless_told(tmp_path: Path) -> None:
    probe = "import torch; print(torch.get_num_threads())"
    base = {k: v for k, v in backend_env().items() if k not in ("OMP_NUM_THREADS", "RFI_THREADS")}
    default = int(subprocess.run([sys.executable, "-c", probe], env=base, capture_output=True, text=True,
                                 check=True).stdout)
    _, out = doctor_threads(tmp_path)
    assert f"torch {torch.__version__}, {max(1, default - 1)} CPU thread(s)" in out
    _, out = doctor_threads(tmp_path, RFI_THREADS="3")
    assert ", 3 CPU thread(s)" in out
    _, out = doctor_threads(tmp_path, OMP_NUM_THREADS="2")
    assert ", 2 CPU thread(s)" in out  # an explicit OpenMP setting is the user's choice
    code, out = doctor_threads(tmp_path, RFI_THREADS="many")
    assert code == 2 and "RFI_THREADS must be a positive integer" in out


def test_reconstruct_failure_is_one_line_with_hint(tmp_path: Path) -> None:
    done = cli("reconstruct", tmp_path / "missing.png", "-o", tmp_path / "out", weights_dir=tmp_path / "w")
    assert done.returncode == 1
    error_lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and any(line.startswith("hint:") for line in done.stderr.splitlines())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["reconstruct", "x.png", "-o", "o", "--preset", "slow"], "invalid choice"),
        (["reconstruct", "x.png"], "-o/--output"),
        (["reconstruct", "x.png", "-o", "o", "--box", "1", "2"], "--box"),
        (["reconstruct", "x.png", "-o", "o", "--scale", "feet"], "invalid choice"),
        (["weights", "import", "f.pth", "--method", "meshinversion"], "--category"),
    ],
)
def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], args: list[str], complaint: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2 and complaint in capsys.readouterr().err


def test_scale_flags_are_job_options() -> None:
    """``--scale``/``--size-m`` become the ``scale``/``size_m`` options (unset: the method's default)."""
    parse = build_parser().parse_args
    assert placement_overrides(parse(["reconstruct", "x.png", "-o", "o"])) == {}
    args = parse(["reconstruct", "x.png", "-o", "o", "--scale", "metres", "--size-m", "3.9"])
    assert placement_overrides(args) == {"scale": "metres", "size_m": "3.9"}


def test_bad_set_syntax(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = in_process(
        capsys, "reconstruct", "x.png", "-o", "o", "--set", "steps", weights_dir=tmp_path
    )
    assert code == 1 and "key=value" in err


def test_module_runs_from_any_directory(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "backend", "--help"],
        cwd=tmp_path,
        env=backend_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and "reconstruct" in done.stdout


def official_checkpoint(path: Path, tamper: str | None = None) -> Path:
    """A MeshInversion-style ``checkpoint_latest.pth``: EMA generator, optimiser-ish extras, args."""
    state, _ = tiny_generator_state(seed=1)
    if tamper:
        state[tamper] = torch.zeros(3, 3)
    torch.save(
        {
            "generator_running_avg": state,
            "generator": state,
            "epoch": 7,
            "g_curve": [np.float64(0.5), np.float64(0.25)],
            "self.args": argparse.Namespace(norm_g="batch", mesh_path="mesh_templates/uvsphere_16rings.obj"),
        },
        path,
    )
    return path


@pytest.mark.slow
def test_import_official_then_reconstruct(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "w"
    checkpoint = official_checkpoint(tmp_path / "checkpoint_latest.pth")
    import_args = ["--method", "meshinversion", "--category", "bird", "--id", "mine"]
    done = cli("weights", "import", checkpoint, *import_args, weights_dir=weights)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("imported mine: ") and (weights / "mine.safetensors").is_file()
    entry = Registry(weights, shipped_dir=tmp_path / "none").find("mine")
    assert entry.config["width"] == 1 / 32 and str(checkpoint.resolve()) in entry.source
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() in entry.source

    overrides = MESHINVERSION_FAST
    sets = [arg for key, value in overrides.items() for arg in ("--set", f"{key}={json.dumps(value)}")]
    photo = object_photo(tmp_path / "photo.png")
    args = ["reconstruct", photo, "--weights", "mine", "--seed", "2", "--mask", "alpha", *sets]
    done = cli(*args, "-o", tmp_path / "out", weights_dir=weights)
    assert done.returncode == 0, done.stderr
    summary = done.stdout.strip().splitlines()
    assert len(summary) == 1 and summary[0].startswith(f"wrote {tmp_path / 'out'}") and "mine" in summary[0]
    assert "initialise" in done.stderr and "|" in done.stderr  # tqdm bars on stderr
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    assert doc["seed"] == 2 and doc["input"]["mask"] == "alpha" and doc["weights"]["sha256"] == entry.sha256

    # The follow-ups run in-process: the subprocess path is proven above and each start costs seconds.
    args = [str(a) for a in args]
    code, _, err = in_process(capsys, *args, "-o", str(tmp_path / "out"), weights_dir=weights)
    assert code == 1 and "output_exists" in err and "--overwrite" in err
    code, _, err = in_process(
        capsys, *args, "--set", "z_candidates=lots", "-o", str(tmp_path / "o2"), weights_dir=weights
    )
    assert code == 1 and "bad_option" in err and not (tmp_path / "o2").exists()
    code, out, err = in_process(
        capsys,
        *args,
        "--overwrite",
        "--set",
        "previews=false",
        "-o",
        str(tmp_path / "out"),
        weights_dir=weights,
    )
    assert code == 0 and out.startswith("wrote "), err
    assert not (tmp_path / "out" / "preview.png").exists()  # replaced by a result without previews


def test_import_with_wrong_shapes_names_the_tensor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = official_checkpoint(tmp_path / "bad.pth", tamper="fc.bias")
    code, _, err = in_process(capsys, "weights", "import", str(checkpoint), "--method", "meshinversion",
                              "--category", "bird", weights_dir=tmp_path / "w")  # fmt: skip
    assert code == 1 and "not_a_checkpoint" in err and "fc.bias" in err
    assert not (tmp_path / "w" / "manifest.toml").exists()


def test_weights_dir_after_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    save_entry(tmp_path / "w", {"a": torch.zeros(3)}, "late-option")
    assert main(["weights", "list", "--weights-dir", str(tmp_path / "w")]) == 0
    assert "late-option" in capsys.readouterr().out
    assert main(["--weights-dir", str(tmp_path / "w"), "weights", "verify"]) == 0


def test_import_refuses_path_like_ids_and_unwritable_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = official_checkpoint(tmp_path / "ok.pth")
    args = ["weights", "import", str(checkpoint), "--method", "meshinversion", "--category", "bird"]
    code, _, err = in_process(capsys, *args, "--id", "../escape", weights_dir=tmp_path / "w")
    assert code == 1 and "bad_id" in err and not (tmp_path / "escape.safetensors").exists()
    (tmp_path / "a-file").write_text("not a folder")
    code, _, err = in_process(capsys, *args, weights_dir=tmp_path / "a-file" / "w")
    assert code == 1 and "not_writable" in err and "hint:" in err
