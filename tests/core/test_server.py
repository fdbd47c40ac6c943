"""The protocol server as a real subprocess: handshake, errors, ping, shutdown, EOF, stdout guard."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from backend import __version__
from backend.protocol import MAX_MESSAGE_BYTES, PROTOCOL_VERSION
from tests.core.backend_process import ROOT, BackendProcess, backend_env
from tests.core.tiny_models import object_photo, tiny_gan2shape, tiny_meshinversion


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[BackendProcess]:
    process = BackendProcess(tmp_path / "weights", tmp_path / "stderr.txt")
    yield process
    process.close()


def test_handshake(backend: BackendProcess) -> None:
    hello = backend.next()
    assert hello["type"] == "hello"
    assert hello["protocol_version"] == PROTOCOL_VERSION and hello["backend_version"] == __version__
    assert hello["torch_version"] == torch.__version__
    assert hello["device"] in ("cpu", "cuda") and "cuda_name" in hello and "cuda_memory_gb" in hello
    assert hello["methods"] == ["gan2shape", "meshinversion"] and isinstance(hello["weights"], list)
    assert hello["job_policy"] == "queue"


def test_malformed_messages_are_errors_not_crashes(backend: BackendProcess) -> None:
    backend.expect("hello")
    cases = [
        (b"this is not json\n", "bad_json"),
        (b"[1, 2, 3]\n", "bad_json"),
        (b'{"type": "launch_missiles"}\n', "bad_type"),
        (b'{"type": "hello"}\n', "bad_type"),  # a server message sent by the client
        (b"\xff\xfe\n", "bad_json"),
        (b'{"type": "job", "image": 3}\n', "bad_request"),
        (b'{"type": "job", "image": "a.png", "output_dir": "o", "colour": "red"}\n', "bad_request"),
        (b'{"type": "job", "image": "a.png", "output_dir": "o", "preset": "slow"}\n', "bad_request"),
        (b"{" + b'"x":' * 100000 + b"\n", "bad_json"),
    ]
    for data, code in cases:
        backend.send_raw(data)
        error = backend.expect("error")
        assert error["code"] == code, (data[:40], error)
        assert error["message"] and "\n" not in error["message"]
    backend.send({"type": "ping", "id": 7})
    assert backend.expect("pong")["id"] == 7  # still alive and answering


def test_oversized_message(backend: BackendProcess) -> None:
    backend.expect("hello")
    backend.send_raw(b'{"type": "ping", "pad": "' + b"x" * (MAX_MESSAGE_BYTES + 10) + b'"}\n')
    assert backend.expect("error")["code"] == "too_large"
    backend.send({"type": "ping", "id": "after"})
    assert backend.expect("pong")["id"] == "after"


def test_job_error_keeps_server_alive(backend: BackendProcess, tmp_path: Path) -> None:
    backend.expect("hello")
    backend.send(
        {"type": "job", "id": "j1", "image": str(tmp_path / "missing.png"), "output_dir": str(tmp_path / "o")}
    )
    assert backend.expect("accepted")["job"] == "j1"
    error = backend.expect("error", job="j1")
    assert error["code"] in ("not_found", "no_weights", "method_unavailable") and error["hint"]
    backend.send({"type": "job", "id": "j2", "image": "x.png", "output_dir": "o", "device": "cuda"})
    error = backend.expect("error", job="j2")
    assert error["code"] in ("no_cuda", "no_weights", "method_unavailable")
    backend.send({"type": "ping"})
    assert backend.expect("pong")["busy"] is None


def test_cancel_of_a_finished_job_is_a_no_op(backend: BackendProcess) -> None:
    backend.expect("hello")
    backend.send({"type": "cancel", "job": "long-gone"})
    backend.send({"type": "ping", "id": 1})
    assert backend.next()["type"] == "pong"  # no error event in between
    assert "cancel ignored" in backend.stderr_path.read_text()


def test_shutdown_says_bye_and_exits(backend: BackendProcess) -> None:
    backend.expect("hello")
    backend.send({"type": "shutdown"})
    backend.expect("bye")
    assert backend.proc.wait(30) == 0


def test_eof_exits(backend: BackendProcess) -> None:
    backend.expect("hello")
    assert backend.proc.stdin is not None
    backend.proc.stdin.close()
    assert backend.proc.wait(30) == 0


def test_stray_prints_go_to_stderr() -> None:
    """After ``protect_stdout`` print() and raw writes to fd 1 land on stderr, the protocol on stdout."""
    code = (
        "import os, sys\n"
        "from backend.server import protect_stdout\n"
        "out = protect_stdout()\n"
        "print('noise from print')\n"
        "os.write(1, b'noise from fd 1\\n')\n"
        "out.write(b'protocol line\\n')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=backend_env(),
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert done.stdout == b"protocol line\n"
    assert b"noise from print" in done.stderr and b"noise from fd 1" in done.stderr


@pytest.mark.slow
def test_jobs_progress_ping_queue_and_cache(tmp_path: Path) -> None:
    weights_id, overrides = tiny_meshinversion(tmp_path / "weights")
    photo = object_photo(tmp_path / "photo.png")
    backend = BackendProcess(tmp_path / "weights", tmp_path / "stderr.txt")
    try:
        assert weights_id in [w["id"] for w in backend.expect("hello")["weights"]]
        job = {
            "type": "job", "image": str(photo), "method": "meshinversion", "weights": weights_id,
            "overrides": overrides,
        }  # fmt: skip  (the shipped demo weights come first by default)
        slow = {**overrides, "stages": [[40, 0.1, 0.01]]}
        backend.send({**job, "id": "j1", "output_dir": str(tmp_path / "o1"), "overrides": slow})
        backend.send({**job, "id": "j2", "output_dir": str(tmp_path / "o2")})
        assert backend.expect("accepted", job="j1")["position"] == 0
        assert backend.expect("accepted", job="j2")["position"] == 1
        backend.expect("progress", job="j1")
        backend.send({"type": "ping", "id": "during"})
        pong = backend.expect("pong", id="during")
        assert pong["busy"] == "j1" and pong["queued"] == 1
        first = backend.expect("result", job="j1")
        second = backend.expect("result", job="j2")
    finally:
        backend.close()
    progress = [m for m in backend.seen if m["type"] == "progress"]
    assert {m["job"] for m in progress} == {"j1", "j2"}
    order = [m["job"] for m in progress]
    assert order == ["j1"] * order.count("j1") + ["j2"] * order.count("j2")  # never interleaved
    assert any(m.get("preview", "").endswith(".png") for m in progress) and all("eta" in m for m in progress)
    assert Path(first["files"]["mesh.npz"]).is_file() and second["summary"]["weights"] == weights_id
    timings = [json.loads(Path(r["files"]["result.json"]).read_text())["timings"] for r in (first, second)]
    assert timings[1]["load_model"] < timings[0]["load_model"]  # the model stayed loaded


@pytest.mark.slow
def test_cancel_running_and_queued_jobs(tmp_path: Path) -> None:
    _, overrides = tiny_gan2shape(tmp_path / "weights")
    photo = object_photo(tmp_path / "photo.png")
    backend = BackendProcess(tmp_path / "weights", tmp_path / "stderr.txt")
    try:
        backend.expect("hello")
        long = {
            "type": "job",
            "image": str(photo),
            "method": "gan2shape",
            "overrides": {**overrides, "invert_steps": 2000},
        }
        backend.send({**long, "id": "run", "output_dir": str(tmp_path / "run")})
        backend.send({**long, "id": "wait", "output_dir": str(tmp_path / "wait")})
        backend.send({**long, "id": "wait2", "output_dir": str(tmp_path / "wait2")})
        backend.expect("progress", job="run")
        backend.send({"type": "cancel", "job": "wait"})
        backend.expect("cancelled", job="wait")
        backend.send({"type": "cancel", "job": "run"})
        backend.expect("cancelled", job="run")
        backend.expect("progress", job="wait2")  # the queue moves on
        backend.send({"type": "cancel"})
        backend.expect("cancelled", job="wait2")
        backend.send({"type": "ping", "id": "after"})
        assert backend.expect("pong", id="after")["busy"] is None
        backend.send({"type": "shutdown"})
        backend.expect("bye")
        assert backend.proc.wait(30) == 0
    finally:
        backend.close()
    assert not any((tmp_path / name).exists() for name in ("run", "wait", "wait2"))
    assert max(m["step"] for m in backend.seen if m["type"] == "progress" and m["job"] == "run") < 2000
