"""``python -m backend serve``: the JSON-lines protocol server the Blender add-on talks to.

Threads: the main thread reads stdin (so ``ping`` and ``cancel`` are answered during a job), one
worker thread runs jobs strictly one at a time: reconstructions (``job``) and re-projections
(``reproject``) alike. Job policy: a job sent while another runs is **queued** (FIFO, at most
``MAX_QUEUED``) and acknowledged with ``accepted`` and its queue position; jobs never
interleave. ``cancel`` with a ``job`` id cancels that job (running: at its next step; queued: at
once); without an id it cancels the running job and empties the queue. Cancelling a job that is
no longer queued or running is a silent no-op, because it races with the job's end (an error
event would mark a finished job as failed). Job ids must be unique among queued and running
jobs. ``shutdown`` cancels everything and answers ``bye``; EOF on stdin (the client died) does
the same silently, so the backend never outlives Blender.

The protocol goes to a private duplicate of the original stdout; file descriptor 1 and
``sys.stdout`` are pointed at stderr, so stray prints from libraries cannot corrupt the stream.
"""

from __future__ import annotations

import os
import platform
import sys
import threading
from collections import deque
from typing import Any, BinaryIO

import torch

from backend import __version__
from backend.devices import describe_device, resolve_device
from backend.jobs import ModelCache, describe_error, log_traceback, run_job, run_mask
from backend.methods import METHOD_MODULES
from backend.methods.base import JobCancelled
from backend.protocol import (
    CLIENT_TYPES,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    REQUEST_TYPES,
    AcceptedMessage,
    ByeMessage,
    CancelledMessage,
    ErrorMessage,
    HelloMessage,
    MaskRequest,
    Message,
    PongMessage,
    ProtocolError,
    ReprojectRequest,
    Request,
    ResultMessage,
    UserError,
    WeightsInfo,
    decode,
    encode,
)
from backend.published_terms import term_status
from backend.reproject.job import run_reproject
from backend.weights import Registry

MAX_QUEUED = 16
SHUTDOWN_GRACE_S = 10.0
"""How long shutdown waits for a cancelled job to reach its next step before exiting anyway."""


def protect_stdout() -> BinaryIO:
    """Move the real stdout to a private fd for the protocol and send fd 1 to stderr."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "wb", buffering=0)


def hello_message(registry: Registry) -> HelloMessage:
    """The first line: versions, device, methods and weights, so the client can check it all at once."""
    warnings: list[str] = []
    try:
        entries = registry.entries()
    except UserError as exc:
        entries = []
        warnings.append(f"{exc.message} ({exc.hint})")
    weights = [WeightsInfo(id=e.id, method=e.method, category=e.category, origin=e.origin) for e in entries]
    return HelloMessage(
        protocol_version=PROTOCOL_VERSION,
        backend_version=__version__,
        torch_version=torch.__version__,
        python_version=platform.python_version(),
        pid=os.getpid(),
        methods=sorted(METHOD_MODULES),
        job_policy="queue",
        max_message_bytes=MAX_MESSAGE_BYTES,
        warnings=warnings,
        **describe_device(resolve_device("auto")),
        weights=weights,
        published_terms=term_status(entries),
    )


class Server:
    """Protocol state: the output stream, the job queue and the running job's cancel event."""

    def __init__(self, out: BinaryIO, weights_dir: str | None = None) -> None:
        self.out = out
        self.weights_dir = weights_dir
        self.write_lock = threading.Lock()
        self.jobs = threading.Condition()
        self.queue: deque[tuple[Request, threading.Event]] = deque()
        self.current: tuple[Request, threading.Event] | None = None
        self.stopping = False
        self.cache = ModelCache()
        self.worker = threading.Thread(target=self._work, name="rfi-worker", daemon=True)

    def send(self, message: Message | dict[str, Any]) -> None:
        """Write one protocol line; a vanished client means shut down, never a crash. ``message`` is
        one of the protocol's messages, or one already in wire form (the jobs' progress events)."""
        if isinstance(message, Message):
            message = message.to_message()
        try:
            data = encode(message)
        except (ValueError, TypeError) as exc:  # e.g. NaN in a field: report it rather than break the stream
            error = ErrorMessage("internal", f"unencodable {message.get('type')} message: {exc}")
            data = encode(error.to_message())
        with self.write_lock:
            try:
                self.out.write(data)
                self.out.flush()
            except (BrokenPipeError, OSError):
                self._stop()

    def serve(self, stdin: BinaryIO) -> int:
        self.send(hello_message(Registry(self.weights_dir)))
        self.worker.start()
        while True:
            line = stdin.readline(MAX_MESSAGE_BYTES + 1)
            if not line:  # EOF: the client is gone
                self._stop()
                self.worker.join(SHUTDOWN_GRACE_S)
                return 0
            if len(line) > MAX_MESSAGE_BYTES and not line.endswith(b"\n"):
                self._skip_rest_of_line(stdin)
                too_long = f"message longer than {MAX_MESSAGE_BYTES} bytes"
                self.send(ErrorMessage("too_large", too_long, "send less"))
                continue
            if not line.strip():
                continue
            if self._handle_safely(line) == "shutdown":
                self._stop()
                self.worker.join(SHUTDOWN_GRACE_S)
                self.send(ByeMessage())
                return 0

    @staticmethod
    def _skip_rest_of_line(stdin: BinaryIO) -> None:
        while True:
            chunk = stdin.readline(MAX_MESSAGE_BYTES)
            if not chunk or chunk.endswith(b"\n"):
                return

    def _handle_safely(self, line: bytes) -> str | None:
        """``_handle``, with a bug in handling one message reported as an error event: the reader
        thread must never die, or the client would wait on a backend that no longer listens."""
        try:
            return self._handle(line)
        except Exception as exc:
            log_traceback(exc)
            self.send(ErrorMessage("internal", f"{type(exc).__name__} while handling a message", "a bug"))
            return None

    def _handle(self, line: bytes) -> str | None:
        try:
            message = decode(line, CLIENT_TYPES)
        except ProtocolError as exc:
            self.send(ErrorMessage(exc.code, exc.message, "see backend/protocol.py for the message format"))
            return None
        kind = message["type"]
        if kind == "ping":
            with self.jobs:
                busy = self.current[0].id if self.current else None
                queued = len(self.queue)
            self.send(PongMessage(message.get("id"), busy, queued))
        elif kind in REQUEST_TYPES:
            self._enqueue(message)
        elif kind == "cancel":
            self._cancel(message.get("job"))
        return kind

    def _enqueue(self, message: dict[str, Any]) -> None:
        job_id = message.get("id") if isinstance(message.get("id"), str) else None
        try:
            request = REQUEST_TYPES[message["type"]].from_dict(message)
        except (ProtocolError, TypeError) as exc:
            self.send(ErrorMessage("bad_request", str(exc), "fix the job fields", job_id))
            return
        with self.jobs:
            ids = {r.id for r, _ in self.queue} | ({self.current[0].id} if self.current else set())
            if request.id in ids:
                error = ErrorMessage("duplicate_job", f"job id {request.id!r} is already queued or running")
            elif len(self.queue) >= MAX_QUEUED:
                error = ErrorMessage("queue_full", f"{MAX_QUEUED} jobs are queued already", "wait or cancel")
            else:  # acknowledged under the lock, so ``accepted`` always precedes the job's progress
                self.queue.append((request, threading.Event()))
                position = len(self.queue) - (0 if self.current else 1)
                self.send(AcceptedMessage(request.id, position))
                self.jobs.notify()
                return
        error.job = request.id
        self.send(error)

    def _cancel(self, job_id: Any) -> None:
        """Cancel one job by id, or (no id) the running job and every queued one."""
        with self.jobs:
            dropped = [r.id for r, _ in self.queue if job_id is None or r.id == job_id]
            self.queue = deque((r, e) for r, e in self.queue if r.id not in dropped)
            running = self.current if self.current and job_id in (None, self.current[0].id) else None
            if running:
                running[1].set()
        for dropped_id in dropped:
            self.send(CancelledMessage(dropped_id))
        if job_id is not None and not dropped and not running:  # it finished meanwhile: nothing to do
            print(f"cancel ignored: no queued or running job {job_id!r}", file=sys.stderr)

    def _stop(self) -> None:
        with self.jobs:
            self.stopping = True
            self.queue.clear()
            if self.current:
                self.current[1].set()
            self.jobs.notify_all()

    def _work(self) -> None:
        while True:
            with self.jobs:
                while not self.queue and not self.stopping:
                    self.jobs.wait()
                if self.stopping:
                    return
                self.current = self.queue.popleft()
            request, cancel = self.current
            self.send(self._run(request, cancel))

    def _run(self, request: Request, cancel: threading.Event) -> Message:
        """Run one job; the final message is returned so it goes out only after the job is
        no longer current (a ``ping`` answered after it never reports the job as busy)."""
        try:
            if isinstance(request, ReprojectRequest):
                outcome = run_reproject(request, self.send, cancel)
            elif isinstance(request, MaskRequest):
                outcome = run_mask(request, self.send, cancel)
            else:
                outcome = run_job(request, self.send, cancel, Registry(self.weights_dir), self.cache)
            return ResultMessage(request.id, outcome.files, outcome.summary)
        except JobCancelled:
            return CancelledMessage(request.id)
        except (Exception, SystemExit) as exc:  # a library's sys.exit() must not kill the worker thread
            log_traceback(exc)
            return ErrorMessage(*describe_error(exc), job=request.id)
        finally:
            with self.jobs:
                self.current = None


def serve(weights_dir: str | None = None) -> int:
    """Entry point of ``python -m backend serve``."""
    out = protect_stdout()
    server = Server(out, weights_dir)
    code = server.serve(sys.stdin.buffer)
    if server.worker.is_alive():  # a step outlasted the grace period: do not wait for it at exit
        sys.stderr.flush()
        os._exit(code)
    return code
