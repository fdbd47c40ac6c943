"""Property-based protocol tests against one live ``python -m backend serve``.

Hypothesis generates raw bytes, arbitrary JSON, messages of every client type with arbitrary field
values, and valid jobs cut off mid-line. After each line a ``ping`` must be answered (no crash, no
hang), and what came before it must be what the line deserves: an error event for anything that
is not a valid message, a ``pong`` for a ping, nothing for a cancel, and for a job either a
refusal or ``accepted`` followed by exactly one final event. Every stdout line is decoded as a
protocol message by the reader, so stray output would fail the test too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from backend.protocol import CLIENT_TYPES, MAX_MESSAGE_BYTES, JobRequest
from tests.core.backend_process import BackendProcess
from tests.reliability.conftest import TinyWeights, job_outcome, start_backend

pytestmark = pytest.mark.slow  # a live backend subprocess

JOB_FIELDS = sorted(f for f in JobRequest.__dataclass_fields__)
FINAL = ("result", "error", "cancelled")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=24),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
any_character = st.characters(exclude_categories=())  # lone surrogates too: JSON can carry them
odd_paths = ["", ".", "/", "/dev/null", "\x00", "nonexistent/ü ñ.png"]
paths = st.text(any_character, max_size=40) | st.sampled_from(odd_paths)
message_types = st.sampled_from(sorted(CLIENT_TYPES - {"shutdown"})) | st.text(max_size=12)
messages = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    message_types,
    st.dictionaries(st.sampled_from([*JOB_FIELDS, "job", "extra"]), json_values, max_size=6),
)
jobs = st.builds(
    lambda image, out, fields: {"type": "job", "image": image, "output_dir": out, **fields},
    paths,
    paths,
    st.dictionaries(st.sampled_from(JOB_FIELDS), json_values, max_size=4),
)
valid_job = json.dumps({"type": "job", "id": "cut", "image": "/nonexistent/a.png", "output_dir": "/tmp/x"})
lines = st.one_of(
    st.binary(max_size=120),
    json_values.map(json.dumps).map(str.encode),
    messages.map(json.dumps).map(str.encode),
    jobs.map(json.dumps).map(str.encode),
    st.integers(1, len(valid_job) - 1).map(lambda n: valid_job[:n].encode()),
).map(lambda line: line.replace(b"\n", b" ").replace(b"\r", b" "))


def expected(line: bytes) -> str:
    """What the server owes this line, judged from the protocol's rules (not from its code)."""
    if not line.strip():
        return "nothing"
    if len(line) > MAX_MESSAGE_BYTES:
        return "error"
    try:
        message = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "error"
    if not isinstance(message, dict) or message.get("type") not in CLIENT_TYPES:
        return "error"
    return str(message["type"])


@pytest.fixture(scope="module")
def backend(tiny: TinyWeights, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    """With real (tiny) weights registered, so fuzzed jobs get past weights lookup to the files."""
    process = start_backend(tiny.root, tmp_path_factory.mktemp("fuzz") / "stderr.txt")
    yield process
    process.close()


def _exchange(backend: BackendProcess, line: bytes) -> list[dict[str, Any]]:
    """Send ``line`` and then a sentinel ping; return what arrived before its pong."""
    token = f"sentinel-{len(backend.seen)}"
    backend.send_raw(line + b"\n")
    backend.send({"type": "ping", "id": token})
    before = []
    while True:
        message = backend.next(timeout=30)
        if message["type"] == "pong" and message.get("id") == token:
            return before
        before.append(message)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(line=lines)
@example(line=b'{"type": "ping", "pad": "' + b"x" * (MAX_MESSAGE_BYTES + 10) + b'"}')
@example(line=b'{"type": "job", "id": ["a", "list"], "image": "a.png", "output_dir": "o"}')
@example(line=b'{"type": "job", "id": "big-seed", "image": "a.png", "output_dir": "o", "seed": 1e400}')
@example(line=b'{"type": "cancel", "job": {"a": 1}}')
@example(line=b'{"type": "job", "id": "nul", "image": "a\\u0000.png", "output_dir": "o"}')
@example(line=b'{"type": "job", "id": "surrogate", "image": "\\ud800.png", "output_dir": "\\ud800"}')
@example(line=b'{"type": "job", "id": "s2", "image": "a.png", "output_dir": "o", "mask_path": "\\udcff"}')
def test_any_line_gets_its_answer_and_the_backend_stays_up(backend: BackendProcess, line: bytes) -> None:
    answers = _exchange(backend, line)
    kinds = [m["type"] for m in answers]
    owed = expected(line)
    if owed == "nothing" or owed == "cancel":
        assert all(kind == "cancelled" for kind in kinds), answers  # a cancel may only end queued jobs
    elif owed == "error":
        assert kinds == ["error"] and answers[0]["code"] in ("bad_json", "bad_type", "too_large"), answers
    elif owed == "ping":
        assert kinds == ["pong"], answers
    else:  # a job: refused at once, or accepted and then ended exactly once (maybe before the pong)
        assert kinds and kinds[0] in ("accepted", "error"), answers
        final = answers[0]
        if kinds[0] == "accepted":
            job = final["job"]
            assert all(m.get("job") == job and m["type"] in ("progress", *FINAL) for m in answers[1:])
            ended = [m for m in answers[1:] if m["type"] in FINAL]
            assert len(ended) <= 1, answers
            final = ended[0] if ended else job_outcome(backend, job, timeout=60)
        else:
            assert len(answers) == 1, answers
        if final["type"] == "error":
            assert final["code"] != "internal", final  # a user's bad value is a user error, not a bug
            assert final["message"] and "\n" not in final["message"] and final["hint"], final
    assert backend.proc.poll() is None

