"""A real ``python -m backend serve`` subprocess with a line reader, for the server tests."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from backend.protocol import SERVER_MESSAGES, SERVER_TYPES, decode, encode

ROOT = Path(__file__).resolve().parents[2]


def backend_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def defined_message(line: bytes) -> dict[str, Any]:
    """``line`` as a message, checked to be exactly what its protocol definition writes: the same
    fields, in the same order, with nothing left out or added."""
    message = decode(line, SERVER_TYPES)
    again = encode(SERVER_MESSAGES[message["type"]].from_message(message).to_message())
    assert again == line, f"backend line is not its protocol definition's:\n{line!r}\n{again!r}"
    return message


class BackendProcess:
    """Starts the server, decodes every stdout line as a protocol message (so noise fails the test)
    and checks it against its definition in ``backend/protocol.py``."""

    def __init__(self, weights_dir: Path, stderr_path: Path) -> None:
        self.stderr_file = stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backend", "--weights-dir", str(weights_dir), "serve"],
            cwd=ROOT,
            env=backend_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr_file,
        )
        self.messages: queue.Queue[bytes | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.stderr_path = stderr_path
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.messages.put(line)
        self.messages.put(None)

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        self.send_raw((json.dumps(message) + "\n").encode())

    def next(self, timeout: float = 60.0) -> dict[str, Any]:
        line = self.messages.get(timeout=timeout)
        if line is None:
            raise EOFError(f"backend closed stdout; stderr:\n{self.stderr_path.read_text()[-3000:]}")
        message = defined_message(line)
        self.seen.append(message)
        return message

    def expect(self, kind: str, timeout: float = 60.0, **fields: Any) -> dict[str, Any]:
        """Skip messages until one of ``kind`` (with matching ``fields``) arrives."""
        while True:
            message = self.next(timeout)
            if message["type"] == kind and all(message.get(k) == v for k, v in fields.items()):
                return message
            if message["type"] == "error" and kind != "error":
                raise AssertionError(
                    f"unexpected error {message}; stderr:\n{self.stderr_path.read_text()[-3000:]}"
                )

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.stderr_file.close()
