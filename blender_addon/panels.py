"""The "Reconstruct" sidebar tab, identical in the 3D Viewport and the Image Editor."""

from __future__ import annotations

import bpy

from . import reproject, session


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


CLASSES = (RFI_PT_view3d, RFI_PT_image_editor)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
