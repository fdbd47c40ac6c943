"""Read the artist's edited mesh: .glb/.gltf/.obj through trimesh, or a result's ``mesh.npz``.

Frames: ``mesh.npz`` is in Blender's frame already (``backend/results.py``). glTF is Y up by its
specification, and Blender's OBJ exporter writes Y up by default, so both come back to Blender's
frame by (x, y, z) -> (x, -z, y), the inverse of what Blender's exporters (and ``results.glb_scene``)
do. Polygons are triangulated by trimesh; UVs and the base-colour texture are kept when present.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from backend.protocol import UserError

Y_UP_TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
SUFFIXES = (".glb", ".gltf", ".obj", ".npz")
FORMATS_HINT = "export the mesh as .glb, .gltf or .obj (or pass a result's mesh.npz)"


@dataclass
class EditedMesh:
    """``vertices`` (V, 3) float32 in Blender's frame, ``faces`` (F, 3) int64, ``uvs`` (F, 3, 2) per
    corner (v up) or None, ``texture`` (H, W, 3) uint8 the mesh file carries, or None."""

    vertices: np.ndarray
    faces: np.ndarray
    uvs: np.ndarray | None
    texture: np.ndarray | None


def load_mesh(path: str | Path) -> EditedMesh:
    """The mesh in ``path``, checked; raises ``UserError`` (one line and a hint) for anything else."""
    path = Path(path)
    if not path.is_file():
        raise UserError("mesh_missing", f"edited mesh {path} not found", FORMATS_HINT)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise _not_a_mesh(path, f"{suffix or 'no suffix'} is not a mesh format read here")
    try:
        mesh = _read_npz(path) if suffix == ".npz" else _read_trimesh(path)
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError, zipfile.BadZipFile) as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise _not_a_mesh(path, f"not a readable mesh ({detail})") from None
    return _checked(mesh, path)


def _not_a_mesh(path: Path, what: str) -> UserError:
    return UserError("not_a_mesh", f"{path.name}: {what}", FORMATS_HINT)


def _read_npz(path: Path) -> EditedMesh:
    with np.load(path, allow_pickle=False) as data:
        uvs = np.asarray(data["uvs"], np.float32) if "uvs" in data.files else None
        return EditedMesh(np.asarray(data["vertices"], np.float32), np.asarray(data["faces"]), uvs, None)


def _read_trimesh(path: Path) -> EditedMesh:
    scene = trimesh.load(str(path), force="scene", process=False)
    meshes = [g for g in scene.geometry.values() if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    if not meshes:
        return EditedMesh(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int64), None, None)
    mesh = scene.to_geometry() if len(meshes) > 1 else _placed(scene, meshes[0])
    faces = np.asarray(mesh.faces, np.int64)
    vertices = (np.asarray(mesh.vertices, np.float64) @ Y_UP_TO_BLENDER.T).astype(np.float32)
    uv = getattr(mesh.visual, "uv", None)
    uvs = None
    if uv is not None and len(uv) == len(vertices):
        uvs = np.asarray(uv, np.float32)[faces]
    return EditedMesh(vertices, faces, uvs, _base_colour(mesh) if uvs is not None else None)


def _placed(scene: trimesh.Scene, mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The scene's only mesh with its node transform applied (visuals kept)."""
    name = next(n for n in scene.graph.nodes_geometry if scene.graph[n][1] in scene.geometry)
    placed = mesh.copy()
    placed.apply_transform(scene.graph[name][0])
    return placed


def _base_colour(mesh: trimesh.Trimesh) -> np.ndarray | None:
    """The material's base-colour (PBR) or diffuse (OBJ) image as (H, W, 3) uint8."""
    material = getattr(mesh.visual, "material", None)
    image = getattr(material, "baseColorTexture", None) or getattr(material, "image", None)
    if not isinstance(image, Image.Image):
        return None
    return np.array(image.convert("RGB"), np.uint8)


def _checked(mesh: EditedMesh, path: Path) -> EditedMesh:
    """Shapes, indices and finite values; a mesh without faces is refused."""
    vertices, faces, uvs = mesh.vertices, mesh.faces, mesh.uvs
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise _not_a_mesh(path, "expected vertices (V, 3) and triangles (F, 3)")
    if len(faces) == 0:
        hint = "export the mesh itself (faces, not only points or curves)"
        raise UserError("empty_mesh", f"{path.name} has no faces", hint)
    if not np.issubdtype(faces.dtype, np.integer) or faces.min() < 0 or faces.max() >= len(vertices):
        raise _not_a_mesh(path, f"face indices outside its {len(vertices)} vertices")
    if not np.isfinite(vertices).all() or (uvs is not None and not np.isfinite(uvs).all()):
        raise _not_a_mesh(path, "NaN or infinite coordinates")
    if uvs is not None and uvs.shape != (len(faces), 3, 2):
        raise _not_a_mesh(path, f"uvs must be (F, 3, 2), got {uvs.shape}")
    return EditedMesh(vertices, faces.astype(np.int64), uvs, mesh.texture)
