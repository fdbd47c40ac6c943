"""The backend subprocess and its lifecycle, without bpy (so it is tested on its own).

Blender's Python is the wrong interpreter for torch, and only a separate process can be killed
mid-kernel to cancel hard or to free GPU memory. So the add-on starts ``<python> -m backend
serve`` and speaks the JSON-lines protocol of ``backend/protocol.py`` over its pipes. A reader
thread turns stdout lines into messages on a queue; the owner of the client (a modal operator's
timer, or a blocking loop in background mode) drains it with ``poll``. No thread here ever
touches Blender data. stderr goes straight into a log file, so a crash leaves its last words.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:
    from .backend import protocol
    from .backend.protocol import UserError
except ImportError:  # source tree: backend/ is the sibling of blender_addon/ (tests put it on sys.path)
    from backend import protocol
    from backend.protocol import UserError

FINAL_STATES = ("done", "failed", "cancelled")
LOG_MARKER = "--- backend"
"""Prefix of the lines this client writes into the backend log between runs."""
EXIT_EVENT = "_exit"
"""Internal queue message (never on the wire): the backend's stdout closed."""


@dataclass
class JobStatus:
    """What the owner of a job knows about it; updated only by ``BackendClient.poll``."""

    id: str
    output_dir: str
    state: str = "queued"
    stage: str = ""
    step: int = 0
    total: int = 0
    fraction: float = 0.0
    """The bar: the current stage's step / total (1 when done)."""
    eta_s: float | None = None
    """Seconds left in the current stage (the progress event's ``eta``)."""
    loss: float | None = None
    preview: str | None = None
    result: protocol.ResultMessage | None = None
    error: UserError | None = None
    started: float = field(default_factory=time.monotonic)
    last_message: float = field(default_factory=time.monotonic)

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    def stage_text(self) -> str:
        """Short text for a progress bar: stage, step and ETA."""
        if self.state == "queued":
            return "Starting backend…" if not self.stage else self.stage
        text = self.stage or self.state
        if self.total:
            text += f" {self.step}/{self.total}"
        if self.eta_s is not None and self.state == "running":
            text += f", ~{format_seconds(self.eta_s)} left"
        return text


def format_seconds(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def clean_environment(root: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The backend's environment: Blender's Python settings must not leak into another interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")}
    env["PYTHONPATH"] = str(root)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def log_tail(path: Path | None, lines: int = 1) -> str:
    """The last non-empty lines of a log file (a traceback's last line names the error)."""
    if path is None or not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 16384))
        text = handle.read().decode("utf-8", "replace")
    kept = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(LOG_MARKER)]
    return " | ".join(kept[-lines:])


_LIVE: weakref.WeakSet[BackendClient] = weakref.WeakSet()


@atexit.register
def _stop_all_clients() -> None:
    """No orphan backends: Blender quitting (or a script ending) takes them down."""
    for client in list(_LIVE):
        client.kill()


class BackendClient:
    """One backend process: started on demand, restarted after a crash, killed to cancel hard.

    Not thread-safe by design: one owner (Blender's main thread) calls every method; only the
    private reader thread runs beside it, and it only fills the message queue.
    """

    def __init__(
        self,
        python: str | Path,
        root: str | Path,
        *,
        log_path: str | Path | None = None,
        env: dict[str, str] | None = None,
        startup_timeout_s: float = 180.0,
        watchdog_s: float = 600.0,
        cancel_grace_s: float = 10.0,
    ) -> None:
        # Absolute, since the backend runs in another folder; not resolved, since a venv's python is a
        # symlink and following it would leave the venv.
        self.python = os.path.abspath(os.path.expanduser(python))
        self.root = Path(root)
        self.log_path = Path(log_path) if log_path else None
        self.extra_env = dict(env or {})
        self.startup_timeout_s = startup_timeout_s
        self.watchdog_s = watchdog_s
        self.cancel_grace_s = cancel_grace_s
        self.hello: dict[str, Any] | None = None
        self.job: JobStatus | None = None
        self._proc: subprocess.Popen | None = None
        self._messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self._start_deadline = 0.0
        self._start_error: UserError | None = None
        self._pending_job: protocol.Request | None = None
        self._cancel_deadline: float | None = None
        self._job_counter = 0
        _LIVE.add(self)

    # -- process lifecycle -------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def ensure_started(self) -> dict[str, Any]:
        """The handshake of a running backend, starting (or restarting) it and waiting when needed."""
        if not self.alive:
            self.launch()
        while self.hello is None:
            self._check_start()
            with contextlib.suppress(queue.Empty):
                self._apply(self._messages.get(timeout=0.5))
        return self.hello

    def launch(self) -> None:
        """Start the backend process without waiting for ``hello``: the UI must not freeze while torch
        imports. ``poll`` (or ``ensure_started``) completes the handshake."""
        self.kill()
        if not Path(self.python).is_file():
            raise UserError(
                "no_backend_python",
                f"backend Python not found: {self.python}",
                "set it in the add-on preferences or press 'Set up backend'",
            )
        if not (self.root / "backend" / "protocol.py").is_file():
            raise UserError(
                "no_backend_code", f"backend package missing under {self.root}", "reinstall the extension"
            )
        log = self._open_log()
        kwargs: dict[str, Any] = {}
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
        else:
            kwargs["start_new_session"] = True  # its own process group: kill() takes its children too
        try:
            self._proc = subprocess.Popen(
                [self.python, "-u", "-m", "backend", "serve"],
                cwd=self.root,
                env=clean_environment(self.root, self.extra_env),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                **kwargs,
            )
        except OSError as exc:
            raise UserError(
                "backend_start",
                f"cannot start the backend: {exc}",
                "check the backend Python in the add-on preferences",
            ) from None
        finally:
            log.close()
        self._messages = queue.Queue()
        self._start_deadline = time.monotonic() + self.startup_timeout_s
        self._start_error = None
        threading.Thread(
            target=_read_messages, args=(self._proc, self._messages), name="rfi-backend-reader", daemon=True
        ).start()

    def _open_log(self):
        if self.log_path is None:
            return open(os.devnull, "wb")  # closed by launch() once the child holds it
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        log.write(f"\n{LOG_MARKER} start {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode())
        log.flush()
        return log

    def _check_start(self) -> None:
        """Raise the start failure, if any: an early exit, a wrong protocol, or no handshake in time."""
        if self._start_error is not None:
            error, self._start_error = self._start_error, None
            raise error
        if self.hello is None and time.monotonic() > self._start_deadline:
            self.kill()
            message = f"the backend sent no handshake in {self.startup_timeout_s:.0f} s"
            raise UserError("backend_start", message, self._log_hint())
        if self.hello is None and not self.alive and self._messages.empty():
            self._start_error = self._start_failure(self._proc.returncode if self._proc else None)
            self._check_start()

    def _start_failure(self, code: int | None) -> UserError:
        detail = log_tail(self.log_path)
        return UserError(
            "backend_start",
            f"the backend exited during start (code {code})" + (f": {detail}" if detail else ""),
            self._log_hint(),
        )

    def _log_hint(self) -> str:
        return f"see the backend log {self.log_path}" if self.log_path else "check the backend Python"

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the backend to exit (weights are freed), then make sure it did."""
        if self.alive:
            with contextlib.suppress(OSError, ValueError, UserError):
                self._send(protocol.ShutdownMessage().to_message())
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=timeout_s)
        self.kill()

    def kill(self) -> None:
        """End the backend now (hard cancel, hung backend, Blender quitting); idempotent."""
        proc, self._proc = self._proc, None
        self.hello = None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                if os.name == "nt":
                    proc.kill()
                else:
                    os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                pipe.close()

    def _send(self, message: dict[str, Any]) -> None:
        if self._proc is None or self._proc.stdin is None:
            raise UserError("backend_gone", "the backend is not running", "start a new job to restart it")
        self._proc.stdin.write(protocol.encode(message))
        self._proc.stdin.flush()

    # -- jobs ------------------------------------------------------------------------------------

    def submit(self, request: protocol.Request) -> JobStatus:
        """Queue one job (the backend runs one at a time); starts the backend if needed, without waiting."""
        if self.job is not None and not self.job.finished:
            raise UserError("busy", "a reconstruction is already running", "wait for it or cancel it")
        try:
            request.validate()
        except protocol.ProtocolError as exc:
            raise UserError(exc.code, str(exc), "check the reconstruction settings") from None
        if not self.alive:
            self.launch()  # raises before any job exists, so a failed start never leaves a job hanging
        self._job_counter += 1
        request.id = f"job{self._job_counter}-{os.getpid()}"
        self.job = JobStatus(id=request.id, output_dir=request.output_dir)
        self._cancel_deadline = None
        if self.hello is None:
            self._pending_job = request
            self.job.stage = "Starting backend"
        else:
            self._send_job(request)
        return self.job

    def _send_job(self, request: protocol.Request) -> None:
        try:
            self._send(request.to_message())
        except (OSError, ValueError) as exc:
            self._fail(
                UserError(
                    "backend_gone",
                    f"the backend closed its input: {exc}",
                    "start the job again; the backend restarts",
                )
            )

    def cancel(self) -> None:
        """Cancel the current job: politely first, killed if it does not stop within the grace time."""
        job = self.job
        if job is None or job.finished or self._cancel_deadline is not None:
            return  # nothing to cancel, or already cancelling: the grace period must not restart
        if not self.alive or self.hello is None:
            self._pending_job = None
            self.kill()
            self._finish_cancelled()
            return
        with contextlib.suppress(OSError, ValueError, UserError):
            self._send(protocol.CancelMessage(job.id).to_message())
        job.stage = "Cancelling"
        self._cancel_deadline = time.monotonic() + self.cancel_grace_s

    def poll(self, timeout_s: float = 0.0) -> JobStatus | None:
        """Apply queued messages to the current job; enforce start, cancel and watchdog deadlines."""
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            try:
                message = self._messages.get(remaining > 0, max(remaining, 0.0))
            except queue.Empty:
                break
            self._apply(message)
            if self.job is not None and self.job.finished:
                break
        if self.job is not None and not self.job.finished and self.hello is None:
            try:
                self._check_start()
            except UserError as error:
                self._pending_job = None
                self._fail(error)
        self._enforce_deadlines()
        return self.job

    def wait(self, on_update: Callable[[JobStatus], None] | None = None, poll_s: float = 0.25) -> JobStatus:
        """Block until the current job ends (background mode: Blender's timers do not run there)."""
        if self.job is None:
            raise UserError("no_job", "no job was submitted", "")
        while not self.job.finished:
            self.poll(poll_s)
            if on_update is not None:
                on_update(self.job)
        return self.job

    def _apply(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == EXIT_EVENT:
            self._on_exit()
        elif kind == "hello":
            self._on_hello(message)
        elif self.job is not None and message.get("job") in (None, self.job.id):
            self._on_job_message(self.job, message)

    def _on_hello(self, message: dict[str, Any]) -> None:
        problem = _handshake_problem(message)
        if problem:
            self.kill()
            self._start_error = UserError(
                "protocol_mismatch", problem, "install matching versions of the extension and backend"
            )
            return
        self.hello = message  # kept as sent: the panels show it
        if self._pending_job is not None:
            pending, self._pending_job = self._pending_job, None
            self._send_job(pending)

    def _on_exit(self) -> None:
        code = None
        if self._proc is not None:  # stdout closes a moment before the process can be reaped
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self._proc.wait(timeout=5)
        had_hello = self.hello is not None
        self.kill()
        if not had_hello:
            self._start_error = self._start_error or self._start_failure(code)
            return
        job = self.job
        if job is None or job.finished:
            return
        if self._cancel_deadline is not None:
            self._finish_cancelled()
            return
        detail = log_tail(self.log_path)
        self._fail(
            UserError(
                "backend_crashed",
                f"the backend stopped unexpectedly (exit code {code})" + (f": {detail}" if detail else ""),
                f"{self._log_hint()}; the next job restarts it",
            )
        )

    def _on_job_message(self, job: JobStatus, message: dict[str, Any]) -> None:
        job.last_message = time.monotonic()
        try:  # read through the protocol's definition: a field it does not define cannot be read
            event = protocol.SERVER_MESSAGES[message["type"]].from_message(message)
        except protocol.ProtocolError as exc:
            print(f"reconstruct_from_image: ignored backend output ({exc.code})", file=sys.stderr)
            return
        if isinstance(event, protocol.AcceptedMessage):
            job.state = "running"
        elif isinstance(event, protocol.ProgressMessage):
            job.state = "running"
            _apply_progress(job, event)
        elif isinstance(event, protocol.ResultMessage):
            job.state, job.result, job.fraction = "done", event, 1.0
        elif isinstance(event, protocol.ErrorMessage):
            self._fail(UserError(event.code, event.message, event.hint))
        elif isinstance(event, protocol.CancelledMessage):
            self._finish_cancelled()

    def _fail(self, error: UserError) -> None:
        if self.job is not None:
            self.job.state, self.job.error = "failed", error
        self._cancel_deadline = None

    def _finish_cancelled(self) -> None:
        if self.job is not None:
            self.job.state, self.job.stage = "cancelled", "Cancelled"
        self._cancel_deadline = None

    def _enforce_deadlines(self) -> None:
        job = self.job
        if job is None or job.finished or self.hello is None:
            return
        now = time.monotonic()
        if self._cancel_deadline is not None and now > self._cancel_deadline:
            self.kill()  # the backend did not stop between steps in time: cancel hard
            self._finish_cancelled()
        elif now - job.last_message > self.watchdog_s:
            self.kill()
            self._fail(
                UserError(
                    "backend_hung",
                    f"the backend sent nothing for {self.watchdog_s:.0f} s and was stopped",
                    "raise the watchdog time in the preferences for slow presets; the next job restarts it",
                )
            )


def _handshake_problem(hello: dict[str, Any]) -> str:
    """Why this handshake is not one of this add-on's protocol ("" when it is). The version is
    checked first: an older or newer backend's hello may have other fields."""
    version = hello.get("protocol_version")
    if version != protocol.PROTOCOL_VERSION:
        return f"backend speaks protocol {version}, add-on {protocol.PROTOCOL_VERSION}"
    try:
        protocol.HelloMessage.from_message(hello)
    except protocol.ProtocolError as exc:
        return f"the backend's handshake does not fit protocol {version}: {exc.message}"
    return ""


def _apply_progress(job: JobStatus, progress: protocol.ProgressMessage) -> None:
    """Progress within a stage: the bar shows the stage's ``step / total`` (the protocol sends no
    overall fraction) and the text its ``eta``, the seconds left in the stage."""
    job.stage = str(progress.stage)
    job.step = int(progress.step or 0)
    job.total = int(progress.total or 0)
    if job.total:
        job.fraction = min(job.step / job.total, 1.0)
    job.eta_s = float(progress.eta) if isinstance(progress.eta, int | float) else None
    job.loss = float(progress.loss) if isinstance(progress.loss, int | float) else job.loss
    if isinstance(progress.preview, str):
        job.preview = progress.preview


def _read_messages(proc: subprocess.Popen, messages: queue.Queue) -> None:
    """Reader thread: one queue item per protocol line, then ``_exit`` at EOF; nothing else."""
    stream = proc.stdout
    assert stream is not None
    try:
        for line in iter(lambda: stream.readline(protocol.MAX_MESSAGE_BYTES + 1), b""):
            if not line.strip():
                continue
            try:
                messages.put(protocol.decode(line, protocol.SERVER_TYPES))
            except protocol.ProtocolError as exc:
                print(f"reconstruct_from_image: ignored backend output ({exc.code})", file=sys.stderr)
    except (OSError, ValueError):
        pass
    messages.put({"type": EXIT_EVENT})
