"""The one definition of the add-on <-> backend protocol (JSON lines over stdin/stdout).

Standard library only: the Blender add-on imports this very module (bundled inside the
extension) without torch, so both sides always agree on names and the version.

Every message is one JSON object on one line with a ``type`` field. Client -> backend:
``job`` (reconstruct a photo), ``reproject`` (bake a result's photo onto an edited mesh),
``cancel``, ``ping``, ``shutdown``. Backend -> client: ``hello`` (first line, once), ``accepted``,
``progress``, ``result``, ``error``, ``cancelled``, ``pong``, ``bye``; both job types report
through the same events. A change that an older peer cannot read bumps ``PROTOCOL_VERSION``
(2: the ``reproject`` job).

It also holds the one file-name convention both sides follow when they write outputs atomically
(the backend's result folders, the batch script's ``.blend``/``.glb``/preview files).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

PROTOCOL_VERSION = 2
MAX_MESSAGE_BYTES = 1 << 20
"""Longest accepted line; longer input is an error, never buffered without bound."""

CLIENT_TYPES = frozenset({"job", "reproject", "cancel", "ping", "shutdown"})
SERVER_TYPES = frozenset(
    {"hello", "accepted", "progress", "result", "error", "cancelled", "pong", "bye"}
)

MASK_SOURCES = ("auto", "alpha", "file", "salient", "grabcut", "none")
"""``auto``: alpha if the image has a useful one, else the salient-object net (``salient``), else
GrabCut when the net is not installed. ``none``: whole image. A result records the source that ran."""

PRESETS = ("fast", "paper")
DEVICES = ("auto", "cpu", "cuda")


MAX_ID_LENGTH = 200
REPROJECT_SIZES = (64, 2048)
"""Texture sizes a re-projection may ask for (the texture stage's own range)."""
SEED_LIMIT = 1 << 63
"""Seeds seed torch generators, which take 64-bit integers; larger ones are refused up front."""


def _is_int(value: Any) -> bool:
    """JSON integers only: ``True`` is an ``int`` in Python but never a count or a seed."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_file_name(path: Any) -> bool:
    """A string the OS can take as a path: JSON can carry NUL and lone surrogates (``\\ud800``),
    which no file system accepts; ``os.fsencode`` keeps the undecodable bytes of real file names."""
    try:
        return isinstance(path, str) and "\0" not in path and bool(os.fsencode(path))
    except UnicodeEncodeError:
        return False


class UserError(Exception):
    """The one error type a user can act on, on both sides of the protocol: a machine-readable
    ``code``, a one-line ``message`` and a ``hint`` saying what to do. An error event carries exactly
    these three fields (``error_message``)."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and its hint on one line, as a report bar or a terminal shows it."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ProtocolError(ValueError):
    """A message that is not valid protocol; ``code`` is the machine-readable reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class JobRequest:
    """Everything a reconstruction needs; the same object serves server, CLI and batch."""

    image: str
    output_dir: str
    method: str = "meshinversion"
    weights: str | None = None
    preset: str = "fast"
    device: str = "auto"
    seed: int = 0
    mask: str = "auto"
    mask_path: str | None = None
    box: list[int] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    overwrite: bool = False
    preview: bool = True
    id: str = "job"

    message_type: ClassVar[str] = "job"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRequest:
        """Validate field names and types; unknown keys are an error so typos never pass silently."""
        return _from_dict(cls, data, ("image", "output_dir"))

    def validate(self) -> None:
        """Check enumerations and value ranges that need no files or torch."""
        checks: list[tuple[bool, str]] = [
            (isinstance(self.id, str) and 0 < len(self.id) <= MAX_ID_LENGTH, "id must be a short string"),
            (self.preset in PRESETS, f"preset must be one of {', '.join(PRESETS)}"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}"),
            (self.mask in MASK_SOURCES, f"mask must be one of {', '.join(MASK_SOURCES)}"),
            (_is_int(self.seed) and -SEED_LIMIT <= self.seed < SEED_LIMIT, "seed must be a 64-bit integer"),
            (isinstance(self.method, str), "method must be a string"),
            (self.weights is None or isinstance(self.weights, str), "weights must be a string id"),
            (self.mask_path is None or isinstance(self.mask_path, str), "mask_path must be a string"),
            (isinstance(self.overwrite, bool), "overwrite must be true or false"),
            (isinstance(self.preview, bool), "preview must be true or false"),
            (isinstance(self.overrides, dict), "overrides must be an object"),
            (self.mask != "file" or bool(self.mask_path), "mask 'file' needs mask_path"),
            (
                all(map(_is_file_name, (self.image, self.output_dir, self.mask_path or "."))),
                "paths must be file names (no NUL characters or unpaired surrogates)",
            ),
        ]
        if self.box is not None:
            ok = (
                isinstance(self.box, list)
                and len(self.box) == 4
                and all(map(_is_int, self.box))
                and self.box[2] > self.box[0]
                and self.box[3] > self.box[1]
            )
            checks.append((ok, "box must be [x0, y0, x1, y1] integers with x1 > x0 and y1 > y0"))
        for ok, message in checks:
            if not ok:
                raise ProtocolError("bad_request", message)

    def to_message(self) -> dict[str, Any]:
        return {"type": self.message_type, **asdict(self)}


@dataclass
class ReprojectRequest:
    """Bake the photo of the result in ``result_dir`` onto the edited ``mesh`` (any topology, Blender's
    frame, .glb/.gltf/.obj or a result's mesh.npz) into a new result in ``output_dir``. ``texture``:
    the texture the mesh's UVs address now (default: the mesh file's own, else the result's), kept
    where the photo does not see; ``size``: the new texture's side (default: that texture's)."""

    result_dir: str
    mesh: str
    output_dir: str
    texture: str | None = None
    size: int | None = None
    device: str = "auto"
    overwrite: bool = False
    id: str = "job"

    message_type: ClassVar[str] = "reproject"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReprojectRequest:
        return _from_dict(cls, data, ("result_dir", "mesh", "output_dir"))

    def validate(self) -> None:
        low, high = REPROJECT_SIZES
        checks: list[tuple[bool, str]] = [
            (isinstance(self.id, str) and 0 < len(self.id) <= MAX_ID_LENGTH, "id must be a short string"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}"),
            (isinstance(self.overwrite, bool), "overwrite must be true or false"),
            (self.size is None or (_is_int(self.size) and low <= self.size <= high),
             f"size must be an integer within {low}..{high} (or null to keep the texture's)"),
            (self.texture is None or isinstance(self.texture, str), "texture must be a string"),
            (
                all(map(_is_file_name, (self.result_dir, self.mesh, self.output_dir, self.texture or "."))),
                "paths must be file names (no NUL characters or unpaired surrogates)",
            ),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise ProtocolError("bad_request", message)

    def to_message(self) -> dict[str, Any]:
        return {"type": self.message_type, **asdict(self)}


Request = JobRequest | ReprojectRequest
REQUEST_TYPES: dict[str, type[JobRequest] | type[ReprojectRequest]] = {
    JobRequest.message_type: JobRequest,
    ReprojectRequest.message_type: ReprojectRequest,
}
"""Message type -> the request it carries; every job type queues, reports and cancels alike."""


def _from_dict(cls: Any, data: dict[str, Any], required: tuple[str, ...]) -> Any:
    """``cls`` from a message: unknown keys and missing or empty ``required`` strings are errors."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known - {"type"})
    if unknown:
        raise ProtocolError("bad_request", f"unknown {cls.message_type} field(s): {', '.join(unknown)}")
    for name in required:
        if not isinstance(data.get(name), str) or not data[name]:
            raise ProtocolError("bad_request", f"{cls.message_type} needs a non-empty string '{name}'")
    request = cls(**{k: v for k, v in data.items() if k in known})
    request.validate()
    return request


def parse_overrides(items: list[str]) -> dict[str, str]:
    """``key=value`` method options from the CLI, the panel or a batch script, one parser for all;
    values stay strings, the backend converts each to its option's type."""
    overrides: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ProtocolError("bad_option", f"option {item!r} is not key=value (e.g. num_stages=1)")
        overrides[key.strip()] = value.strip()
    return overrides


def encode(message: dict[str, Any]) -> bytes:
    """One message -> one UTF-8 line. NaN/Inf are not JSON, so they are refused here."""
    if message.get("type") not in CLIENT_TYPES | SERVER_TYPES:
        raise ProtocolError("bad_type", f"unknown message type {message.get('type')!r}")
    return (json.dumps(message, allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")


def decode(line: bytes | str, allowed: frozenset[str]) -> dict[str, Any]:
    """Parse one line; raise ``ProtocolError`` for anything that is not an allowed message."""
    if isinstance(line, bytes):
        if len(line) > MAX_MESSAGE_BYTES:
            raise ProtocolError("too_large", f"message longer than {MAX_MESSAGE_BYTES} bytes")
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("bad_json", f"message is not UTF-8: {exc}") from None
    if len(line) > MAX_MESSAGE_BYTES:
        raise ProtocolError("too_large", f"message longer than {MAX_MESSAGE_BYTES} bytes")
    try:
        message = json.loads(line)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ProtocolError("bad_json", f"message is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ProtocolError("bad_json", "message must be a JSON object")
    kind = message.get("type")
    if kind not in allowed:
        raise ProtocolError("bad_type", f"unknown message type {kind!r}")
    return message


NAME_MAX_FALLBACK = 255
"""Longest file name, in bytes, where the file system cannot say (the common limit)."""


def name_max(folder: str | os.PathLike[str]) -> int:
    """The longest file name ``folder``'s file system accepts, in bytes (``os.fsencode`` length)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):  # no pathconf (Windows), or the system cannot say
        return NAME_MAX_FALLBACK


def _staging_stem(name: str) -> str:
    return ".rfi-" + hashlib.sha256(os.fsencode(name)).hexdigest()[:12]


def staging_name(name: str, kind: str) -> str:
    """A hidden sibling name for writing ``name`` atomically: ``.rfi-<sha256(name)[:12]>-<token>.<kind>``.

    At most 30 bytes plus ``kind`` whatever the length of ``name``, so a legal output name never
    fails for its staging name; the hash ties it to ``name``, so a later run recognises debris of
    its own making (``is_staging_name``) and only that.
    """
    return f"{_staging_stem(name)}-{secrets.token_hex(4)}.{kind}"


def is_staging_name(entry: str, name: str, kind: str) -> bool:
    """Whether ``entry`` is a name ``staging_name(name, kind)`` gives."""
    pattern = rf"{re.escape(_staging_stem(name))}-[0-9a-f]{{8}}\.{re.escape(kind)}"
    return re.fullmatch(pattern, entry) is not None


def error_message(code: str, message: str, hint: str = "", job: str | None = None) -> dict[str, Any]:
    """The one shape of an error event: a code for programs, one line and a hint for people."""
    out: dict[str, Any] = {"type": "error", "code": code, "message": message, "hint": hint}
    if job is not None:
        out["job"] = job
    return out
