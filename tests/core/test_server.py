"""The protocol server as a real subprocess: handshake, errors, ping, shutdown, EOF, stdout guard."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from backend import __version__
from backend.protocol import MAX_MESSAGE_BYTES, PROTOCOL_VERSION
from tests.core.backend_process import ROOT, BackendProcess, backend_env


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


def test_cancel_unknown_job(backend: BackendProcess) -> None:
    backend.expect("hello")
    backend.send({"type": "cancel", "job": "nobody"})
    assert backend.expect("error")["code"] == "unknown_job"


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
