"""Faults while a real job runs: the backend killed, Blender gone, cancel at every stage, stray
output on stdout, and out-of-memory. Jobs use tiny real weights so each takes seconds."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from backend import jobs
from backend.jobs import ModelCache, out_of_memory_hint, run_job
from backend.methods import method_class
from backend.methods.base import JobCancelled
from backend.protocol import SERVER_TYPES, JobRequest, ProtocolError, UserError, decode
from backend.weights import Registry
from blender_addon.client import BackendClient
from tests.core.backend_process import ROOT, backend_env
from tests.reliability.conftest import TinyWeights, leftovers, start_backend

pytestmark = pytest.mark.slow  # real jobs and backend subprocesses


def _request(tiny: TinyWeights, method: str, photo: Path, out: Path, **overrides: Any) -> JobRequest:
    return JobRequest(
        image=str(photo), output_dir=str(out), method=method, weights=getattr(tiny, method),
        overrides={**tiny.overrides[method], **overrides},
    )  # fmt: skip


def _zombie_children() -> list[int]:
    """Pids of this process's children that exited but were never reaped."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            found.append(int(stat.parent.name))
    return found


def _process_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def test_sigkill_mid_job_is_reported_and_the_next_job_gets_a_fresh_backend(
    tiny: TinyWeights, photo: Path, tmp_path: Path
) -> None:
    client = BackendClient(
        sys.executable, ROOT, log_path=tmp_path / "backend.log", env={"RFI_WEIGHTS_DIR": str(tiny.root)},
        startup_timeout_s=120, watchdog_s=120,
    )  # fmt: skip
    try:
        client.ensure_started()
        first_pid = client.pid
        long = _request(tiny, "gan2shape", photo, tmp_path / "killed", invert_steps=5000)
        job = client.submit(long)
        with pytest.raises(UserError) as busy:  # two jobs at once: the second is refused, not mixed in
            client.submit(_request(tiny, "meshinversion", photo, tmp_path / "second"))
        assert busy.value.code == "busy"
        deadline = time.monotonic() + 120
        while job.stage != "invert" and time.monotonic() < deadline:
            client.poll(0.2)
        assert job.stage == "invert" and not job.finished  # really inside the optimisation
        os.kill(first_pid, signal.SIGKILL)
        client.wait()
        assert job.state == "failed" and job.error.code == "backend_crashed"
        assert "-9" in job.error.message and "restarts" in job.error.hint
        assert not _process_exists(first_pid) and _zombie_children() == []

        after = client.submit(_request(tiny, "meshinversion", photo, tmp_path / "after"))
        client.wait()
        assert after.state == "done", after.error
        assert client.pid != first_pid and Path(after.result.files["mesh.npz"]).is_file()
    finally:
        client.kill()
    assert not (tmp_path / "killed").exists() and leftovers(tmp_path) == []
    assert _zombie_children() == []


def test_backend_exits_when_blender_goes_away_mid_job(tiny: TinyWeights, photo: Path, tmp_path: Path) -> None:
    """Blender quitting closes the backend's stdin: the running job stops and the process exits."""
    backend = start_backend(tiny.root, tmp_path / "stderr.txt")
    try:
        job = _request(tiny, "gan2shape", photo, tmp_path / "out", invert_steps=5000)
        backend.send({**job.to_message(), "id": "orphan"})
        backend.expect("progress", job="orphan", stage="invert")
        assert backend.proc.stdin is not None
        backend.proc.stdin.close()
        started = time.monotonic()
        assert backend.proc.wait(30) == 0
        assert time.monotonic() - started < 15
    finally:
        backend.close()
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("method", ["meshinversion", "gan2shape"])
def test_cancel_at_every_stage(tiny: TinyWeights, photo: Path, tmp_path: Path, method: str) -> None:
    """Cancel at the first and at the last progress event of each stage (the last event of
    ``export`` is the moment before the files would be written): nothing is ever written."""
    registry = Registry(tiny.root, shipped_dir=tmp_path / "none")
    cache = ModelCache()
    events: list[tuple[str, int]] = []
    full = _request(tiny, method, photo, tmp_path / "full")
    run_job(full, lambda e: events.append((e["stage"], e["step"])), None, registry, cache)
    stages = list(dict.fromkeys(stage for stage, _ in events))
    assert stages[0] == "prepare" and stages[-1] == "export" and len(stages) >= 4
    for stage in stages:
        steps = [step for name, step in events if name == stage]
        for when, step in (("first", steps[0]), ("last", steps[-1])):
            cancel = threading.Event()
            out = tmp_path / f"{stage}-{when}".replace("/", "_")

            def emit(event: dict[str, Any], at: tuple[str, int] = (stage, step), flag=cancel) -> None:
                if (event["stage"], event["step"]) == at:
                    flag.set()

            with pytest.raises(JobCancelled):
                run_job(_request(tiny, method, photo, out), emit, cancel, registry, cache)
            assert not out.exists(), (stage, when)
    assert leftovers(tmp_path) == []


NOISY_SERVER = """
import ctypes, logging, os, sys, warnings
from backend import jobs
from backend.cli import main

original = jobs.ProgressReporter.__call__
libc = ctypes.CDLL(None)

def noisy(self, stage, step, total, **kw):
    print(f"print() from a library at {stage} {step}")
    sys.__stdout__.write('{"type": "result", "job": "forged"}\\n')
    sys.__stdout__.flush()
    os.write(1, b"raw write to fd 1\\n")
    libc.puts(b"C library puts")
    libc.fflush(None)
    warnings.warn("a library warning")
    logging.getLogger("lib").error("a library log line")
    return original(self, stage, step, total, **kw)

jobs.ProgressReporter.__call__ = noisy
sys.exit(main(sys.argv[1:]))
"""


def test_stray_output_inside_a_job_never_reaches_the_protocol(
    tiny: TinyWeights, photo: Path, tmp_path: Path
) -> None:
    """Libraries writing to stdout in every way (print, sys.__stdout__, fd 1, C stdio) during a
    real job: every stdout line is still a protocol message and the job's result arrives."""
    stderr = (tmp_path / "stderr.txt").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", NOISY_SERVER, "--weights-dir", str(tiny.root), "serve"],
        cwd=ROOT, env=backend_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
    )  # fmt: skip
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        job = _request(tiny, "meshinversion", photo, tmp_path / "out")
        proc.stdin.write((json.dumps({**job.to_message(), "id": "noisy"}) + "\n").encode())
        proc.stdin.flush()
        messages = []
        while not messages or messages[-1]["type"] not in ("result", "error"):
            try:
                messages.append(decode(lines.get(timeout=120), SERVER_TYPES))
            except ProtocolError as exc:
                pytest.fail(f"stdout carried a non-protocol line: {exc}")
    finally:
        proc.kill()
        proc.wait(10)
        stderr.close()
    assert messages[0]["type"] == "hello" and messages[-1]["type"] == "result", messages[-1]
    assert all(m.get("job") in (None, "noisy") for m in messages)  # the forged line never got through
    noise = (tmp_path / "stderr.txt").read_text()
    for text in ("print() from a library", "forged", "raw write to fd 1", "C library puts", "library log"):
        assert text in noise


@pytest.mark.parametrize(
    "failure",
    [
        # CUDA cannot run here (CPU-only torch), so the exception torch raises on a GPU is faked
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
            "you tried to allocate 40000000000000 bytes. Error code 12 (Cannot allocate memory)"
        ),  # the CPU allocator's real wording (torch.empty(10**13) on this machine)
        MemoryError(),
    ],
    ids=["cuda", "cpu-allocator", "python"],
)
def test_out_of_memory_maps_to_a_hint_and_the_next_job_runs(
    tiny: TinyWeights, photo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException
) -> None:
    registry = Registry(tiny.root, shipped_dir=tmp_path / "none")
    cache = ModelCache()
    model_class = method_class("meshinversion")
    real_run = model_class.run

    def run_out_of_memory(self: Any, image: Any, options: Any, seed: int, progress: Any) -> Any:
        progress("initialise", 1, 4)
        raise failure

    monkeypatch.setattr(model_class, "run", run_out_of_memory)
    with pytest.raises(UserError) as err:
        run_job(
            _request(tiny, "meshinversion", photo, tmp_path / "oom"), lambda e: None, None, registry, cache
        )
    assert err.value.code == "out_of_memory" and "initialise" in err.value.message
    assert "fast preset" in err.value.hint and not (tmp_path / "oom").exists()
    monkeypatch.setattr(model_class, "run", real_run)
    run_job(_request(tiny, "meshinversion", photo, tmp_path / "next"), lambda e: None, None, registry, cache)
    assert (tmp_path / "next" / "mesh.npz").is_file()
    assert "--device cpu" in out_of_memory_hint(torch.device("cuda"))  # what a GPU user is told
    assert jobs.describe_error(failure)[0] == "out_of_memory"


HANGING_SERVER = """
import sys, time
from backend import jobs, server
from backend.cli import main

server.SHUTDOWN_GRACE_S = 1.0
original = jobs.ProgressReporter.__call__

def hang_in_first_method_step(self, stage, step, total, **kw):
    if stage != "prepare":
        print("step started, never returns", file=sys.stderr, flush=True)
        time.sleep(3600)  # a kernel that never comes back (no progress call, so no cancel check)
    return original(self, stage, step, total, **kw)

jobs.ProgressReporter.__call__ = hang_in_first_method_step
sys.exit(main(sys.argv[1:]))
"""


def test_backend_exits_on_eof_even_when_a_step_never_returns(
    tiny: TinyWeights, photo: Path, tmp_path: Path
) -> None:
    """The cancel check between steps cannot stop a step that hangs: at EOF the backend waits the
    grace period, then exits anyway, so a hung job never outlives Blender."""
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-c", HANGING_SERVER, "--weights-dir", str(tiny.root), "serve"],
            cwd=ROOT, env=backend_env(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
        try:
            job = _request(tiny, "meshinversion", photo, tmp_path / "out")
            proc.stdin.write((json.dumps({**job.to_message(), "id": "hung"}) + "\n").encode())
            proc.stdin.flush()
            deadline = time.monotonic() + 120
            while "never returns" not in stderr_path.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert "never returns" in stderr_path.read_text()
            proc.stdin.close()
            started = time.monotonic()
            assert proc.wait(30) == 0
            assert time.monotonic() - started < 10
        finally:
            proc.kill()
            proc.wait(10)
    assert not (tmp_path / "out").exists()


def test_a_burst_of_jobs_is_queued_up_to_the_limit_then_refused(
    tiny: TinyWeights, photo: Path, tmp_path: Path
) -> None:
    """Jobs sent faster than they run: queued in order up to ``MAX_QUEUED``, the rest refused with
    ``queue_full``; cancelling everything leaves an idle backend and no output."""
    from backend.server import MAX_QUEUED

    backend = start_backend(tiny.root, tmp_path / "stderr.txt")
    try:
        long = _request(tiny, "gan2shape", photo, tmp_path / "long", invert_steps=5000).to_message()
        backend.send({**long, "id": "long"})
        backend.expect("progress", job="long")
        for index in range(MAX_QUEUED + 2):
            backend.send({**long, "id": f"q{index}", "output_dir": str(tmp_path / f"q{index}")})
        positions = [backend.expect("accepted", job=f"q{index}")["position"] for index in range(MAX_QUEUED)]
        assert positions == list(range(1, MAX_QUEUED + 1))
        for index in (MAX_QUEUED, MAX_QUEUED + 1):
            assert backend.expect("error", job=f"q{index}")["code"] == "queue_full"
        backend.send({"type": "cancel"})
        ended = {backend.expect("cancelled")["job"] for _ in range(MAX_QUEUED + 1)}
        assert ended == {"long", *(f"q{index}" for index in range(MAX_QUEUED))}
        backend.send({"type": "ping", "id": "idle"})
        pong = backend.expect("pong", id="idle")
        assert pong["busy"] is None and pong["queued"] == 0
    finally:
        backend.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stderr.txt"]


EXITING_SERVER = """
import sys
from backend.cli import main
from backend.methods import method_class

model_class = method_class("meshinversion")
original = model_class.run
calls = []

def exit_on_first_job(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == 1:
        sys.exit(3)  # what a library's argument parser or error handler may do
    return original(self, *args, **kwargs)

model_class.run = exit_on_first_job
sys.exit(main(sys.argv[1:]))
"""


def test_sys_exit_inside_a_job_is_an_error_and_the_queue_goes_on(
    tiny: TinyWeights, photo: Path, tmp_path: Path
) -> None:
    """``SystemExit`` in the worker thread used to end that thread silently: no final event for the
    job and no further job ever ran, so the add-on waited for its watchdog (10 minutes)."""
    stderr = (tmp_path / "stderr.txt").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", EXITING_SERVER, "--weights-dir", str(tiny.root), "serve"],
        cwd=ROOT, env=backend_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
    )  # fmt: skip
    lines: queue.Queue[bytes] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        for name in ("exits", "next"):
            job = _request(tiny, "meshinversion", photo, tmp_path / name).to_message()
            proc.stdin.write((json.dumps({**job, "id": name}) + "\n").encode())
        proc.stdin.flush()
        finals: dict[str, dict[str, Any]] = {}
        while len(finals) < 2:
            message = decode(lines.get(timeout=120), SERVER_TYPES)
            if message["type"] in ("result", "error", "cancelled"):
                finals[message["job"]] = message
    finally:
        proc.kill()
        proc.wait(10)
        stderr.close()
    assert finals["exits"]["type"] == "error" and "SystemExit" in finals["exits"]["message"]
    assert finals["next"]["type"] == "result" and not (tmp_path / "exits").exists()


def test_shutdown_mid_job_cancels_it_says_bye_and_exits(
    tiny: TinyWeights, photo: Path, tmp_path: Path
) -> None:
    """What the add-on sends when the user stops the backend (or frees memory) during a job."""
    backend = start_backend(tiny.root, tmp_path / "stderr.txt")
    try:
        job = _request(tiny, "gan2shape", photo, tmp_path / "out", invert_steps=5000).to_message()
        backend.send({**job, "id": "running"})
        backend.expect("progress", job="running", stage="invert")
        backend.send({"type": "shutdown"})
        assert backend.expect("cancelled", timeout=30)["job"] == "running"
        backend.expect("bye", timeout=30)
        assert backend.proc.wait(30) == 0
    finally:
        backend.close()
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


def test_watchdog_ends_a_backend_that_hangs_mid_job(tiny: TinyWeights, photo: Path, tmp_path: Path) -> None:
    """A step that never returns after progress was flowing (a live process, not a stopped one): the
    add-on's watchdog kills the backend and reports it; nothing is left running or written."""
    launcher = tmp_path / "python"  # the add-on's "backend Python": runs the server with the hang
    launcher.write_text(f'#!/bin/sh\nexec {sys.executable} -u -c "$RFI_TEST_SERVER" serve\n')
    launcher.chmod(0o755)
    env = {"RFI_WEIGHTS_DIR": str(tiny.root), "RFI_TEST_SERVER": HANGING_SERVER}
    client = BackendClient(launcher, ROOT, log_path=tmp_path / "backend.log", env=env, watchdog_s=3.0)
    try:
        job = client.submit(_request(tiny, "meshinversion", photo, tmp_path / "hung"))
        deadline = time.monotonic() + 120
        while job.stage != "prepare" and not job.finished and time.monotonic() < deadline:
            client.poll(0.1)
        pid = client.pid
        started = time.monotonic()
        client.wait()
        assert job.state == "failed" and job.error.code == "backend_hung", job.error
        assert 3.0 <= time.monotonic() - started < 20 and not _process_exists(pid)
        assert "never returns" in (tmp_path / "backend.log").read_text()
    finally:
        client.kill()
    assert _zombie_children() == [] and not (tmp_path / "hung").exists()
