"""Inversion result -> ``MeshResult``: mesh in Blender's frame, the aligned camera, previews.

Frames: the object frame is x (mirror axis), y up, z front; Blender's is (X, Y, Z) = (x, -z, y).
The mesh is placed by a ``ScaleRule`` (``backend/categories.py``): in metres, its length (extent
along Y) is the category's size and its origin is at its bottom centre, on Z = 0; in a unit box,
centred with largest extent 1.

Camera: the fitted weak-perspective view is exactly an orthographic camera. With the object
->Blender map V = k (A v - c) (A the axis swap, c and k the placement's centre and scale) and the view
view = s R v + t, the camera's local axes are Rc = A R^T D (D = diag(1, -1, -1) turns the view
frame, y down and z away, into Blender's camera frame, y up and looking along -Z), its
``ortho_scale`` is 2 k / s (the crop square spans 2 NDC units) and its position shifts the image
centre by the translation; it stands off in proportion to the mesh's size. ``crop_box`` ties the
camera to the crop of the original photo.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from backend.categories import Placement, ScaleRule
from backend.inputs import Crop
from backend.methods.base import MeshResult
from backend.methods.meshinversion.camera_search import WeakPerspective, view_quaternion
from backend.methods.meshinversion.dense import dense_sphere, sphere_size, upsample
from backend.methods.meshinversion.invert import InversionResult, to_uint8
from backend.methods.meshinversion.mesh_gan import MeshGAN, exported_uvs
from backend.methods.meshinversion.template import SEGMENTS, quad_pairs
from backend.polygons import pair_quads

OBJECT_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
"""A: object (x, y up, z front) -> Blender (X, Y = -z, Z = y); a rotation (det 1)."""
VIEW_TO_CAMERA = np.diag([1.0, -1.0, -1.0])
"""D: view frame (x right, y down, z away) -> Blender camera local frame (y up, looks along -Z)."""
CAMERA_DISTANCE = 3.0
"""How far in front of the mesh the orthographic camera sits, in mesh extents (it does not change
the image)."""
NOVEL_VIEWS = {"view_front_left": (-45.0, 20.0), "view_back_right": (135.0, 20.0)}
"""Preview views (azimuth, elevation in degrees) in the object's own frame; see ``view_quaternion``."""


@dataclass(frozen=True)
class ExportedMesh:
    """The mesh written for one result, in object space on the model's device: the template's, or
    the denser sphere of the ``faces`` option (``dense.py``)."""

    vertices: torch.Tensor
    """(V, 3) float32."""
    faces: torch.Tensor
    """(F, 3) int64."""
    uvs: torch.Tensor
    """(F, 3, 2) exported (texel-centre) UVs."""
    quads: torch.Tensor
    """(Q, 2) the face pairs that make the sphere's quads (``template.quad_pairs``)."""
    info: dict[str, Any]


def exported_mesh(
    model: MeshGAN, result: InversionResult, faces: int | None, smoothing: float = 0.0
) -> ExportedMesh:
    """The template mesh (``faces`` None) or a sphere of about ``faces`` triangles through it
    (``smoothing``: ``Options.faces_smoothing``)."""
    size, device = model.config.texture_resolution, result.vertices.device
    if faces is None:
        info = {"faces": len(model.template.faces), "faces_requested": None}
        pairs = quad_pairs(model.template.rings, SEGMENTS)
        return ExportedMesh(result.vertices, model.faces, model.exported_uvs, pairs, info)
    started = time.perf_counter()
    template = model.template
    segments = len(template.faces) // (2 * (template.rings - 1))
    sphere = dense_sphere(*sphere_size(faces, template.rings, segments))
    vertices = upsample(template, result.vertices.detach(), sphere, model.config.symmetric, smoothing)
    seconds = round(time.perf_counter() - started, 4)
    info = {"faces": len(sphere.faces), "faces_requested": faces, "rings": sphere.rings,
            "segments": sphere.segments, "upsample_seconds": seconds}  # fmt: skip
    return ExportedMesh(
        vertices.float().to(device),
        sphere.faces.to(device),
        exported_uvs(sphere.corner_uvs, size).to(device),
        quad_pairs(sphere.rings, sphere.segments),
        info,
    )


def blender_placement(vertices: np.ndarray, rule: ScaleRule) -> tuple[np.ndarray, Placement]:
    """Object-frame (V, 3) -> Blender-frame vertices placed by ``rule``, plus the placement (c, k)."""
    swapped = vertices @ OBJECT_TO_BLENDER.T
    placement = rule.place(swapped)
    return (swapped - placement.centre) * placement.scale, placement


def blender_camera(camera: WeakPerspective, placement: Placement, crop: Crop) -> dict[str, Any]:
    """The ORTHO camera (schema of ``backend/results.py``) that reproduces the fitted view."""
    rotation = camera.rotation()[0].double().cpu().numpy()
    s, centre, scale = float(camera.scale[0]), placement.centre, placement.scale
    translation = np.array([float(camera.translation[0, 0]), float(camera.translation[0, 1]), 0.0])
    axes = OBJECT_TO_BLENDER @ rotation.T @ VIEW_TO_CAMERA
    offset = VIEW_TO_CAMERA @ (s * rotation @ OBJECT_TO_BLENDER.T @ centre + translation)
    distance = CAMERA_DISTANCE * placement.extent
    local_position = np.array([-offset[0] * scale / s, -offset[1] * scale / s, distance])
    matrix = np.eye(4)
    matrix[:3, :3] = axes
    matrix[:3, 3] = axes @ local_position
    return {
        "type": "ORTHO",
        "matrix_world": matrix.tolist(),
        "ortho_scale": 2 * scale / s,
        "crop_box": [float(v) for v in crop.box],
        "image_size": [int(v) for v in crop.image_size],
    }


def novel_view_previews(
    model: MeshGAN, mesh: ExportedMesh, texture: torch.Tensor, size: int
) -> dict[str, np.ndarray]:
    """Renders from fixed views around the object, centred and scaled to fit, on white."""
    vertices = mesh.vertices[None]
    centred = vertices - vertices.mean(dim=1, keepdim=True)
    radius = float(centred.norm(dim=-1).max())
    device = vertices.device
    angles = torch.tensor(list(NOVEL_VIEWS.values()), device=device).deg2rad()
    quaternions = view_quaternion(angles[:, 0], angles[:, 1])
    count = len(NOVEL_VIEWS)
    cameras = WeakPerspective(
        quaternions, torch.full((count,), 0.95 / radius, device=device), torch.zeros(count, 2, device=device)
    )
    rendering = model.render_exported(
        centred.expand(count, -1, -1),
        texture[None].expand(count, -1, -1, -1),
        cameras,
        size,
        (mesh.faces, mesh.uvs),
    )
    white = torch.where(rendering.mask[:, None], rendering.rgb, torch.ones_like(rendering.rgb))
    return {name: to_uint8(white[i]) for i, name in enumerate(NOVEL_VIEWS)}


def input_view_previews(
    model: MeshGAN, mesh: ExportedMesh, camera: WeakPerspective, texture: torch.Tensor, crop: Crop
) -> dict[str, np.ndarray]:
    """The photo crop, the reconstruction in the fitted view, and the reconstruction over the photo."""
    size = crop.mask.shape[0]
    rendering = model.render_exported(
        mesh.vertices[None], texture[None], camera, size, (mesh.faces, mesh.uvs)
    )
    photo = torch.from_numpy(crop.rgb).to(texture.device).permute(2, 0, 1) * 2 - 1
    covered = rendering.mask[0][None]
    return {
        "input": to_uint8(photo),
        "reconstruction": to_uint8(torch.where(covered, rendering.rgb[0], torch.ones_like(photo))),
        "overlay": to_uint8(torch.where(covered, 0.5 * (rendering.rgb[0] + photo), photo)),
    }


def to_mesh_result(
    model: MeshGAN,
    result: InversionResult,
    crop: Crop,
    info: dict[str, Any],
    texture: torch.Tensor,
    previews: bool,
    rule: ScaleRule,
    faces: int | None = None,
    smoothing: float = 0.0,
    quads: bool = False,
) -> MeshResult:
    """Everything ``backend/results.py`` writes for one reconstructed image; ``texture`` (3, N, N) in
    [-1, 1] is the final one (addressed by the exported UVs); ``rule`` sizes the mesh by its length;
    ``faces``: about this many triangles instead of the template's (the same texture fits), with
    ``smoothing`` (``Options.faces_smoothing``); ``quads``: also the sphere's quads (and pole fans)
    as polygons."""
    with torch.no_grad():
        mesh = exported_mesh(model, result, faces, smoothing)
        vertices, placement = blender_placement(mesh.vertices.double().cpu().numpy(), rule)
        shown = {}
        if previews:
            shown = {
                **input_view_previews(model, mesh, result.camera, texture, crop),
                **novel_view_previews(model, mesh, texture, crop.mask.shape[0]),
            }
    quaternion = torch.nn.functional.normalize(result.camera.quaternion[0], dim=0)
    info = {
        **info,
        "camera_fit": {
            "quaternion_wxyz": [float(v) for v in quaternion],
            "scale": float(result.camera.scale[0]),
            "translation": [float(v) for v in result.camera.translation[0]],
            "search_silhouette_iou": result.camera_iou,
        },
        "class_label": None if result.label is None else result.label[0],
        "colour_label": None if result.label is None or len(result.label) < 2 else result.label[1],
        "start": result.start,
        "pose_confidence": result.pose_confidence,
        "init_score": result.init_score,
        "mask_iou": {"initial": result.init_mask_iou, "final": result.mask_iou},
        "stage_losses": result.stage_losses,
        "latent": [float(v) for v in result.z],
        "export": mesh.info,
    }
    faces, uvs = mesh.faces.cpu().numpy().astype(np.int32), mesh.uvs.cpu().numpy().astype(np.float32)
    return MeshResult(
        vertices=vertices.astype(np.float32),
        faces=faces,
        uvs=uvs,
        texture=to_uint8(texture),
        camera=blender_camera(result.camera, placement, crop),
        info=_finite(info),
        previews=shown,
        polygons=pair_quads(faces, uvs, mesh.quads.numpy()) if quads else None,
    )


def _finite(value: Any) -> Any:
    """NaN/Inf are not JSON; they become None in ``result.json``."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
