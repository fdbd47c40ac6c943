"""Operators: Reconstruct from Image, Reconstruct Again, Preview Mask and Re-project Photo (modal in the
UI, blocking in background mode), Show Result, backend setup, check and stop.

Modal pattern: a window-manager timer wakes ``modal`` a few times a second; it drains the
client's message queue (filled by the reader thread), updates the progress shown in the panel
and, once the job is done, imports the result. Nothing but this main-thread code touches bpy.
"""

from __future__ import annotations

import time
from pathlib import Path

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from . import api, catalogue, history, importer, job_request, mask_preview, properties, reproject, session
from .backend_env import ENV_DIR_NAME, SETUP_LOG_NAME, EnvironmentSetup
from .client import JobStatus, UserError, log_tail

TIMER_S = 0.2
ALIVE_S = 2.0
"""A modal operator that has not ticked for this long is gone (e.g. dropped by a file load)."""
_cancel_requested = False
"""Set by pressing the button again while a job runs; read by the running modal operator."""
_last_tick = 0.0


def redraw_panels(context: bpy.types.Context) -> None:
    for window in context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in ("VIEW_3D", "IMAGE_EDITOR", "PREFERENCES"):
                area.tag_redraw()


def job_running(context: bpy.types.Context) -> bool:
    """A job of this session is running and its modal operator still ticks."""
    return context.window_manager.rfi_runtime.running and time.monotonic() - _last_tick < ALIVE_S


class ModalJob:
    """What the job operators share: submit, then a timer drains the client's messages, shows progress
    in the panel and ends with ``complete`` (Esc, or pressing a job button again, cancels). Background
    mode runs the same job blocking in ``execute``. Subclasses give ``submit`` (raises
    ``UserError``), ``complete`` (the INFO line; raises ``UserError``) and ``cleanup``."""

    _timer = None
    _settings = None
    _label = ""
    """What progress lines in background mode are about (the photo's or the object's name)."""
    _warnings: tuple[str, ...] = ()
    """The result's warnings, reported after ``complete``'s INFO line so the status bar ends on them."""

    def submit(self, context: bpy.types.Context) -> None:
        raise NotImplementedError

    def complete(self, context: bpy.types.Context, job: JobStatus) -> str:
        raise NotImplementedError

    def cleanup(self) -> None:
        """Remove what the job needed only while it ran."""

    def keep_warnings(self, obj: bpy.types.Object) -> None:
        """The result's warnings (such as a front and back the photo hardly tells apart), to report."""
        self._warnings = tuple(f"'{obj.name}': {line}" for line in importer.result_lines(obj, "warnings"))

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        global _cancel_requested
        if job_running(context):
            _cancel_requested = True  # the same button cancels the running job
            return {"CANCELLED"}
        if bpy.app.background:
            return self.execute(context)
        return self.start_modal(context)

    def start_modal(self, context: bpy.types.Context) -> set[str]:
        """Submit, then let the timer drive the job (the UI's way; ``execute`` blocks instead)."""
        global _cancel_requested, _last_tick
        runtime = context.window_manager.rfi_runtime
        _cancel_requested = False
        try:
            self.submit(context)
        except UserError as error:
            self.report({"ERROR"}, error.one_line())
            return {"CANCELLED"}
        _last_tick = time.monotonic()
        runtime.running, runtime.progress, runtime.status = True, 0.0, "Starting backend…"
        self._timer = context.window_manager.event_timer_add(TIMER_S, window=context.window)
        context.window_manager.modal_handler_add(self)
        redraw_panels(context)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        global _cancel_requested, _last_tick
        _last_tick = time.monotonic()
        client = session.current_client()
        if client is None or client.job is None:  # the backend was shut down under us (file load)
            return self._end(context, {"CANCELLED"})
        if (event.type == "ESC" and event.value == "PRESS") or _cancel_requested:
            _cancel_requested = False
            client.cancel()
        if event.type != "TIMER" and event.type != "ESC":
            return {"PASS_THROUGH"}
        job = client.poll()
        session.remember_handshake(client.hello)
        runtime = context.window_manager.rfi_runtime
        runtime.progress, runtime.status = job.fraction, job.stage_text()
        redraw_panels(context)
        if not job.finished:
            return {"RUNNING_MODAL"}
        return self._end(context, self._complete_reported(context, job))

    def execute(self, context: bpy.types.Context) -> set[str]:
        """Background mode (and scripts): the same job, blocking, with progress printed to stdout."""
        try:
            self.submit(context)
        except UserError as error:
            self.report({"ERROR"}, error.one_line())
            return {"CANCELLED"}
        try:
            client = session.client(self._settings)
            job = client.wait(api.ProgressPrinter(self._label))
            session.remember_handshake(client.hello)
            return self._complete_reported(context, job)
        finally:
            self.cleanup()

    def _complete_reported(self, context: bpy.types.Context, job: JobStatus) -> set[str]:
        """``complete`` with its outcome reported in one line, then the result's warnings."""
        try:
            message = self.complete(context, job)
        except UserError as error:
            self.report({"INFO" if error.code == "cancelled" else "ERROR"}, error.one_line())
            return {"CANCELLED"}
        except (OSError, RuntimeError) as error:  # Blender refused the data: still end cleanly
            self.report({"ERROR"}, f"{self.bl_label}: {error} (the result is in {job.output_dir})")
            return {"CANCELLED"}
        finally:
            session.job_finished(self._settings)
        self.report({"INFO"}, message)
        for warning in self._warnings:
            self.report({"WARNING"}, warning)
        return {"FINISHED"}

    def _end(self, context: bpy.types.Context, result: set[str]) -> set[str]:
        global _cancel_requested
        _cancel_requested = False
        if self._timer is not None:
            context.window_manager.event_timer_remove(self._timer)
            self._timer = None
        context.window_manager.rfi_runtime.running = False
        self.cleanup()
        redraw_panels(context)
        return result


class RFI_OT_reconstruct(ModalJob, bpy.types.Operator):
    """Reconstruct a textured mesh from the chosen photo (press again or Esc to cancel)"""

    bl_idname = "rfi.reconstruct"
    bl_label = "Reconstruct from Image"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 -- Blender reads this class attribute

    filepath: StringProperty(
        name="File",
        subtype="FILE_PATH",
        options={"SKIP_SAVE"},
        description="Image file to use instead of the panel's image source",
    )

    _request = None
    _options = None

    def submit(self, context: bpy.types.Context) -> None:
        self._request, self._options = job_request.build_request(context, self.filepath)
        self._label = self._options.name
        self._settings = session.backend_settings()
        session.client(self._settings).submit(self._request)

    def complete(self, context: bpy.types.Context, job: JobStatus) -> str:
        obj = api.finish(context, job, self._request, self._options, keep=self._settings.keep_results)
        self.keep_warnings(obj)
        return f"Reconstructed '{obj.name}' in {obj['rfi_timings']['total_s']:.1f} s"


class RFI_OT_reconstruct_again(ModalJob, bpy.types.Operator):
    """Reconstruct this result's photo again with the same mask and options, another seed or preset,
    as a new object (the result's own object stays as it is); press again or Esc to cancel"""

    bl_idname = "rfi.reconstruct_again"
    bl_label = "Reconstruct Again"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 -- Blender reads this class attribute

    result: StringProperty(name="Result", options={"HIDDEN", "SKIP_SAVE"}, description="Its result folder")
    preset: EnumProperty(name="Preset", items=properties.PRESET_ITEMS, options={"SKIP_SAVE"})
    seed: IntProperty(name="Seed", min=0, options={"SKIP_SAVE"}, description="Default: one no run used yet")
    turn: BoolProperty(
        name="Turn Front and Back", options={"SKIP_SAVE"},
        description="Start from the other side of the object, for a result that faces the wrong way",
    )  # fmt: skip

    _request = None
    _options = None

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if job_running(context) or bpy.app.background:
            return super().invoke(context, event)
        try:
            self._choose_defaults()
        except UserError as error:
            self.report({"ERROR"}, error.one_line())
            return {"CANCELLED"}
        return context.window_manager.invoke_props_dialog(self)

    def draw(self, context: bpy.types.Context) -> None:
        """Also redrawn after the job (Adjust Last Operation), when the entry may have left the list."""
        layout = self.layout
        layout.prop(self, "preset")
        layout.prop(self, "seed")
        listed = history.listed(self.result)
        if listed is not None and catalogue.turnable(listed.request.method):
            layout.prop(self, "turn")

    def execute(self, context: bpy.types.Context) -> set[str]:
        """After the dialog in the UI (then modal, like the panel's button), blocking in background mode."""
        if bpy.app.background or context.window is None:
            return super().execute(context)
        return self.start_modal(context)

    def _choose_defaults(self) -> history.Entry:
        """The listed result; the same preset and the next seed unless the caller chose."""
        listed = history.find(self.result)
        if not self.properties.is_property_set("preset"):
            self.preset = listed.request.preset
        if not self.properties.is_property_set("seed"):
            self.seed = history.next_seed(listed)
        return listed

    def submit(self, context: bpy.types.Context) -> None:
        listed = self._choose_defaults()
        turn = self.turn and catalogue.turnable(listed.request.method)
        self._request = history.again_request(listed, self.preset, self.seed, turn)
        self._options = listed.options
        self._label = self._options.name
        self._settings = session.backend_settings()
        session.client(self._settings).submit(self._request)

    def complete(self, context: bpy.types.Context, job: JobStatus) -> str:
        obj = api.finish(context, job, self._request, self._options, keep=self._settings.keep_results)
        self.keep_warnings(obj)
        return (
            f"Reconstructed '{obj.name}' again ({self._request.preset}, seed {self._request.seed}) "
            f"in {obj['rfi_timings']['total_s']:.1f} s"
        )


class RFI_OT_show_result(bpy.types.Operator):
    """Select this result's object, make it active and frame it in the 3D Viewports"""

    bl_idname = "rfi.show_result"
    bl_label = "Show Result"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 -- Blender reads this class attribute

    result: StringProperty(name="Result", options={"HIDDEN", "SKIP_SAVE"}, description="Its result folder")

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            listed = history.find(self.result)
        except UserError as error:
            self.report({"ERROR"}, error.one_line())
            return {"CANCELLED"}
        obj = history.entry_object(listed)
        if obj is None or context.view_layer.objects.get(obj.name) is None:
            self.report({"ERROR"}, f"'{listed.object_name}' is deleted or not in this view layer")
            return {"CANCELLED"}
        for selected in context.selected_objects:
            selected.select_set(False)
        obj.select_set(True)
        context.view_layer.objects.active = obj
        frame_selected(context)
        return {"FINISHED"}


def frame_selected(context: bpy.types.Context) -> None:
    """View Selected in every 3D Viewport of the window (none in background mode)."""
    screen = context.window.screen if context.window else None
    for area in screen.areas if screen else ():
        region = next((r for r in area.regions if r.type == "WINDOW"), None)
        if area.type == "VIEW_3D" and region is not None:
            with context.temp_override(area=area, region=region):
                bpy.ops.view3d.view_selected()


class RFI_OT_preview_mask(ModalJob, bpy.types.Operator):
    """Compute the object mask the reconstruction would use and make it the Mask Image, to check and
    paint before a long run (white = object); press again or Esc to cancel"""

    bl_idname = "rfi.preview_mask"
    bl_label = "Preview Mask"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 -- Blender reads this class attribute

    _request = None
    _photo_name = ""
    _photo_image = ""
    """The photo's image datablock, when the photo is one (its Image Editor then shows the mask)."""

    def submit(self, context: bpy.types.Context) -> None:
        self._request, self._photo_name = mask_preview.build_request(context)
        photo = mask_preview.photo_image(context)
        self._photo_image = photo.name if photo is not None else ""
        self._label = mask_preview.mask_name(self._photo_name)
        self._settings = session.backend_settings()
        session.client(self._settings).submit(self._request)

    def complete(self, context: bpy.types.Context, job: JobStatus) -> str:
        if job.state == "cancelled":
            raise UserError("cancelled", "mask preview cancelled", "")
        if job.state != "done":
            raise job.error or UserError("failed", f"mask preview ended as {job.state}", "")
        output = Path(self._request.output_dir)
        photo = bpy.data.images.get(self._photo_image) if self._photo_image else None
        image = mask_preview.apply_result(context, output, self._photo_name, photo, self._request.image)
        if not self._settings.keep_results:
            mask_preview.discard(output)
        summary = job.result.summary if job.result else {}
        return (
            f"Mask '{image.name}' ({summary.get('mask_source', '?')}, "
            f"{100 * summary.get('coverage', 0.0):.0f} % of the photo): paint it, then Reconstruct"
        )


class RFI_OT_reproject_photo(ModalJob, bpy.types.Operator):
    """Bake the photo again onto the active reconstruction as it is now (edited, remeshed, sculpted):
    the texture the camera sees is replaced, the rest keeps its texture; Ctrl+Z restores the old one"""

    bl_idname = "rfi.reproject_photo"
    bl_label = "Re-project Photo"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 -- Blender reads this class attribute

    _request = None
    _staging = None
    _object_name = ""

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not reproject.is_reconstruction(context.active_object):
            cls.poll_message_set("The active object was not reconstructed from a photo")
            return False
        return True

    def submit(self, context: bpy.types.Context) -> None:
        obj = context.active_object
        self._object_name = self._label = obj.name
        self._request, self._staging = reproject.build_request(context, obj)
        self._settings = session.backend_settings()
        try:
            session.client(self._settings).submit(self._request)
        except UserError:
            self.cleanup()
            raise

    def complete(self, context: bpy.types.Context, job: JobStatus) -> str:
        if job.state == "cancelled":
            raise UserError("cancelled", "re-projection cancelled", "")
        if job.state != "done":
            raise job.error or UserError("failed", f"re-projection ended as {job.state}", "")
        obj = bpy.data.objects.get(self._object_name)
        if obj is None:
            raise UserError("object_gone", f"'{self._object_name}' was deleted while re-projecting", "")
        output = Path(self._request.output_dir)
        reproject.apply_result(obj, output)
        if not self._settings.keep_results:
            reproject.discard(output)
        seen = job.result.summary.get("seen_fraction", 0.0) if job.result else 0.0
        return f"Re-projected the photo onto '{obj.name}' ({100 * seen:.0f} % of the texture from the photo)"

    def cleanup(self) -> None:
        if self._staging is not None:
            reproject.discard(self._staging)
            self._staging = None


class RFI_OT_check_backend(bpy.types.Operator):
    """Start the backend if needed and show its handshake: torch, device, GPU, weights"""

    bl_idname = "rfi.check_backend"
    bl_label = "Check Backend"

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            hello = session.client().ensure_started()
        except UserError as error:
            self.report({"ERROR"}, error.one_line())
            return {"CANCELLED"}
        session.remember_handshake(hello)
        self.report({"INFO"}, handshake_summary(hello))
        redraw_panels(context)
        return {"FINISHED"}


def handshake_summary(hello: dict) -> str:
    """One line: backend and torch versions, device (GPU name and memory), weights found."""
    device = str(hello.get("device", "?"))
    if hello.get("cuda_name"):
        memory = hello.get("cuda_memory_gb")
        device += f" ({hello['cuda_name']}" + (f", {memory} GB" if memory else "") + ")"
    return (
        f"Backend {hello.get('backend_version', '?')}, torch {hello.get('torch_version', '?')}, {device}, "
        f"{len(hello.get('weights') or [])} weights found"
    )


class RFI_OT_stop_backend(bpy.types.Operator):
    """Stop the backend process now (frees its memory; the next job starts it again)"""

    bl_idname = "rfi.stop_backend"
    bl_label = "Stop Backend"

    def execute(self, context: bpy.types.Context) -> set[str]:
        session.shutdown()
        context.window_manager.rfi_runtime.running = False
        return {"FINISHED"}


class RFI_OT_setup_backend(bpy.types.Operator):
    """Create the backend's own Python environment and install its pinned packages (downloads ~1 GB)"""

    bl_idname = "rfi.setup_backend"
    bl_label = "Set Up Backend"

    _timer = None

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        if not bpy.app.online_access:
            cls.poll_message_set("Allow Online Access in Preferences > System first")
            return False
        return session.setup_run is None or session.setup_run.finished

    def _start(self) -> EnvironmentSetup:
        settings = session.backend_settings()
        requirements = session.ADDON_DIR / "requirements.txt"
        if not requirements.is_file():
            requirements = session.ADDON_DIR.parent / "requirements.txt"
        no_deps = requirements.with_name("requirements-nodeps.txt")
        session.setup_run = EnvironmentSetup(
            session.user_dir() / ENV_DIR_NAME,
            requirements,
            session.user_dir() / SETUP_LOG_NAME,
            extra_pip_args=settings.pip_args,
            no_deps=no_deps if no_deps.is_file() else None,
        ).start()
        return session.setup_run

    def execute(self, context: bpy.types.Context) -> set[str]:
        run = self._start()
        run.join()
        return self._report(run)

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if bpy.app.background:
            return self.execute(context)
        self._start()
        self._timer = context.window_manager.event_timer_add(0.5, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> set[str]:
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        redraw_panels(context)
        run = session.setup_run
        if run is None or not run.finished:
            return {"RUNNING_MODAL"}
        context.window_manager.event_timer_remove(self._timer)
        return self._report(run)

    def _report(self, run: EnvironmentSetup) -> set[str]:
        if run.error:
            self.report({"ERROR"}, f"{run.error}: {log_tail(run.log_path)} (full log: {run.log_path})")
            return {"CANCELLED"}
        self.report({"INFO"}, f"Backend environment ready: {run.python}")
        session.shutdown()  # the next job uses the new environment
        return {"FINISHED"}


CLASSES = (
    RFI_OT_reconstruct,
    RFI_OT_reconstruct_again,
    RFI_OT_show_result,
    RFI_OT_preview_mask,
    RFI_OT_reproject_photo,
    RFI_OT_check_backend,
    RFI_OT_stop_backend,
    RFI_OT_setup_backend,
)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
