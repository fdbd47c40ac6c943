"""Add-on preferences: which Python runs the backend, where user weights live, lifecycle options."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from . import session
from .backend_env import find_backend_python
from .client import log_tail
from .operators import handshake_summary


class RFI_Preferences(bpy.types.AddonPreferences):
    bl_idname = session.ADDON_PACKAGE

    backend_python: StringProperty(
        name="Backend Python",
        subtype="FILE_PATH",
        description="Python with torch that runs the backend; empty = auto-detect (the environment made by "
        "'Set up backend', or a source checkout's .venv)",
    )
    weights_dir: StringProperty(
        name="User Weights",
        subtype="DIR_PATH",
        description="Folder of imported official checkpoints and your own trained models (empty = default)",
    )
    device: EnumProperty(
        name="Device",
        items=[("auto", "Auto", "CUDA when available, else CPU"), ("cpu", "CPU", ""), ("cuda", "CUDA", "")],
        default="auto",
    )
    keep_alive: BoolProperty(
        name="Keep Backend Running",
        default=True,
        description="Keep the model loaded between jobs (faster); off frees its memory after each job",
    )
    keep_results: BoolProperty(
        name="Keep Result Files",
        default=False,
        description="Keep mesh.npz, texture.png, mesh.glb and previews under the add-on's user folder "
        "(result.json and mask.png always stay: Re-project Photo reads them)",
    )
    watchdog_s: IntProperty(
        name="Watchdog (s)",
        default=600,
        min=10,
        description="Stop a backend that reports nothing for this long during a job",
    )
    pip_args: StringProperty(
        name="Extra pip Arguments",
        description="Added to pip during setup, e.g. --index-url https://download.pytorch.org/whl/cu128 "
        "for CUDA builds of torch, or --no-index --find-links DIR for an offline install",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        col = layout.column()
        col.prop(self, "backend_python")
        found = find_backend_python(session.backend_settings().python, session.ADDON_DIR, session.user_dir())
        col.label(
            text=f"Using: {found}" if found else "No backend Python found: set one up below",
            icon="CHECKMARK" if found and found.is_file() else "ERROR",
        )
        col.prop(self, "weights_dir")
        col.prop(self, "device")
        row = col.row()
        row.prop(self, "keep_alive")
        row.prop(self, "keep_results")
        col.prop(self, "watchdog_s")
        col.prop(self, "pip_args")

        row = layout.row()
        row.operator("rfi.setup_backend", icon="IMPORT")
        row.operator("rfi.check_backend", icon="PLUGIN")
        row.operator("rfi.stop_backend", icon="CANCEL")
        if not bpy.app.online_access:
            layout.label(
                text="Setup downloads packages: allow Online Access in Preferences > System", icon="INFO"
            )
        self.draw_setup_state(layout)
        if session.handshake:
            box = layout.box()
            box.label(text=handshake_summary(session.handshake), icon="INFO")
            for warning in session.handshake.get("warnings") or []:
                box.label(text=str(warning), icon="ERROR")
            for entry in session.handshake.get("weights") or []:
                box.label(text=f"{entry.get('id')}: {entry.get('method')}, {entry.get('category')}")

    @staticmethod
    def draw_setup_state(layout: bpy.types.UILayout) -> None:
        run = session.setup_run
        if run is None:
            return
        box = layout.box()
        if run.error:
            box.label(text=run.error, icon="ERROR")
            box.label(text=log_tail(run.log_path)[:200])
            box.label(text=f"Log: {run.log_path}")
        elif run.finished:
            box.label(text=f"Backend environment ready: {run.python}", icon="CHECKMARK")
        else:
            box.label(text=f"{run.step}… (log: {run.log_path})", icon="SORTTIME")


def register() -> None:
    bpy.utils.register_class(RFI_Preferences)


def unregister() -> None:
    bpy.utils.unregister_class(RFI_Preferences)
