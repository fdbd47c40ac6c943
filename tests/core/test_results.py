"""Result writing: real files read back with numpy, Pillow, json and trimesh; atomicity and errors."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from backend import results
from backend.methods.base import MeshResult
from backend.protocol import PROTOCOL_VERSION
from backend.results import ResultError, validate, write_result

META = {
    "method": "meshinversion",
    "weights": {"id": "tiny", "sha256": "ab" * 32},
    "preset": "fast",
    "seed": 3,
}


def octahedron() -> MeshResult:
    """A valid textured octahedron (8 faces wound counter-clockwise from outside)."""
    vertices = (
        np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float32) * 0.5
    )
    faces = []
    for sx in (0, 1):
        for sy in (2, 3):
            for sz in (4, 5):
                flip = (sx + sy + sz - 6) % 2 == 1  # an odd number of negative axes reverses winding
                faces.append((sx, sz, sy) if flip else (sx, sy, sz))
    faces = np.array(faces, np.int32)
    rng = np.random.default_rng(0)
    uvs = rng.uniform(0.05, 0.95, (len(faces), 3, 2)).astype(np.float32)
    texture = np.zeros((16, 32, 3), np.uint8)
    texture[:8] = (255, 0, 0)  # top half red (v > 0.5)
    texture[8:] = (0, 0, 255)
    camera = {
        "type": "ORTHO",
        "matrix_world": [[1, 0, 0, 0], [0, 0, -1, -5], [0, 1, 0, 0], [0, 0, 0, 1]],
        "ortho_scale": 1.2,
        "crop_box": [10.0, 20.0, 100.0],
        "image_size": [200, 150],
    }
    previews = {"overlay": np.full((8, 8, 3), 200, np.uint8), "texture": texture}
    info = {"losses": {"total": [1.0, 0.5]}, "notes": ["from the method"], "iou": np.float32(0.75)}
    return MeshResult(vertices, faces, uvs, texture, camera, info, previews)


def test_outward_winding_of_fixture() -> None:
    mesh = octahedron()
    tri = mesh.vertices[mesh.faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert (np.einsum("fi,fi->f", normals, tri.mean(axis=1)) > 0).all()


def test_write_and_read_back(tmp_path: Path) -> None:
    mesh = octahedron()
    out = tmp_path / "out"
    files = write_result(mesh, out, {**META, "notes": ["from the job"]})
    assert sorted(files) == ["mesh.glb", "mesh.npz", "preview.png", "result.json", "texture.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(files)
    with np.load(out / "mesh.npz") as npz:
        assert npz["vertices"].dtype == np.float32 and npz["faces"].dtype == np.int32
        assert npz["uvs"].dtype == np.float32 and npz["uvs"].shape == (8, 3, 2)
        np.testing.assert_array_equal(npz["faces"], mesh.faces)
    np.testing.assert_array_equal(np.asarray(Image.open(out / "texture.png")), mesh.texture)
    doc = json.loads((out / "result.json").read_text())
    assert doc["protocol_version"] == PROTOCOL_VERSION and doc["camera"] == mesh.camera
    assert doc["weights"]["id"] == "tiny" and doc["seed"] == 3
    assert doc["losses"] == {"total": [1.0, 0.5]} and doc["notes"] == ["from the job", "from the method"]
    assert doc["info"] == {"iou": 0.75} and doc["mesh"]["faces"] == 8
    preview = np.asarray(Image.open(out / "preview.png"))
    assert preview.shape == (16, 16 + 32, 3)  # the 8x8 overlay scaled to 16 high, then the texture


def test_glb_loads_with_texture_and_y_up(tmp_path: Path) -> None:
    mesh = octahedron()
    write_result(mesh, tmp_path / "out", META)
    loaded = trimesh.load(tmp_path / "out" / "mesh.glb", force="mesh")
    assert len(loaded.faces) == 8
    texture = loaded.visual.material.baseColorTexture
    assert texture.size == (32, 16)
    # Blender +Z (vertex 4, up) is glTF +Y; Blender -Y (vertex 3, the front) is glTF +Z.
    assert np.isclose(loaded.vertices[:, 1].max(), 0.5) and np.isclose(loaded.vertices[:, 2].max(), 0.5)
    corner_uv = loaded.visual.uv[loaded.faces].reshape(-1, 2)
    corner_xyz = loaded.vertices[loaded.faces].reshape(-1, 3)
    want_xyz = mesh.vertices[mesh.faces].reshape(-1, 3)
    want_xyz = np.stack([want_xyz[:, 0], want_xyz[:, 2], -want_xyz[:, 1]], axis=1)
    order_got = np.lexsort(np.concatenate([corner_xyz, corner_uv], 1).T)
    order_want = np.lexsort(np.concatenate([want_xyz, mesh.uvs.reshape(-1, 2)], 1).T)
    np.testing.assert_allclose(corner_uv[order_got], mesh.uvs.reshape(-1, 2)[order_want], atol=1e-6)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("vertices", np.full((6, 3), np.nan, np.float32), "NaN"),
        ("faces", np.array([[0, 1, 9]], np.int32), "face indices"),
        ("faces", np.zeros((8, 3), np.float32), "dtype"),
        ("uvs", np.zeros((7, 3, 2), np.float32), "uv triangles"),
        ("texture", np.zeros((4, 4, 3), np.float32), "uint8"),
        ("vertices", np.zeros((6, 2), np.float32), "shape"),
        ("camera", {"type": "ORTHO"}, "matrix_world"),
    ],
)
def test_broken_mesh_never_written(tmp_path: Path, field: str, value: object, match: str) -> None:
    mesh = octahedron()
    setattr(mesh, field, value)
    with pytest.raises(ResultError, match=match) as err:
        write_result(mesh, tmp_path / "out", META)
    assert err.value.code == "invalid_result"
    assert list(tmp_path.iterdir()) == []


def test_camera_persp_and_bad_angle() -> None:
    mesh = octahedron()
    mesh.camera = {**mesh.camera, "type": "PERSP", "angle": 0.5}
    validate(mesh)
    mesh.camera["angle"] = 4.0
    with pytest.raises(ResultError, match="angle"):
        validate(mesh)


def test_existing_output_kept_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ResultError) as err:
        write_result(octahedron(), out, META)
    assert err.value.code == "output_exists" and (out / "keep.txt").read_text() == "mine"
    with pytest.raises(ResultError, match="not a result"):
        write_result(octahedron(), out, META, overwrite=True)  # never replaces the artist's own files
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    write_result(octahedron(), out, META)
    (out / "mesh.npz").write_bytes(b"stale")
    write_result(octahedron(), out, META, overwrite=True)  # an earlier result is replaced
    assert np.load(out / "mesh.npz")["faces"].shape[1] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or retired folders left


def test_empty_existing_folder_is_used(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    write_result(octahedron(), tmp_path / "out", META)
    assert (tmp_path / "out" / "result.json").exists()


@pytest.mark.parametrize(("err", "code"), [(errno.ENOSPC, "disk_full"), (errno.EROFS, "not_writable")])
def test_disk_errors_leave_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int, code: str
) -> None:
    def failing_save(*args, **kwargs):
        raise OSError(err, "simulated")

    monkeypatch.setattr(results.np, "savez_compressed", failing_save)
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.json").write_text("old result")
    with pytest.raises(ResultError) as exc:
        write_result(octahedron(), out, META, overwrite=True)
    assert exc.value.code == code and exc.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / "result.json").read_text() == "old result"  # the previous result survives a failed write


def test_output_path_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x")
    with pytest.raises(ResultError) as err:
        write_result(octahedron(), tmp_path / "out", META, overwrite=True)
    assert err.value.code == "output_exists"
