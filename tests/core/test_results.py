"""Result writing: real files read back with numpy, Pillow, json and trimesh; atomicity and errors;
output folders that hold an artist's own files, links, long names and what a killed run left."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from backend import results
from backend.methods.base import MeshResult
from backend.protocol import PROTOCOL_VERSION, UserError, staging_name
from backend.results import check_output_dir, validate, write_result
from tests.file_tree import link_to_empty_folder, tree

META = {
    "method": "meshinversion",
    "weights": {"id": "tiny", "sha256": "ab" * 32},
    "preset": "fast",
    "seed": 3,
}


def hidden(folder: Path) -> list[str]:
    """Hidden entries in ``folder``: where staging, retired and probe folders would show up."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


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
    info = {"losses": {"total": [1.0, 0.5]}, "notes": ["from the method"], "warnings": ["check this"],
            "iou": np.float32(0.75)}  # fmt: skip
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
    assert doc["warnings"] == ["check this"]
    assert doc["info"] == {"iou": 0.75} and doc["mesh"]["faces"] == 8
    preview = np.asarray(Image.open(out / "preview.png"))
    assert preview.shape == (16, 16 + 32, 3)  # the 8x8 overlay scaled to 16 high, then the texture


def test_mask_png_is_written_listed_and_replaced_with_the_result(tmp_path: Path) -> None:
    mask = np.zeros((150, 200), np.uint8)
    mask[40:110, 50:160] = 255
    out = tmp_path / "out"
    files = write_result(octahedron(), out, META, mask=mask)
    assert "mask.png" in files and "mask.png" in json.loads((out / "result.json").read_text())["files"]
    with Image.open(out / "mask.png") as saved:
        assert saved.mode == "L"
        np.testing.assert_array_equal(np.asarray(saved), mask)
    write_result(octahedron(), out, META, overwrite=True)  # an earlier result with a mask is recognised
    assert not (out / "mask.png").exists()


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
    with pytest.raises(UserError, match=match) as err:
        write_result(mesh, tmp_path / "out", META)
    assert err.value.code == "invalid_result"
    assert list(tmp_path.iterdir()) == []


def test_camera_persp_and_bad_angle() -> None:
    mesh = octahedron()
    mesh.camera = {**mesh.camera, "type": "PERSP", "angle": 0.5}
    validate(mesh)
    mesh.camera["angle"] = 4.0
    with pytest.raises(UserError, match="angle") as err:
        validate(mesh)
    assert err.value.code == "invalid_result"


def test_existing_output_kept_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError) as err:
        write_result(octahedron(), out, META)
    assert err.value.code == "output_exists" and (out / "keep.txt").read_text() == "mine"
    with pytest.raises(UserError, match="not a result") as err:
        write_result(octahedron(), out, META, overwrite=True)  # never replaces the artist's own files
    assert err.value.code == "output_exists"
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

    out = tmp_path / "out"
    write_result(octahedron(), out, META)
    before = tree(out)
    monkeypatch.setattr(results.np, "savez_compressed", failing_save)
    with pytest.raises(UserError) as exc:
        write_result(octahedron(), out, META, overwrite=True)
    assert exc.value.code == code and exc.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert tree(out) == before  # the previous result survives a failed write, byte for byte


def test_output_path_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x")
    with pytest.raises(UserError) as err:
        write_result(octahedron(), tmp_path / "out", META, overwrite=True)
    assert err.value.code == "output_exists"


def _png(path: Path) -> None:
    Image.fromarray(np.full((4, 4, 3), 7, np.uint8), "RGB").save(path)


def _own_result_json_and_texture(out: Path) -> None:
    (out / "result.json").write_text('{"mine": 1}')
    _png(out / "texture.png")


def _result_names_without_result_json(out: Path) -> None:
    (out / "mesh.npz").write_bytes(b"my mesh")
    _png(out / "texture.png")


def _result_json_not_json(out: Path) -> None:
    (out / "result.json").write_bytes(b"\xff\xfe not json")
    (out / "mesh.glb").write_bytes(b"glTF mine")


def _result_with_an_unlisted_file(out: Path) -> None:
    mesh = octahedron()
    mesh.previews = {}
    write_result(mesh, out, META)
    _png(out / "preview.png")  # the artist's own preview, not in the result's file list


def _result_missing_a_listed_file(out: Path) -> None:
    write_result(octahedron(), out, META)
    (out / "mesh.glb").unlink()


def _folder_named_like_a_result_file(out: Path) -> None:
    write_result(octahedron(), out, META)
    (out / "mesh.glb").unlink()
    (out / "mesh.glb").mkdir()
    (out / "mesh.glb" / "scene.gltf").write_text("{}")


def _result_json_linked_elsewhere(out: Path) -> None:
    write_result(octahedron(), out / "real", META)
    for path in (out / "real").iterdir():
        path.rename(out / path.name)
    (out / "real").rmdir()
    (out / "result.json").rename(out.parent / "mine.json")
    (out / "result.json").symlink_to(out.parent / "mine.json")


def _any_names(out: Path) -> None:
    (out / "line\nbreak.txt").write_text("mine")
    (out / "Ünïcode änd spaces.blend").write_bytes(b"BLENDER")
    (out / ".hidden").write_text("mine")


USER_FOLDERS = {
    "own result.json and texture.png": (_own_result_json_and_texture, "result.json"),
    "result file names, no result.json": (_result_names_without_result_json, "mesh.npz"),
    "result.json that is not JSON": (_result_json_not_json, "result.json"),
    "a result plus a file it does not list": (_result_with_an_unlisted_file, "preview.png"),
    "a result missing a listed file": (_result_missing_a_listed_file, "mesh.glb"),
    "a folder named like a result file": (_folder_named_like_a_result_file, "mesh.glb"),
    "result.json linked elsewhere": (_result_json_linked_elsewhere, "result.json"),
    "any names (newline, non-ASCII, hidden)": (_any_names, "line\\nbreak.txt"),
}


@pytest.mark.parametrize("case", USER_FOLDERS, ids=list(USER_FOLDERS))
def test_overwrite_never_replaces_a_folder_that_is_not_an_earlier_result(tmp_path: Path, case: str) -> None:
    """An earlier result is recognised by content (a result.json of ours listing exactly the files
    present), not by file names: anything else is refused under --overwrite and left byte-identical."""
    fill, named = USER_FOLDERS[case]
    out = tmp_path / "out"
    out.mkdir()
    fill(out)
    before, around = tree(tmp_path), sorted(p.name for p in tmp_path.iterdir())
    for target in (out, tmp_path / "link"):  # directly, and through a link to the folder
        if target.name == "link":
            target.symlink_to(out, target_is_directory=True)
            around.append("link")
        with pytest.raises(UserError) as err:
            write_result(octahedron(), target, META, overwrite=True)
        assert err.value.code == "output_exists" and "--overwrite only replaces" in err.value.hint
        assert "\n" not in err.value.message and named in err.value.message, err.value.message
        assert "nothing was changed" in err.value.message
        assert {k: v for k, v in tree(tmp_path).items() if k != "link"} == before
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(around)


def test_link_to_an_empty_folder_gets_the_result_inside_its_target(tmp_path: Path) -> None:
    """-o LINK: the result goes into the folder LINK points to; LINK stays a link and nothing else
    appears beside it or beside the target (was: LINK renamed to .LINK.old-*, a real folder in its place)."""
    link, target = link_to_empty_folder(tmp_path)
    files = write_result(octahedron(), link, META)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert sorted(p.name for p in target.iterdir()) == sorted(files)
    assert Path(files["mesh.npz"]) == link / "mesh.npz"  # paths as the user gave them
    assert [p.name for p in (tmp_path / "work").iterdir()] == ["LINK"]
    assert [p.name for p in (tmp_path / "store").iterdir()] == ["results"]


def test_overwrite_through_a_link_replaces_the_earlier_result_inside_the_target(tmp_path: Path) -> None:
    target = tmp_path / "C-target"
    write_result(octahedron(), target, META)
    link = tmp_path / "C"
    link.symlink_to(target, target_is_directory=True)
    newer = octahedron()
    newer.previews = {}
    newer.vertices = newer.vertices * 2
    with pytest.raises(UserError, match="not empty") as err:
        write_result(newer, link, META)
    assert err.value.code == "output_exists"
    write_result(newer, link, META, overwrite=True)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert sorted(p.name for p in target.iterdir()) == ["mesh.glb", "mesh.npz", "result.json", "texture.png"]
    with np.load(link / "mesh.npz") as npz:
        np.testing.assert_array_equal(npz["vertices"], newer.vertices)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["C", "C-target"] and hidden(tmp_path) == []


def test_a_link_chain_and_a_linked_parent_write_at_the_real_folder(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "hop").symlink_to(tmp_path / "real", target_is_directory=True)
    (tmp_path / "chain").symlink_to(tmp_path / "hop", target_is_directory=True)
    write_result(octahedron(), tmp_path / "chain", META)
    (tmp_path / "parent").symlink_to(tmp_path / "real", target_is_directory=True)
    write_result(octahedron(), tmp_path / "parent" / "inner", META)
    assert (tmp_path / "chain").is_symlink() and (tmp_path / "real" / "mesh.npz").is_file()
    assert (tmp_path / "real" / "inner" / "result.json").is_file() and hidden(tmp_path) == []


@pytest.mark.parametrize("name", ["n" * 245, "n" * 255, "ü" * 127], ids=["245", "255", "254 bytes"])
def test_long_legal_names_work(tmp_path: Path, name: str) -> None:
    """Staging and probe names are short whatever the output name (was: "File name too long" at 245)."""
    write_result(octahedron(), tmp_path / name, META)
    write_result(octahedron(), tmp_path / name, META, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == [name] and (tmp_path / name / "mesh.glb").is_file()


@pytest.mark.parametrize(
    "name", ["n" * 256, "ü" * 128, "deep/" + "n" * 300], ids=["256", "256 bytes", "parent"]
)
def test_too_long_name_is_one_line_before_any_work(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError) as err:
        check_output_dir(tmp_path / name, overwrite=True)
    assert err.value.code == "bad_output" and "\n" not in err.value.message
    assert "bytes; this file system allows 255" in err.value.message and "shorter" in err.value.hint
    assert len(err.value.message) < 300 and list(tmp_path.iterdir()) == []


def _dangling(tmp_path: Path) -> Path:
    (tmp_path / "out").symlink_to(tmp_path / "missing", target_is_directory=True)
    return tmp_path / "out"


def _loop(tmp_path: Path) -> Path:
    (tmp_path / "out").symlink_to(tmp_path / "other")
    (tmp_path / "other").symlink_to(tmp_path / "out")
    return tmp_path / "out"


def _inside_a_file(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("mine")
    return tmp_path / "file" / "out"


def _inside_a_dangling_link(tmp_path: Path) -> Path:
    return _dangling(tmp_path) / "out"


def _link_to_a_file(tmp_path: Path) -> Path:
    (tmp_path / "file").write_text("mine")
    (tmp_path / "out").symlink_to(tmp_path / "file")
    return tmp_path / "out"


BAD_PATHS = {
    "dangling link": (_dangling, "bad_output", "missing or loops"),
    "link loop": (_loop, "bad_output", "missing or loops"),
    "path inside a file": (_inside_a_file, "bad_output", "is not a folder"),
    "path inside a dangling link": (_inside_a_dangling_link, "bad_output", "is not a folder"),
    "link to a file": (_link_to_a_file, "output_exists", "is not a folder"),
}


@pytest.mark.parametrize("case", BAD_PATHS, ids=list(BAD_PATHS))
def test_unusable_paths_are_one_line_errors_and_nothing_changes(tmp_path: Path, case: str) -> None:
    make, code, words = BAD_PATHS[case]
    out = make(tmp_path)
    before = tree(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(UserError) as err:
            write_result(octahedron(), out, META, overwrite=overwrite)
        assert err.value.code == code and words in err.value.message and err.value.hint
        assert "\n" not in err.value.message and tree(tmp_path) == before


def _debris(folder: Path, output: str, kind: str, files: dict[str, bytes]) -> Path:
    path = folder / staging_name(output, kind)
    path.mkdir()
    for name, data in files.items():
        (path / name).write_bytes(data)
    return path


def test_a_later_run_clears_its_own_debris_and_only_that(tmp_path: Path) -> None:
    """What a killed run leaves (staging, retired and probe folders under this output's hashed names,
    holding only result files) goes with the next run for that output; look-alikes stay."""
    write_result(octahedron(), tmp_path / "out", META)
    for kind, files in (("tmp", {"mesh.npz": b"half"}), ("old", {"texture.png": b"x"}), ("tmp", {})):
        _debris(tmp_path, "out", kind, files)
    kept = [
        _debris(tmp_path, "out", "tmp", {"mesh.npz": b"x", "notes.txt": b"mine"}),  # holds a foreign file
        _debris(tmp_path, "other", "tmp", {"mesh.npz": b"x"}),  # another output's (maybe still running)
        _debris(tmp_path, "out", "bak", {"mesh.npz": b"x"}),  # not a kind we make
    ]
    (tmp_path / ".out.tmp-1234abcd").mkdir()  # the old naming: not ours by the hashed pattern
    linked = tmp_path / staging_name("out", "tmp")
    linked.symlink_to(kept[2], target_is_directory=True)
    expected = sorted([*(p.name for p in kept), ".out.tmp-1234abcd", linked.name])
    before = {name: tree(tmp_path / name) for name in expected}
    write_result(octahedron(), tmp_path / "out", META, overwrite=True)
    assert hidden(tmp_path) == expected
    assert {name: tree(tmp_path / name) for name in expected} == before


def test_a_kill_between_the_two_renames_gets_the_earlier_result_back(tmp_path: Path) -> None:
    """Killed after the earlier result was renamed aside and before the new one took its place: the
    next run puts the earlier result back (it is only removed once a new one is complete)."""
    out = tmp_path / "out"
    write_result(octahedron(), out, META)
    before = tree(out)
    out.rename(tmp_path / staging_name("out", "old"))
    write_result(octahedron(), tmp_path / "new", META)
    (tmp_path / "new").rename(tmp_path / staging_name("out", "tmp"))
    with pytest.raises(UserError, match="not empty") as err:  # back, and not replaced without --overwrite
        write_result(octahedron(), out, META)
    assert err.value.code == "output_exists"
    assert tree(out) == before and hidden(tmp_path) == []
