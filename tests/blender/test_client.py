"""The add-on's backend client without Blender, against the real backend subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from backend.protocol import PROTOCOL_VERSION, JobRequest, UserError
from blender_addon.client import BackendClient

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

pytestmark = pytest.mark.slow  # real subprocesses (backend with torch, venv + pip)


def gone(pid: int, timeout: float = 10.0) -> bool:
    """True once no process ``pid`` exists (zombies of our own children are reaped by wait())."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def client(tmp_path: Path):
    backend = BackendClient(PYTHON, ROOT, log_path=tmp_path / "backend.log", startup_timeout_s=120)
    yield backend
    backend.kill()


def test_handshake_and_stop(client: BackendClient) -> None:
    hello = client.ensure_started()
    assert hello["protocol_version"] == PROTOCOL_VERSION
    assert hello["device"] in ("cpu", "cuda")
    assert hello["torch_version"]
    assert isinstance(hello["weights"], list)
    pid = client.pid
    assert client.ensure_started() is hello and client.pid == pid  # kept alive, not restarted
    client.stop()
    assert not client.alive and gone(pid)


def test_relative_python_path_is_taken_from_the_callers_folder(tmp_path: Path) -> None:
    """The backend runs inside the extension folder; a relative path the user typed must still work."""
    client = BackendClient(os.path.relpath(PYTHON), ROOT, log_path=tmp_path / "backend.log")
    try:
        assert client.ensure_started()["protocol_version"] == PROTOCOL_VERSION
    finally:
        client.kill()


def test_job_error_is_one_line_and_backend_lives_on(client: BackendClient, tmp_path: Path) -> None:
    client.ensure_started()
    pid = client.pid
    client.submit(JobRequest(image=str(tmp_path / "missing.png"), output_dir=str(tmp_path / "out")))
    job = client.wait()
    assert job.state == "failed"
    assert job.error.code and job.error.message and "\n" not in job.error.one_line()
    assert client.alive and client.pid == pid
    assert not (tmp_path / "out").exists()


def test_cancel_before_handshake_kills_the_starting_backend(client: BackendClient, tmp_path: Path) -> None:
    job = client.submit(JobRequest(image=str(tmp_path / "x.png"), output_dir=str(tmp_path / "out")))
    pid = client.pid
    assert job.state == "queued" and client.hello is None
    client.cancel()
    assert job.state == "cancelled"
    assert gone(pid)


def test_crash_is_reported_and_next_start_is_a_new_process(client: BackendClient, tmp_path: Path) -> None:
    client.ensure_started()
    first = client.pid
    os.kill(first, signal.SIGSTOP)  # frozen, so the job is surely in flight when the backend dies
    job = client.submit(JobRequest(image=str(tmp_path / "x.png"), output_dir=str(tmp_path / "out")))
    os.killpg(first, signal.SIGKILL)
    client.wait()
    assert job.state == "failed" and job.error.code == "backend_crashed"
    assert "exit code -9" in job.error.message and "next job restarts" in job.error.hint
    client.ensure_started()
    assert client.pid != first and gone(first)


def test_watchdog_stops_a_hung_backend(tmp_path: Path) -> None:
    client = BackendClient(PYTHON, ROOT, log_path=tmp_path / "backend.log", watchdog_s=1.5)
    try:
        client.ensure_started()
        pid = client.pid
        os.kill(pid, signal.SIGSTOP)  # a real hang: the process exists but answers nothing
        job = client.submit(JobRequest(image=str(tmp_path / "x.png"), output_dir=str(tmp_path / "out")))
        started = time.monotonic()
        client.wait()
        assert job.state == "failed" and job.error.code == "backend_hung"
        assert 1.5 <= time.monotonic() - started < 10
        assert gone(pid)
    finally:
        client.kill()


def test_start_failures_name_the_problem(tmp_path: Path) -> None:
    missing = BackendClient(tmp_path / "no-python", ROOT)
    with pytest.raises(UserError) as info:
        missing.ensure_started()
    assert info.value.code == "no_backend_python" and "Set up backend" in info.value.hint

    not_python = tmp_path / "python"
    not_python.write_text("#!/bin/sh\necho 'torch missing' >&2\nexit 3\n")
    not_python.chmod(0o755)
    broken = BackendClient(not_python, ROOT, log_path=tmp_path / "backend.log")
    with pytest.raises(UserError) as info:
        broken.ensure_started()
    assert info.value.code == "backend_start"
    assert "code 3" in info.value.message and "torch missing" in info.value.message
    assert str(tmp_path / "backend.log") in info.value.hint


@pytest.mark.parametrize("ending", ["normal_exit", "parent_killed"])
def test_no_orphan_backend(tmp_path: Path, ending: str) -> None:
    """Blender quitting (atexit) or dying (the backend sees EOF on stdin) takes the backend down."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from blender_addon.client import BackendClient
        client = BackendClient({PYTHON!r}, {str(ROOT)!r})
        client.ensure_started()
        print(client.pid, flush=True)
        if {ending!r} == "parent_killed":
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([PYTHON, "-c", script], capture_output=True, text=True, timeout=120)
    pid = int(proc.stdout.split()[0])
    assert gone(pid, timeout=20), f"backend {pid} outlived its client ({ending})"


def test_cancel_kills_a_backend_that_does_not_stop_in_time(tmp_path: Path) -> None:
    """Hard cancel: a backend stuck inside a step is killed after the grace time, however often the
    user presses cancel meanwhile (each press must not restart the grace period)."""
    client = BackendClient(PYTHON, ROOT, log_path=tmp_path / "backend.log", cancel_grace_s=1.0)
    try:
        client.ensure_started()
        pid = client.pid
        os.kill(pid, signal.SIGSTOP)
        job = client.submit(JobRequest(image=str(tmp_path / "x.png"), output_dir=str(tmp_path / "out")))
        started = time.monotonic()
        while not job.finished and time.monotonic() - started < 20:
            client.cancel()
            client.poll(0.1)
        assert job.state == "cancelled"
        assert 1.0 <= time.monotonic() - started < 5
        assert gone(pid)
    finally:
        client.kill()
