"""The one definition of the add-on <-> backend protocol (JSON lines over stdin/stdout).

Standard library only: the Blender add-on imports this very module (bundled inside the
extension) without torch, so both sides always agree on names and the version.

Every message is one JSON object on one line with a ``type`` field, and every one is defined
here with its fields. Client -> backend (``CLIENT_MESSAGES``): ``job`` (``JobRequest``: reconstruct
a photo), ``reproject`` (``ReprojectRequest``: bake a result's photo onto an edited mesh), ``mask``
(``MaskRequest``: only the object mask a reconstruction would use), ``cancel``, ``ping``,
``shutdown``. Backend -> client (``SERVER_MESSAGES``): ``hello`` (first line, once), ``accepted``,
``progress``, ``result``, ``error``, ``cancelled``, ``pong``, ``bye``; every job type reports through
the same events. Both sides build messages through these classes and the client reads them back
through ``from_message``, so neither can use a field the other never sends.
A change that an older peer cannot read bumps ``PROTOCOL_VERSION`` (2: the ``reproject`` job; 3: the
``mask`` job, which an older backend would refuse as an unknown message type; 4: ``hello`` lists
the published loss terms and whether their weights are there).

A user's mistake is a ``UserError`` (code, one line, hint) on both sides; an ``error`` event carries
exactly those three fields. The result folder a ``result`` event points to is defined in
``backend.result_format``.

It also holds the one file-name convention both sides follow when they write outputs atomically
(the backend's result folders, the batch script's ``.blend``/``.glb``/preview files).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any, ClassVar, Self, TypedDict

PROTOCOL_VERSION = 4
MAX_MESSAGE_BYTES = 1 << 20
"""Longest accepted line; longer input is an error, never buffered without bound."""


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
    these three fields (``ErrorMessage``)."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The message and its hint on one line, as a report bar or a terminal shows it."""
        return f"{self.message} ({self.hint})" if self.hint else self.message


class ProtocolError(UserError, ValueError):
    """A message or request that is not valid protocol; ``code`` is the machine-readable reason.

    A ``ValueError`` too: code that refuses bad values (a CLI argument, a message ``encode`` cannot
    write) catches these along with them."""

    def __init__(self, code: str, message: str, hint: str = "fix the request") -> None:
        super().__init__(code, message, hint)


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
            (self.preset in PRESETS, f"preset must be one of {', '.join(PRESETS)}"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}"),
            (_is_int(self.seed) and -SEED_LIMIT <= self.seed < SEED_LIMIT, "seed must be a 64-bit integer"),
            (isinstance(self.method, str), "method must be a string"),
            (self.weights is None or isinstance(self.weights, str), "weights must be a string id"),
            (isinstance(self.preview, bool), "preview must be true or false"),
            (isinstance(self.overrides, dict), "overrides must be an object"),
        ]
        for ok, message in [*_input_checks(self), *checks]:
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


def _input_checks(request: JobRequest | MaskRequest) -> list[tuple[bool, str]]:
    """The checks a reconstruction and a mask preview share: the photo, its mask source, the box,
    the output folder, the id; one definition, so a preview accepts exactly what a job does."""
    checks: list[tuple[bool, str]] = [
        (isinstance(request.id, str) and 0 < len(request.id) <= MAX_ID_LENGTH, "id must be a short string"),
        (request.mask in MASK_SOURCES, f"mask must be one of {', '.join(MASK_SOURCES)}"),
        (request.mask_path is None or isinstance(request.mask_path, str), "mask_path must be a string"),
        (isinstance(request.overwrite, bool), "overwrite must be true or false"),
        (request.mask != "file" or bool(request.mask_path), "mask 'file' needs mask_path"),
        (
            all(map(_is_file_name, (request.image, request.output_dir, request.mask_path or "."))),
            "paths must be file names (no NUL characters or unpaired surrogates)",
        ),
    ]
    if request.box is not None:
        ok = (
            isinstance(request.box, list)
            and len(request.box) == 4
            and all(map(_is_int, request.box))
            and request.box[2] > request.box[0]
            and request.box[3] > request.box[1]
        )
        checks.append((ok, "box must be [x0, y0, x1, y1] integers with x1 > x0 and y1 > y0"))
    return checks


@dataclass
class MaskRequest:
    """Only the object mask a reconstruction of ``image`` with the same ``mask``, ``mask_path`` and
    ``box`` would use, written to ``output_dir`` as ``mask.png`` and ``result.json``
    (``result_format.MaskDocument``): a preview to check, paint or replace before a long run."""

    image: str
    output_dir: str
    mask: str = "auto"
    mask_path: str | None = None
    box: list[int] | None = None
    overwrite: bool = False
    id: str = "job"

    message_type: ClassVar[str] = "mask"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MaskRequest:
        return _from_dict(cls, data, ("image", "output_dir"))

    def validate(self) -> None:
        for ok, message in _input_checks(self):
            if not ok:
                raise ProtocolError("bad_request", message)

    def to_message(self) -> dict[str, Any]:
        return {"type": self.message_type, **asdict(self)}


Request = JobRequest | ReprojectRequest | MaskRequest
REQUEST_TYPES: dict[str, type[JobRequest] | type[ReprojectRequest] | type[MaskRequest]] = {
    JobRequest.message_type: JobRequest,
    ReprojectRequest.message_type: ReprojectRequest,
    MaskRequest.message_type: MaskRequest,
}
"""Message type -> the request it carries; every job type queues, reports and cancels alike."""


@dataclass
class Message:
    """A protocol message with fixed fields: ``to_message`` is its wire form (``type`` first, then the
    fields in order, an optional field listed in ``omitted_when_none`` left out while ``None``) and
    ``from_message`` reads that form back, refusing unknown and missing fields."""

    message_type: ClassVar[str] = ""
    omitted_when_none: ClassVar[frozenset[str]] = frozenset()

    def to_message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"type": self.message_type}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is not None or item.name not in self.omitted_when_none:
                message[item.name] = value
        return message

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> Self:
        if message.get("type") != cls.message_type:
            raise ProtocolError("bad_type", f"{message.get('type')!r} is not a {cls.message_type} message")
        names = {item.name for item in fields(cls)}
        unknown = sorted(set(message) - names - {"type"})
        required = {
            item.name for item in fields(cls) if item.default is MISSING and item.default_factory is MISSING
        }
        missing = sorted(required - set(message))
        if unknown or missing:
            problem = f"unknown field(s) {', '.join(unknown)}" if unknown else f"no {', '.join(missing)}"
            raise ProtocolError("bad_message", f"{cls.message_type} message with {problem}")
        return cls(**{name: value for name, value in message.items() if name != "type"})


@dataclass
class CancelMessage(Message):
    """Cancel job ``job`` (running: at its next step; queued: at once); ``None``: the running job
    and every queued one."""

    job: str | None = None
    message_type: ClassVar[str] = "cancel"


@dataclass
class PingMessage(Message):
    """Ask for a ``pong``; ``id`` (any JSON value) comes back in it."""

    id: Any = None
    message_type: ClassVar[str] = "ping"


@dataclass
class ShutdownMessage(Message):
    """Cancel everything and exit after answering ``bye``."""

    message_type: ClassVar[str] = "shutdown"


CLIENT_MESSAGES: dict[str, type[Any]] = {
    **REQUEST_TYPES,
    **{cls.message_type: cls for cls in (CancelMessage, PingMessage, ShutdownMessage)},
}
"""Client -> backend: message type -> its definition. The backend reads ``id`` of a ping and ``job``
of a cancel and ignores any other field of those two (they must be answered whatever they hold)."""
CLIENT_TYPES = frozenset(CLIENT_MESSAGES)


class WeightsInfo(TypedDict):
    """One registered model as the handshake lists it."""

    id: str
    method: str
    category: str
    origin: str


class PublishedTerm(TypedDict):
    """A loss term of a published objective that runs only when its weights are imported."""

    method: str
    term: str
    detail: str
    on: bool
    import_command: str


@dataclass
class HelloMessage(Message):
    """The first line, once: versions, device, methods and weights, so the client checks it all at
    once. The device fields are ``backend.devices.describe_device``'s; ``warnings`` are one-liners
    about what the backend could not set up (e.g. an unreadable weights manifest)."""

    protocol_version: int
    backend_version: str
    torch_version: str
    python_version: str
    pid: int
    methods: list[str]
    job_policy: str
    max_message_bytes: int
    warnings: list[str]
    device: str
    cuda_available: bool
    cuda_name: str | None
    cuda_memory_gb: float | None
    threads: int
    weights: list[WeightsInfo]
    published_terms: list[PublishedTerm]
    message_type: ClassVar[str] = "hello"


@dataclass
class AcceptedMessage(Message):
    """Job ``job`` is queued; ``position`` 0 means it runs next (or now)."""

    job: str
    position: int
    message_type: ClassVar[str] = "accepted"


@dataclass
class ProgressMessage(Message):
    """Step ``step`` of ``total`` in ``stage`` of job ``job``. ``loss``: the step's loss, if any;
    ``eta``: seconds left in this stage (extrapolated from its pace; ``None`` before the first
    step); ``preview``: path of a fresh preview PNG (present only when there is a new one). There is
    no overall fraction: a client shows the stage's ``step / total``."""

    job: str
    stage: str
    step: int
    total: int
    loss: float | None = None
    eta: float | None = None
    preview: str | None = None
    message_type: ClassVar[str] = "progress"
    omitted_when_none: ClassVar[frozenset[str]] = frozenset({"preview"})


class JobSummary(TypedDict):
    """A reconstruction's ``result`` summary, for one line in a report."""

    method: str
    weights: str
    preset: str
    device: str
    seconds: float
    vertices: int
    faces: int
    output_dir: str


class ReprojectSummary(TypedDict):
    """A re-projection's ``result`` summary; ``seen_fraction``: share of the texture from the photo."""

    kind: str
    source: str
    seconds: float
    vertices: int
    faces: int
    seen_fraction: float
    output_dir: str


class MaskSummary(TypedDict):
    """A mask preview's ``result`` summary: the source that made the mask (``auto`` resolved), the
    share of the photo it covers, and the photo's size in pixels."""

    kind: str
    mask_source: str
    coverage: float
    width: int
    height: int
    seconds: float
    output_dir: str


@dataclass
class ResultMessage(Message):
    """Job ``job`` finished: ``files`` maps each written file name to its path (the result folder's
    names, ``backend.result_format``); ``summary`` is a ``JobSummary``, ``ReprojectSummary`` or
    ``MaskSummary``."""

    job: str
    files: dict[str, str]
    summary: JobSummary | ReprojectSummary | MaskSummary
    message_type: ClassVar[str] = "result"


@dataclass
class ErrorMessage(Message):
    """A ``UserError`` (or a bug, code ``internal``) as an event: a code for programs, one line and a
    hint for people; ``job`` names the job it ended (absent for a message that was refused)."""

    code: str
    message: str
    hint: str = ""
    job: str | None = None
    message_type: ClassVar[str] = "error"
    omitted_when_none: ClassVar[frozenset[str]] = frozenset({"job"})


@dataclass
class CancelledMessage(Message):
    """Job ``job`` was cancelled; nothing of it was written."""

    job: str
    message_type: ClassVar[str] = "cancelled"


@dataclass
class PongMessage(Message):
    """The answer to a ping: its ``id``, the running job's id (``busy``) and how many are queued."""

    id: Any
    busy: str | None
    queued: int
    message_type: ClassVar[str] = "pong"


@dataclass
class ByeMessage(Message):
    """The last line after a ``shutdown``."""

    message_type: ClassVar[str] = "bye"


SERVER_MESSAGES: dict[str, type[Message]] = {
    cls.message_type: cls
    for cls in (
        HelloMessage, AcceptedMessage, ProgressMessage, ResultMessage, ErrorMessage, CancelledMessage,
        PongMessage, ByeMessage,
    )
}  # fmt: skip
"""Backend -> client: message type -> its definition; every line the backend writes is one of these."""
SERVER_TYPES = frozenset(SERVER_MESSAGES)


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

