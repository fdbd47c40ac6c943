"""The "Reconstruct" sidebar tab, identical in the 3D Viewport and the Image Editor: the settings and
job buttons, and below them this session's results."""

from __future__ import annotations

import bpy

from . import history, properties, reproject, session


def draw_panel(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    settings = context.scene.rfi_settings
    runtime = context.window_manager.rfi_runtime
    layout.use_property_split = True
    layout.use_property_decorate = False

    col = layout.column()
    col.enabled = not runtime.running
    col.prop(settings, "image_source")
    if settings.image_source == "FILE":
        col.prop(settings, "filepath")
    col.prop(settings, "mask_source")
    if settings.mask_source == "file":
        col.template_ID(settings, "mask_image", open="image.open")
    col.separator()
    col.prop(settings, "method")
    col.prop(settings, "weights")
    if session.handshake is None:
        col.label(text="Check Backend to list the trained models", icon="INFO")
    for term in session.terms_off(settings.method):
        col.label(text=f"{term['term']} off: its weights are not imported", icon="INFO")
    col.prop(settings, "preset")
    col.prop(settings, "seed")
    col.prop(settings, "faces")
    col.prop(settings, "quads")
    col.prop(settings, "scale")
    if settings.scale == "metres":
        col.prop(settings, "size_m")
    col.prop(settings, "overrides")
    col.separator()
    col.prop(settings, "aligned_camera")
    col.prop(settings, "mirror")
    col.prop(settings, "shade_smooth")
    col.prop(settings, "texture_size")

    layout.separator()
    if runtime.running:
        layout.progress(factor=runtime.progress, type="BAR", text=runtime.status)
        layout.operator("rfi.reconstruct", text="Cancel", icon="CANCEL")
    else:
        layout.operator("rfi.reconstruct", icon="MESH_MONKEY")
        layout.operator("rfi.preview_mask", icon="MOD_MASK")
        if reproject.is_reconstruction(context.active_object):
            layout.operator("rfi.reproject_photo", icon="IMAGE_REFERENCE")
    row = layout.row(align=True)
    row.operator("rfi.check_backend", text="Check", icon="PLUGIN")
    row.operator("rfi.stop_backend", text="Stop", icon="PAUSE")


def draw_results(layout: bpy.types.UILayout, context: bpy.types.Context) -> None:
    """One box per result of this session, newest first: thumbnail, method, preset, seed, wall time,
    Show (select and frame its object, while it exists) and Reconstruct Again."""
    running = context.window_manager.rfi_runtime.running
    for listed in history.entries:
        obj = history.entry_object(listed)
        request = listed.request
        row = layout.box().row()
        row.template_icon(icon_value=history.icon_id(listed), scale=3.0)
        col = row.column(align=True)
        col.label(text=obj.name if obj is not None else f"{listed.object_name} (deleted)")
        method = properties.METHOD_LABELS.get(request.method, (request.method,))[0]
        preset = properties.PRESET_LABELS.get(request.preset, (request.preset,))[0]
        col.label(text=f"{method}, {preset}, seed {request.seed}")
        col.label(text=f"{listed.seconds:.1f} s", icon="TIME")
        buttons = col.row(align=True)
        show = buttons.row(align=True)
        show.enabled = obj is not None
        show.operator("rfi.show_result", text="Show", icon="RESTRICT_SELECT_OFF").result = listed.result
        again = buttons.row(align=True)
        again.enabled = not running
        again.operator("rfi.reconstruct_again", text="Again", icon="FILE_REFRESH").result = listed.result


class ReconstructPanel:
    """The panel's contents, shown in the sidebar of each editor a subclass names."""

    bl_label = "Reconstruct from Image"
    bl_region_type = "UI"
    bl_category = "Reconstruct"

    def draw(self, context: bpy.types.Context) -> None:
        draw_panel(self.layout, context)


class RFI_PT_view3d(ReconstructPanel, bpy.types.Panel):
    bl_space_type = "VIEW_3D"


class RFI_PT_image_editor(ReconstructPanel, bpy.types.Panel):
    bl_space_type = "IMAGE_EDITOR"


class ResultsPanel:
    """This session's results under the main panel; shown once there is one."""

    bl_label = "Results"
    bl_region_type = "UI"
    bl_category = "Reconstruct"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return bool(history.entries)

    def draw(self, context: bpy.types.Context) -> None:
        draw_results(self.layout, context)


class RFI_PT_view3d_results(ResultsPanel, bpy.types.Panel):
    bl_space_type = "VIEW_3D"
    bl_parent_id = "RFI_PT_view3d"


class RFI_PT_image_editor_results(ResultsPanel, bpy.types.Panel):
    bl_space_type = "IMAGE_EDITOR"
    bl_parent_id = "RFI_PT_image_editor"


CLASSES = (RFI_PT_view3d, RFI_PT_image_editor, RFI_PT_view3d_results, RFI_PT_image_editor_results)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
