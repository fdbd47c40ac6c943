"""Re-project Photo: bake the photo of a reconstruction again onto the mesh as the artist edited it.

The object's ``rfi_result`` property names the result folder it was imported from (its camera,
photo and object mask). The evaluated mesh (modifiers applied) goes to the backend as arrays in
the result's ``mesh.npz`` layout, object space, with the UV map the material reads; the texture the
material shows now goes along, so the unseen side keeps it (painted strokes included). The new
texture comes back as a new packed image that the same texture node then shows: switching the
node's image is what Blender's undo restores (changing an image's pixels in place is not undone).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import bpy
import numpy as np

from . import job_request, session
from .client import UserError, protocol
from .importer import PROPERTY_PREFIX, result_format

RESULT_PROPERTY = PROPERTY_PREFIX + "result"
REPROJECT_FILES = (result_format.RESULT_JSON, result_format.MASK_FILE)
"""What a result folder keeps for re-projection when the preferences do not keep results."""


def is_reconstruction(obj: bpy.types.Object | None) -> bool:
    """A mesh object imported from a result (the importer records the result folder)."""
    return obj is not None and obj.type == "MESH" and isinstance(obj.get(RESULT_PROPERTY), str)


def texture_node(obj: bpy.types.Object) -> bpy.types.ShaderNodeTexImage:
    """The image texture node of the object's material (the importer's base colour image)."""
    for slot in obj.material_slots:
        tree = slot.material.node_tree if slot.material is not None else None
        for node in tree.nodes if tree is not None else ():
            if node.type == "TEX_IMAGE" and node.image is not None:
                return node
    raise UserError(
        "no_texture", f"'{obj.name}' has no image texture in its material", "give it back its texture image"
    )


def mesh_arrays(context: bpy.types.Context, obj: bpy.types.Object) -> dict[str, np.ndarray]:
    """The evaluated mesh as ``mesh.npz`` arrays: vertices (V, 3) in object space, triangles (F, 3),
    per-corner UVs (F, 3, 2) of the UV map the material reads (the active render one)."""
    if obj.mode == "EDIT":
        obj.update_from_editmode()
    evaluated = obj.evaluated_get(context.evaluated_depsgraph_get())
    mesh = evaluated.to_mesh()
    try:
        layer = next((layer for layer in mesh.uv_layers if layer.active_render), mesh.uv_layers.active)
        if layer is None:
            raise UserError(
                "no_uvs", f"'{obj.name}' has no UV map", "add one (UV > Smart UV Project), then re-project"
            )
        mesh.calc_loop_triangles()
        count = len(mesh.loop_triangles)
        if count == 0:
            raise UserError("empty_mesh", f"'{obj.name}' has no faces", "re-project onto a mesh")
        vertices = np.empty(len(mesh.vertices) * 3, np.float32)
        mesh.vertices.foreach_get("co", vertices)
        faces = np.empty(count * 3, np.int32)
        mesh.loop_triangles.foreach_get("vertices", faces)
        loops = np.empty(count * 3, np.int32)
        mesh.loop_triangles.foreach_get("loops", loops)
        uv = np.empty(len(mesh.loops) * 2, np.float32)
        layer.data.foreach_get("uv", uv)
    finally:
        evaluated.to_mesh_clear()
    return {"vertices": vertices.reshape(-1, 3), "faces": faces.reshape(-1, 3),
            "uvs": uv.reshape(-1, 2)[loops].reshape(-1, 3, 2)}  # fmt: skip


def build_request(
    context: bpy.types.Context, obj: bpy.types.Object
) -> tuple[protocol.ReprojectRequest, Path]:
    """The job for ``obj`` and its staging folder (the mesh and texture files it sends, to remove
    when the job ends)."""
    if not is_reconstruction(obj):
        raise UserError(
            "not_reconstructed", "the active object was not reconstructed from a photo", "select one that was"
        )
    result = Path(obj[RESULT_PROPERTY])
    if not (result / result_format.RESULT_JSON).is_file():
        raise UserError(
            "result_missing",
            f"the result folder of '{obj.name}' is gone: {result}",
            "reconstruct the photo again to re-project it",
        )
    image = texture_node(obj).image
    staging = session.user_dir("reproject") / f"{job_request.safe_name(obj.name)}-{time.time_ns()}"
    staging.mkdir(parents=True)
    try:
        np.savez(staging / result_format.MESH_FILE, **mesh_arrays(context, obj))
        texture = job_request.image_file(image, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    request = protocol.ReprojectRequest(
        result_dir=str(result),
        mesh=str(staging / result_format.MESH_FILE),
        output_dir=str(job_request.output_dir(f"{obj.name}-reprojected")),
        texture=str(texture),
        device=session.backend_settings().device,
    )
    return request, staging


def apply_result(obj: bpy.types.Object, output_dir: Path) -> bpy.types.Image:
    """Show the re-projected ``texture.png`` in the object's texture node, as a new packed image (the
    old one stays in the file until saved without users, so undo can bring it back)."""
    node = texture_node(obj)
    path = output_dir / result_format.TEXTURE_FILE
    if not path.is_file():
        raise UserError("bad_result", f"{path} is missing", "the backend wrote no texture; see its log")
    previous = node.image
    image = bpy.data.images.load(str(path), check_existing=False)
    image.name = previous.name
    image.colorspace_settings.name = previous.colorspace_settings.name
    image.pack()
    node.image = image
    return image


def discard(folder: Path, keep: tuple[str, ...] = ()) -> None:
    """Remove ``folder``'s files but ``keep``, and the folder itself when nothing is kept."""
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for path in folder.iterdir() if folder.is_dir() else ():
        if path.name not in keep:
            path.unlink(missing_ok=True)
