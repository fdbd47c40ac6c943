"""Every protocol message is defined once (``backend/protocol.py``): what the server writes is built
from those definitions, and the add-on reads no field they do not define."""

from __future__ import annotations

import ast
import io
import threading
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from backend.jobs import ProgressReporter
from backend.protocol import (
    CLIENT_MESSAGES,
    SERVER_MESSAGES,
    SERVER_TYPES,
    AcceptedMessage,
    ByeMessage,
    CancelledMessage,
    CancelMessage,
    ErrorMessage,
    HelloMessage,
    JobRequest,
    JobSummary,
    MaskRequest,
    MaskSummary,
    Message,
    PingMessage,
    PongMessage,
    ProgressMessage,
    ProtocolError,
    PublishedTerm,
    ReprojectSummary,
    ResultMessage,
    ShutdownMessage,
    WeightsInfo,
    decode,
    encode,
)
from backend.server import Server
from tests.core.backend_process import defined_message

ADDON = Path(__file__).resolve().parents[2] / "blender_addon"

EXAMPLES: list[Message] = [
    HelloMessage(
        protocol_version=2, backend_version="0.1", torch_version="2.5", python_version="3.11", pid=7,
        methods=["gan2shape", "meshinversion"], job_policy="queue", max_message_bytes=1 << 20, warnings=[],
        device="cpu", cuda_available=False, cuda_name=None, cuda_memory_gb=None, threads=1,
        weights=[WeightsInfo(id="car", method="meshinversion", category="car", origin="shipped")],
        published_terms=[PublishedTerm(method="meshinversion", term="VGG19 feature loss", detail="relu3_1",
                                       on=False, import_command="python -m backend weights import ...")],
    ),
    AcceptedMessage("j", 0),
    ProgressMessage("j", "invert", 3, 10, 0.5, 1.25),
    ProgressMessage("j", "invert", 3, 10, None, None, "/tmp/preview.png"),
    ResultMessage("j", {"mesh.npz": "/o/mesh.npz"}, JobSummary(
        method="meshinversion", weights="car", preset="fast", device="cpu", seconds=1.0, vertices=3, faces=1,
        output_dir="/o",
    )),
    ResultMessage("j", {"mask.png": "/o/mask.png", "result.json": "/o/result.json"}, MaskSummary(
        kind="mask", mask_source="salient", coverage=0.25, width=640, height=480, seconds=0.5,
        output_dir="/o",
    )),
    ErrorMessage("not_found", "image file not found: x.png", "check the path", "j"),
    ErrorMessage("bad_json", "message is not JSON", "see backend/protocol.py"),
    CancelledMessage("j"),
    PongMessage(None, "j", 1),
    ByeMessage(),
    CancelMessage("j"),
    PingMessage(3),
    ShutdownMessage(),
]  # fmt: skip


def test_every_message_type_is_defined_and_round_trips() -> None:
    assert {type(m).message_type for m in EXAMPLES} == SERVER_TYPES | {"cancel", "ping", "shutdown"}
    assert set(CLIENT_MESSAGES) == {"job", "reproject", "mask", "cancel", "ping", "shutdown"}
    for example in EXAMPLES:
        line = encode(example.to_message())
        message = decode(line, frozenset({example.message_type}))
        assert type(example).from_message(message) == example
        assert next(iter(message)) == "type"


def test_mask_request_round_trips_and_checks_what_a_job_checks() -> None:
    request = MaskRequest(image="a.png", output_dir="/o", mask="grabcut", box=[1, 2, 30, 40], id="m1")
    message = decode(encode(request.to_message()), frozenset({"mask"}))
    assert message["type"] == "mask" and MaskRequest.from_dict(message) == request
    assert set(message) == {"type", "image", "output_dir", "mask", "mask_path", "box", "overwrite", "id"}
    for bad in [{"mask": "file"}, {"box": [3, 3, 1, 1]}, {"mask": "magic"}, {"overwrite": 1}, {"method": "x"},
                {"image": ""}, {"id": ""}]:  # fmt: skip
        for definition in (MaskRequest, JobRequest):
            if "method" in bad and definition is JobRequest:
                continue
            with pytest.raises(ProtocolError) as err:
                definition.from_dict({"image": "a.png", "output_dir": "/o", **bad})
            assert err.value.code == "bad_request"


def test_optional_fields_are_left_out_only_when_absent() -> None:
    assert "preview" not in ProgressMessage("j", "s", 1, 2).to_message()
    assert ProgressMessage("j", "s", 1, 2).to_message()["eta"] is None  # always sent, null before step 1
    assert "job" not in ErrorMessage("bad_json", "x").to_message()
    assert ErrorMessage("c", "m", "h", "j").to_message() == {
        "type": "error", "code": "c", "message": "m", "hint": "h", "job": "j",
    }  # fmt: skip


def test_from_message_refuses_what_the_definition_does_not_say() -> None:
    good = ProgressMessage("j", "s", 1, 2).to_message()
    for bad, code in [
        ({**good, "fraction": 0.5}, "bad_message"),
        ({**good, "eta_s": 3.0}, "bad_message"),
        ({k: v for k, v in good.items() if k != "stage"}, "bad_message"),
        ({**good, "type": "result"}, "bad_type"),
    ]:
        with pytest.raises(ProtocolError) as err:
            ProgressMessage.from_message(bad)
        assert err.value.code == code and err.value.hint


def test_protocol_error_is_a_user_error() -> None:
    from backend.protocol import UserError

    error = ProtocolError("bad_request", "id must be a short string")
    assert isinstance(error, UserError) and isinstance(error, ValueError)
    assert (error.code, error.hint) == ("bad_request", "fix the request") and str(error) == error.message


def test_server_writes_only_defined_messages(tmp_path: Path) -> None:
    """An in-process server through a session of every kind of answer: each line it writes is what
    its message's definition writes, byte for byte."""
    out = io.BytesIO()
    server = Server(out, str(tmp_path / "weights"))
    job = b'{"type": "job", "id": "j1", "image": "%s", "output_dir": "%s"}\n' % (
        str(tmp_path / "missing.png").encode(), str(tmp_path / "out").encode(),
    )  # fmt: skip
    stdin = io.BytesIO(
        b'{"type": "ping", "id": 1}\n'
        b"not json\n"
        b'{"type": "job", "image": 3}\n' + job + job.replace(b"j1", b"j2") + b'{"type": "cancel"}\n'
        b'{"type": "shutdown"}\n'
    )
    assert server.serve(stdin) == 0
    messages = [defined_message(line) for line in out.getvalue().splitlines(keepends=True)]
    kinds = {m["type"] for m in messages}
    assert {"hello", "pong", "error", "accepted", "bye"} <= kinds, messages
    assert messages[0]["type"] == "hello" and messages[-1]["type"] == "bye"


def test_progress_events_are_progress_messages(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    reporter = ProgressReporter("j", events.append, threading.Event(), previews=True)
    reporter("fit", 0, 3)
    reporter("fit", 1, 3, loss=2.0, preview=np.zeros((4, 4, 3), np.uint8))
    reporter("fit", 3, 3, loss=1.0)
    reporter.close()
    for event in events:
        assert ProgressMessage.from_message(event).to_message() == event
    assert "preview" in events[1] and "preview" not in events[2]


def names_read(tree: ast.AST) -> set[tuple[str, str]]:
    """``(name, key)`` for every ``name["key"]``, ``name.get("key")`` and ``name.key`` read in
    ``tree``; ``name`` is the last part of the object's expression (``job.result.files`` -> result)."""

    def last_name(node: ast.AST) -> str | None:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return node.attr
        if isinstance(node, ast.BoolOp):  # ``(handshake or {}).get(...)``
            return last_name(node.values[0])
        return None

    reads: set[tuple[str, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            owner, key = last_name(node.value), node.slice.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            owner, key = last_name(node.func.value), node.args[0].value
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            owner, key = last_name(node.value), node.attr
        else:
            continue
        if owner is not None and isinstance(key, str):
            reads.add((owner, key))
    return reads


def _fields(*definitions: Any) -> set[str]:
    names: set[str] = set()
    for definition in definitions:
        if isinstance(definition, type) and issubclass(definition, Message):
            names |= {f.name for f in fields(definition)}
        else:  # a TypedDict
            names |= set(typing.get_type_hints(definition))
    return names


def test_addon_reads_only_fields_the_protocol_defines() -> None:
    """The add-on's reads of protocol data, by the names it gives that data: the handshake, its
    weights entries, a result and its summary everywhere; in the client also a raw ``message`` (only
    to dispatch it), an ``event`` read through its definition and a progress event."""
    every_server_field = _fields(*SERVER_MESSAGES.values()) | {"type"}
    defined = {
        "hello": _fields(HelloMessage),
        "handshake": _fields(HelloMessage),
        "entry": _fields(WeightsInfo),
        "e": _fields(WeightsInfo),
        "term": _fields(PublishedTerm),
        "result": _fields(ResultMessage),
        "summary": _fields(JobSummary, ReprojectSummary, MaskSummary),
    }
    in_client = {
        "message": every_server_field, "event": every_server_field, "progress": _fields(ProgressMessage),
    }  # fmt: skip
    checked: set[tuple[str, str]] = set()
    for module in ["client.py", "operators.py", "preferences.py", "session.py", "properties.py", "api.py",
                   "panels.py"]:
        names = {**defined, **in_client} if module == "client.py" else defined
        reads = names_read(ast.parse((ADDON / module).read_text()))
        checked |= {(owner, key) for owner, key in reads if owner in names and not key.startswith("_")}
    defined |= in_client
    methods = {"get", "items", "keys", "values", "to_message", "from_message", "setdefault"}
    undefined = sorted((o, k) for o, k in checked if k not in defined[o] and k not in methods)
    assert not undefined, f"the add-on reads fields the protocol does not define: {undefined}"
    keys = {key for _, key in checked}
    assert {"protocol_version", "cuda_name", "eta", "preview", "seen_fraction", "category", "hint"} <= keys
