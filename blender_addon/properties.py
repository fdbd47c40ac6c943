"""Per-scene reconstruction settings (saved with the .blend) and per-session job state (not saved)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from . import catalogue, session

METHOD_LABELS = {
    "meshinversion": (
        "MeshInversion",
        "Textured mesh GAN inversion (ECCV 2022): fits a full mesh with texture",
    ),
    "gan2shape": (
        "GAN2Shape",
        "StyleGAN2 shape from shading (ICLR 2021): a textured relief of the visible side",
    ),
}
PRESET_LABELS = {
    "fast": ("Fast", "Short schedule, interactive on a CPU"),
    "paper": ("Paper", "The published schedule (slow without a GPU)"),
}
SCALE_LABELS = {
    "metres": ("Real Size", "Metres at the category's typical size, resting on the ground, front to -Y"),
    "unit": ("Unit Box", "Centred on its bounding box, largest extent 1"),
}
"""What the panel shows for each name; the names themselves come from the backend (``catalogue``)."""
METHOD_ITEMS = [(name, *METHOD_LABELS.get(name, (name, ""))) for name in catalogue.METHODS]
SCALE_ITEMS = [(name, *SCALE_LABELS.get(name, (name, ""))) for name in catalogue.SCALE_MODES]
PRESET_ITEMS = [(name, *PRESET_LABELS.get(name, (name, ""))) for name in catalogue.PRESETS]
DEFAULT_WEIGHTS = "DEFAULT"
_weights_items_cache: list[tuple[str, str, str]] = []
"""Blender keeps only pointers to enum item strings: they must outlive the callback."""


def weights_items(settings: RFI_Settings, _context: bpy.types.Context) -> list[tuple[str, str, str]]:
    """The registry's models for the chosen method, as the backend's handshake listed them."""
    items = [(DEFAULT_WEIGHTS, "Default", "The backend's default model for this method")]
    for entry in session.weights_for_method(settings.method):
        label = f"{entry['id']} ({entry.get('category', '?')})"
        items.append(
            (entry["id"], label, f"{entry.get('category', '')} model from {entry.get('origin', 'registry')}")
        )
    _weights_items_cache[:] = items
    return _weights_items_cache


class RFI_Settings(bpy.types.PropertyGroup):
    """What to reconstruct and how; one set per scene."""

    image_source: EnumProperty(
        name="Image",
        items=[
            ("EDITOR", "Image Editor", "The image shown in an Image Editor"),
            ("OBJECT", "Image Empty", "The active image empty or reference image"),
            ("FILE", "File", "An image file on disk"),
        ],
        default="EDITOR",
    )
    filepath: StringProperty(name="File", subtype="FILE_PATH", description="Photo of one object")
    mask_source: EnumProperty(
        name="Mask",
        items=[
            ("auto", "Automatic", "The image's alpha if it has one, else the salient object network"),
            ("alpha", "Alpha", "The image's alpha channel"),
            ("salient", "Salient Object", "A network that finds the photo's main object (U^2-Net-p)"),
            ("grabcut", "Extract Foreground", "Automatic foreground extraction (GrabCut) from a centred box"),
            ("file", "Mask Image", "A separate black and white mask image"),
            ("none", "None", "Use the whole image"),
        ],
        default=catalogue.JOB_DEFAULTS["mask"],
    )
    mask_image: PointerProperty(name="Mask Image", type=bpy.types.Image, description="White = object")
    method: EnumProperty(name="Method", items=METHOD_ITEMS, default=catalogue.JOB_DEFAULTS["method"])
    weights: EnumProperty(
        name="Weights", items=weights_items, description="Trained model (category in brackets)"
    )
    preset: EnumProperty(name="Preset", items=PRESET_ITEMS, default=catalogue.JOB_DEFAULTS["preset"])
    overrides: StringProperty(
        name="Options",
        description="Advanced: method options as key=value pairs separated by spaces, overriding the preset",
    )
    faces: IntProperty(
        name="Faces",
        min=0,
        max=catalogue.FACES_RANGE[1],
        default=0,
        description=f"About this many triangles in the mesh, {catalogue.FACES_RANGE[0]:,}-"
        f"{catalogue.FACES_RANGE[1]:,} (0: the method's own mesh)",
    )
    quads: BoolProperty(
        name="Quads",
        default=False,
        description="Import the mesh as quads (triangles only where the mesh has no quad); "
        "Faces still counts triangles",
    )
    scale: EnumProperty(name="Scale", items=SCALE_ITEMS, default=catalogue.SCALE_MODES[0])
    size_m: FloatProperty(
        name="Length",
        min=0.0,
        soft_max=50.0,
        default=0.0,
        subtype="DISTANCE",
        unit="LENGTH",
        description="The object's length instead of its category's typical size (0: the typical size)",
    )
    seed: IntProperty(
        name="Seed",
        min=0,
        default=catalogue.JOB_DEFAULTS["seed"],
        description="Same seed, same result on the same device",
    )
    aligned_camera: BoolProperty(
        name="Aligned Camera",
        default=True,
        description="Add a camera seeing the object as the photo does, with the photo as its background",
    )
    mirror: BoolProperty(
        name="Symmetric editing (Mirror modifier)",
        default=False,
        description="Import a mirror-symmetric result as its X >= 0 half with a Mirror modifier",
    )
    shade_smooth: BoolProperty(name="Shade Smooth", default=True)
    texture_size: EnumProperty(
        name="Texture Size",
        items=[
            ("0", "As Reconstructed", "Keep the texture at the method's resolution"),
            ("512", "512", ""),
            ("1024", "1024", ""),
            ("2048", "2048", ""),
            ("4096", "4096", ""),
        ],
        default="0",
    )


class RFI_Runtime(bpy.types.PropertyGroup):
    """The running job as the panels show it; written only on the main thread by the modal operator."""

    running: BoolProperty(default=False)
    progress: FloatProperty(default=0.0, min=0.0, max=1.0)
    status: StringProperty(default="")


CLASSES = (RFI_Settings, RFI_Runtime)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.rfi_settings = PointerProperty(type=RFI_Settings)
    bpy.types.WindowManager.rfi_runtime = PointerProperty(type=RFI_Runtime)


def unregister() -> None:
    del bpy.types.WindowManager.rfi_runtime
    del bpy.types.Scene.rfi_settings
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
