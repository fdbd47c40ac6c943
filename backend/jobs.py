"""The one job runner shared by the protocol server and the CLI.

``run_job(request, emit, cancel)`` resolves the method, weights, preset options, device and
seed, loads the image and mask, runs the method with a progress callback (cancel checks, NaN
checks, ETA, throttled preview images) and writes the result atomically. ``run_mask`` makes only
the mask, through the same ``load_input`` call, so a preview shows exactly what a job would use.
Every failure a user can cause comes out as one ``(code, message, hint)`` through ``describe_error``.
"""

from __future__ import annotations

import math
import shutil
import sys
import tempfile
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from backend.devices import is_out_of_memory, release_memory, resolve_device
from backend.inputs import load_input
from backend.methods import method_class, options_class
from backend.methods.base import JobCancelled, MeshResult, Method
from backend.models import load_model
from backend.options import as_dict, parse_options
from backend.protocol import (
    JobRequest,
    JobSummary,
    MaskRequest,
    MaskSummary,
    ProgressMessage,
    ReprojectSummary,
    UserError,
)
from backend.results import check_output_dir, write_mask_result, write_result
from backend.weights import Registry, WeightsEntry

Emit = Callable[[dict[str, Any]], None]
PROGRESS_INTERVAL_S = 0.1
"""Progress events are throttled to ~10/s (first and last step of a stage always go out)."""
PREVIEW_INTERVAL_S = 1.0
MAX_CACHED_MODELS = 2


def describe_error(exc: BaseException) -> tuple[str, str, str]:
    """``(code, one-line message, hint)`` for any exception a job can raise."""
    if isinstance(exc, UserError):
        return exc.code, exc.message.splitlines()[0], exc.hint
    if isinstance(exc, JobCancelled):
        return "cancelled", "the job was cancelled", ""
    if is_out_of_memory(exc):
        return "out_of_memory", "the device ran out of memory", "use the fast preset, or --device cpu"
    first = (str(exc).strip().splitlines() or [""])[0][:300]
    if isinstance(exc, FloatingPointError):  # methods raise it when a loss or tensor turns NaN/Inf
        return "diverged", first, "try another seed, or lower the learning rate with --set"
    return "internal", f"{type(exc).__name__}: {first}", "this is a bug; the traceback is on stderr"


class ModelCache:
    """Loaded models by (weights id, sha256, device), most recent last; warm jobs skip loading.

    A model keeps the auxiliary weights of the store it was loaded from (read at its first job)."""

    def __init__(self, capacity: int = MAX_CACHED_MODELS) -> None:
        self.capacity = capacity
        self._models: OrderedDict[tuple[str, str, str], Method] = OrderedDict()

    def get(self, registry: Registry, entry: WeightsEntry, device: torch.device) -> Method:
        key = (entry.id, entry.sha256, str(device))
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        while len(self._models) >= self.capacity:
            self._models.popitem(last=False)
            release_memory(device)
        model = load_model(registry, entry, device)
        self._models[key] = model
        return model


class ProgressReporter:
    """The ``progress`` callback handed to ``Method.run``: cancel, NaN check, ETA, previews.

    ``eta`` in the events is the seconds left in the current stage, extrapolated from its pace.
    """

    def __init__(self, job: str, emit: Emit, cancel: threading.Event, previews: bool) -> None:
        self.job, self.emit, self.cancel, self.previews = job, emit, cancel, previews
        self.preview_dir: Path | None = None
        self.stage = ""
        self.stage_start = 0.0
        self.last_event = 0.0
        self.last_preview = 0.0
        self.losses: dict[str, list[float]] = {}

    def __call__(
        self, stage: str, step: int, total: int, loss: float | None = None, preview: np.ndarray | None = None
    ) -> None:
        if self.cancel.is_set():
            raise JobCancelled()
        now = time.monotonic()
        if stage != self.stage:
            self.stage, self.stage_start, self.last_event = stage, now, 0.0
        if loss is not None:
            loss = float(loss)
            if not math.isfinite(loss):
                raise UserError(
                    "diverged",
                    f"the optimisation diverged (loss {loss}) at {stage} step {step}",
                    "try another seed or lower the learning rate with --set",
                )
            self.losses.setdefault(stage, []).append(loss)
        boundary = step <= 1 or step >= total
        if not boundary and now - self.last_event < PROGRESS_INTERVAL_S:
            return
        self.last_event = now
        eta = max(0.0, (now - self.stage_start) / step * (total - step)) if step > 0 else None
        event = ProgressMessage(self.job, stage, step, total, loss, None if eta is None else round(eta, 2))
        if preview is not None and self.previews and now - self.last_preview >= PREVIEW_INTERVAL_S:
            self.last_preview = now
            try:
                event.preview = save_preview(preview, self._preview_folder())
            except OSError as exc:  # previews are a courtesy: a full temp disk must not end the job
                print(f"preview not saved: {exc}", file=sys.stderr)
        self.emit(event.to_message())

    def _preview_folder(self) -> Path:
        """The job's temporary preview folder, made at the first preview: a job that is killed
        before any preview (or never sends one) leaves nothing behind in the temp folder."""
        if self.preview_dir is None:
            self.preview_dir = Path(tempfile.mkdtemp(prefix="rfi-preview-"))
        return self.preview_dir

    def close(self) -> None:
        """Remove the preview folder (the client has the result by now, or never will)."""
        if self.preview_dir is not None:
            shutil.rmtree(self.preview_dir, ignore_errors=True)
            self.preview_dir = None


def save_preview(image: np.ndarray, folder: Path) -> str:
    """Write ``folder/preview.png`` atomically (tmp + rename) so a client never reads half a PNG."""
    path = folder / "preview.png"
    tmp = folder / "preview.tmp.png"
    Image.fromarray(np.ascontiguousarray(image, np.uint8), "RGB").save(tmp)
    tmp.replace(path)
    return str(path)


@dataclass
class JobOutcome:
    """What a finished job reports (``ResultMessage``): written files (name -> path) and a summary."""

    files: dict[str, str]
    summary: JobSummary | ReprojectSummary | MaskSummary


def run_job(
    request: JobRequest,
    emit: Emit,
    cancel: threading.Event | None = None,
    registry: Registry | None = None,
    cache: ModelCache | None = None,
) -> JobOutcome:
    """Run one reconstruction end to end; raises a user error, ``JobCancelled`` or a bug."""
    cancel = cancel or threading.Event()
    registry = registry or Registry()
    cache = cache or ModelCache()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    request.validate()
    try:
        method = method_class(request.method)
    except KeyError as exc:
        raise UserError("unknown_method", str(exc.args[0]), "use meshinversion or gan2shape") from None
    except (ImportError, AttributeError) as exc:
        raise UserError(
            "method_unavailable",
            f"method {request.method!r} cannot be loaded: {exc}",
            "run `python -m backend doctor`; the installation may be incomplete",
        ) from None
    if request.weights:
        entry = registry.find(request.weights)
    else:
        entry = registry.default_for(request.method, method.is_model_entry)
    if entry.method != request.method:
        raise UserError(
            "weights_mismatch",
            f"weights {entry.id!r} are for {entry.method}, not {request.method}",
            "pick weights of the same method (`python -m backend weights list`)",
        )
    options = parse_options(options_class(request.method), request.preset, request.overrides)
    device = resolve_device(request.device)
    check_output_dir(Path(request.output_dir), request.overwrite)

    reporter = ProgressReporter(request.id, emit, cancel, request.preview)
    try:
        reporter("prepare", 0, 2)
        image = load_input(request.image, request.mask, request.mask_path, request.box)
        timings["load_image"] = time.perf_counter() - start
        reporter("prepare", 1, 2)
        mark = time.perf_counter()
        model = cache.get(registry, entry, device)
        timings["load_model"] = time.perf_counter() - mark
        reporter("prepare", 2, 2)
        mark = time.perf_counter()
        result = _run_guarded(model, image, options, request, reporter, device)
        timings["run"] = time.perf_counter() - mark
    finally:
        reporter.close()
    if cancel.is_set():  # asked during the method's last step: nothing is written after a cancel
        raise JobCancelled()

    result.info.setdefault("losses", dict(reporter.losses))
    metadata = {
        "method": request.method,
        "weights": {
            "id": entry.id,
            "sha256": entry.sha256,
            "category": entry.category,
            "source": entry.source,
        },
        "preset": request.preset,
        "options": as_dict(options),
        "seed": request.seed,
        "device": str(device),
        "input": {
            "image": str(Path(request.image).absolute()),
            "mask": request.mask,
            "mask_resolved": image.mask_source,
            "box": request.box,
        },
        "notes": list(image.notes),
        "timings": timings,
    }
    files = write_result(
        result, request.output_dir, metadata, overwrite=request.overwrite, mask=image.mask_at_original_size()
    )
    summary = JobSummary(
        method=request.method,
        weights=entry.id,
        preset=request.preset,
        device=str(device),
        seconds=round(time.perf_counter() - start, 2),
        vertices=len(result.vertices),
        faces=len(result.faces),
        output_dir=str(Path(request.output_dir).absolute()),
    )
    return JobOutcome(files, summary)


def run_mask(request: MaskRequest, emit: Emit, cancel: threading.Event | None = None) -> JobOutcome:
    """Write the object mask a reconstruction with the same mask settings would use (``mask.png``,
    white = object, at the photo's size) and what made it; raises a user error or ``JobCancelled``."""
    cancel = cancel or threading.Event()
    start = time.perf_counter()
    request.validate()
    check_output_dir(Path(request.output_dir), request.overwrite)
    reporter = ProgressReporter(request.id, emit, cancel, previews=False)
    reporter("mask", 0, 1)
    image = load_input(request.image, request.mask, request.mask_path, request.box)
    mask = image.mask_at_original_size()
    reporter("mask", 1, 1)  # a cancel that arrived while the mask was made ends the job here
    coverage = round(float(np.count_nonzero(mask)) / mask.size, 4)
    height, width = mask.shape
    metadata = {
        "input": {
            "image": str(Path(request.image).absolute()),
            "mask": request.mask,
            "mask_resolved": image.mask_source,
            "box": request.box,
        },
        "coverage": coverage,
        "image_size": [width, height],
        "notes": list(image.notes),
        "timings": {"mask": time.perf_counter() - start},
    }
    files = write_mask_result(mask, request.output_dir, metadata, overwrite=request.overwrite)
    summary = MaskSummary(
        kind="mask",
        mask_source=image.mask_source,
        coverage=coverage,
        width=width,
        height=height,
        seconds=round(time.perf_counter() - start, 2),
        output_dir=str(Path(request.output_dir).absolute()),
    )
    return JobOutcome(files, summary)


def _run_guarded(
    model: Method,
    image: Any,
    options: Any,
    request: JobRequest,
    progress: ProgressReporter,
    device: torch.device,
) -> MeshResult:
    """``Method.run`` with out-of-memory or option-value failures turned into user errors. The seed is
    the method's to apply (its own generators); torch's and numpy's global generators are restored
    afterwards, so a job never changes what the next one draws."""
    numpy_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            return model.run(image, options, request.seed, progress)
    except Exception as exc:
        release_memory(device)
        if is_out_of_memory(exc):
            raise UserError(
                "out_of_memory",
                f"{device.type} ran out of memory during {progress.stage or 'the job'}",
                out_of_memory_hint(device),
            ) from None
        if isinstance(exc, ValueError):  # methods validate option values they were given
            log_traceback(exc)
            raise UserError(
                "method_failed",
                f"{request.method} stopped: {str(exc).splitlines()[0][:300]}",
                "check the --set options; if they are fine, this is a bug (traceback on stderr)",
            ) from None
        raise
    finally:
        np.random.set_state(numpy_state)


def out_of_memory_hint(device: torch.device) -> str:
    """What to try next: the CPU has more memory than most GPUs; on the CPU only smaller work helps."""
    if device.type == "cuda":
        return "use the fast preset, or --device cpu (slower, but not limited by GPU memory)"
    return "use the fast preset or a smaller render_size/batch with --set, or close other programs"


def log_traceback(exc: BaseException) -> None:
    """Full traceback to stderr for bugs; user errors need only their one line."""
    if not isinstance(exc, UserError | JobCancelled):
        traceback.print_exception(exc, file=sys.stderr)
