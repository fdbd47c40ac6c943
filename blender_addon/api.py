"""The Python API for scripts and batch runs: ``reconstruct(image, **options) -> Object``.

It blocks until the object is in the scene. That is the only way in background mode, where
Blender never runs timers while a script holds the main thread; the interactive operator uses
the same request, client and importer, only driven by a modal timer instead of a loop.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bpy

from . import catalogue, history, importer, job_request, reproject, session
from .client import JobStatus, UserError, protocol


def reconstruct(
    image: str | Path | bpy.types.Image,
    *,
    name: str | None = None,
    method: str = catalogue.JOB_DEFAULTS["method"],
    weights: str | None = None,
    preset: str = catalogue.JOB_DEFAULTS["preset"],
    seed: int = catalogue.JOB_DEFAULTS["seed"],
    mask: str = catalogue.JOB_DEFAULTS["mask"],
    mask_path: str | None = None,
    device: str | None = None,
    overrides: dict[str, Any] | None = None,
    faces: int | None = None,
    quads: bool = False,
    scale: str | None = None,
    size_m: float | None = None,
    aligned_camera: bool = False,
    mirror: bool = False,
    shade_smooth: bool = True,
    texture_size: int = 0,
    output_dir: str | Path | None = None,
    overwrite: bool = False,
    backend_python: str | None = None,
    context: bpy.types.Context | None = None,
    on_progress: Callable[[JobStatus], None] | None = None,
) -> bpy.types.Object:
    """Reconstruct one photo into a textured mesh object at the 3D cursor (selected and active).

    ``output_dir`` keeps the backend's files (mesh.npz, texture.png, result.json, mesh.glb,
    preview.png) there; by default they go to a folder under the add-on's user folder that keeps only
    result.json and mask.png after import (what Re-project Photo reads) unless the preference says
    to keep results. ``faces``: about this many triangles in the mesh (the ``faces`` option; None: the
    method's own mesh); ``quads``: the mesh as quads where it has them (the ``quads`` option);
    ``scale`` (``metres`` or ``unit``) and ``size_m`` (the length in metres): the placement options
    (None: the method's defaults, the category's typical size). Raises
    ``UserError`` (``one_line()`` is the message with its hint) on any failure.
    """
    context = context or bpy.context
    if isinstance(image, bpy.types.Image):
        photo, default_name = job_request.image_file(image), Path(image.name).stem or image.name
    else:
        photo = Path(image).expanduser().resolve()
        default_name = photo.stem
    name = name or default_name
    job_request.check_option_names(method, overrides or {})
    settings = session.backend_settings()
    if backend_python:
        settings = dataclasses.replace(settings, python=backend_python)
    keep = output_dir is not None or settings.keep_results
    request = protocol.JobRequest(
        image=str(photo),
        output_dir=str(Path(output_dir).resolve() if output_dir else job_request.output_dir(name)),
        method=method,
        weights=weights,
        preset=preset,
        device=device or settings.device,
        seed=seed,
        mask=mask,
        mask_path=str(mask_path) if mask_path else None,
        overrides=catalogue.with_mesh_options(
            overrides or {}, faces=faces, quads=quads, scale=scale, size_m=size_m
        ),
        overwrite=overwrite,
    )
    options = job_request.ImportOptions(
        name=name,
        photo=str(photo),
        shade_smooth=shade_smooth,
        texture_size=texture_size,
        aligned_camera=aligned_camera,
        mirror=mirror,
    )
    client = session.client(settings)
    job = client.submit(request)
    job = client.wait(on_progress or ProgressPrinter(name))
    session.remember_handshake(client.hello)
    try:
        return finish(context, job, request, options, keep=keep)
    finally:
        session.job_finished(settings)


def finish(
    context: bpy.types.Context,
    job: JobStatus,
    request: protocol.JobRequest,
    options: job_request.ImportOptions,
    *,
    keep: bool,
) -> bpy.types.Object:
    """Import a finished job, or raise its error, and list it in the session's results; the result
    folder goes unless it should be kept, all but what Re-project Photo reads (the object records the
    folder)."""
    if job.state == "cancelled":
        raise UserError("cancelled", "reconstruction cancelled", "")
    if job.state != "done":
        raise job.error or UserError("failed", f"reconstruction ended as {job.state}", "")
    started = time.perf_counter()
    try:
        obj = importer.import_result(
            request.output_dir,
            options.name,
            context=context,
            shade_smooth=options.shade_smooth,
            texture_size=options.texture_size,
            aligned_camera=options.aligned_camera,
            mirror=options.mirror,
            photo=options.photo,
            properties={"image": options.photo, "result": str(Path(request.output_dir).absolute())},
        )
    except importer.UnreadableResult as exc:
        raise UserError(
            "bad_result", str(exc), "the backend wrote an unreadable result; see its log"
        ) from None
    timings = dict(obj.get(importer.PROPERTY_PREFIX + "timings", {}))
    timings["blender_import_s"] = time.perf_counter() - started
    timings["total_s"] = time.monotonic() - job.started
    obj[importer.PROPERTY_PREFIX + "timings"] = timings
    history.add(obj, request, options)
    if not keep:
        reproject.discard(Path(request.output_dir), reproject.REPROJECT_FILES)
    return obj


class ProgressPrinter:
    """Background-mode progress: a line on stdout when the stage or a tenth of it changes."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.last: tuple[str, int] | None = None
        self.window_manager = bpy.context.window_manager
        self.window_manager.progress_begin(0, 1000)

    def __call__(self, job: JobStatus) -> None:
        key = (job.stage, int(job.fraction * 10))
        self.window_manager.progress_update(int(job.fraction * 1000))
        if key != self.last:
            self.last = key
            print(f"[reconstruct] {self.label}: {job.stage_text()} ({job.fraction:.0%})", flush=True)
        if job.finished:
            self.window_manager.progress_end()
