"""The extension zip: Blender's validator accepts it, it carries the runtime backend and nothing of
the research workbench, and the add-on's Blender-free modules import from it without bpy or torch."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME_PACKAGES = {"methods", "render", "reproject"}
"""The sub-packages of the shipped ``backend/``; the methods are the two below."""
METHODS = {"gan2shape", "meshinversion"}
ENTRY_POINTS = ("backend.__main__", "backend.server")
"""Where the backend process starts (``python -m backend``) and the server it runs."""
RESEARCH_MARKERS = ("workbench/", "benchmarks/", "train", "baselines", "soft_mask")
"""Never in the name of shipped code (the weights' file names may say ``pretrain``)."""


def test_zip_layout(extension_zip: Path) -> None:
    names = set(zipfile.ZipFile(extension_zip).namelist())
    for required in (
        "blender_manifest.toml",
        "__init__.py",
        "client.py",
        "importer.py",
        "batch.py",
        "requirements.txt",
        "requirements-nodeps.txt",
        "backend/__init__.py",
        "backend/protocol.py",
        "backend/server.py",
        "weights/manifest.toml",
    ):
        assert required in names, required
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith("tests/")]


def test_validator_rejects_what_blender_would(tmp_path: Path) -> None:
    """The same tool `build.py package` runs refuses a manifest Blender would refuse (proves it checks)."""
    manifest = (ROOT / "blender_manifest.toml").read_text()
    tool = next(
        (ROOT / ".venv").glob(
            "lib/python3.*/site-packages/bpy/*/scripts/addons_core/bl_pkg/cli/blender_ext.py"
        )
    )
    results = {}
    for name, text in (
        ("good", manifest),
        ("bad", re.sub(r"(?m)^tagline = .*$", 'tagline = "Ends with a dot."', manifest)),
    ):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        (folder / "blender_manifest.toml").write_text(text)
        results[name] = subprocess.run(
            [sys.executable, str(tool), "validate", str(folder)], capture_output=True, text=True
        )
    good, refused = results["good"], results["bad"]
    assert good.returncode == 0, good.stdout + good.stderr
    assert refused.returncode != 0 and "tagline" in refused.stdout + refused.stderr


def test_client_imports_from_zip_without_bpy_or_torch(extension_zip: Path, tmp_path: Path) -> None:
    package = tmp_path / "reconstruct_from_image"
    zipfile.ZipFile(extension_zip).extractall(package)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import reconstruct_from_image.client as c, reconstruct_from_image.backend_env as e;"
        "assert c.protocol.__name__ == 'reconstruct_from_image.backend.protocol', c.protocol.__name__;"
        "assert e.backend_root(e.Path(c.__file__).parent) == e.Path(c.__file__).parent;"
        "assert 'bpy' not in sys.modules and 'torch' not in sys.modules and 'numpy' not in sys.modules"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_zip_holds_the_runtime_and_no_research_code(extension_zip: Path) -> None:
    names = zipfile.ZipFile(extension_zip).namelist()
    code = [n for n in names if not n.startswith("weights/")]
    research = [n for n in code if any(marker in n for marker in RESEARCH_MARKERS)]
    assert not research, research
    backend = [n.split("/") for n in names if n.startswith("backend/")]
    assert {p[1] for p in backend if len(p) > 2} == RUNTIME_PACKAGES
    assert {p[2] for p in backend if len(p) > 3 and p[1] == "methods"} == METHODS


def test_every_backend_module_in_the_zip_is_reached_from_the_entry_points(
    extension_zip: Path, tmp_path: Path
) -> None:
    """Each shipped ``backend`` module is imported (directly, or by a module name the runtime passes
    to ``importlib``) from the backend's entry points: nothing in the zip is there for research."""
    zipfile.ZipFile(extension_zip).extractall(tmp_path)
    shipped = {module_name(path.relative_to(tmp_path)) for path in (tmp_path / "backend").rglob("*.py")}
    reached, todo = set(), list(ENTRY_POINTS)
    while todo:
        name = todo.pop()
        if name not in reached:
            reached.add(name)
            todo.extend(imported_modules(tmp_path, name) - reached)
    assert shipped - reached == set()


def module_name(path: Path) -> str:
    parts = path.with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_file(root: Path, name: str) -> Path | None:
    base = root.joinpath(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(root: Path, name: str) -> set[str]:
    """The ``backend`` modules (and their parent packages) that module ``name`` imports or names."""
    path = module_file(root, name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    named: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            named.add(base)
            named.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            named.add(node.value)
            module, colon, _ = node.value.partition(":")  # a lazy export, "module:attribute" in package
            if colon and module.isidentifier():
                named.add(f"{package}.{module}")
    found = set()
    for dotted in named:
        parts = dotted.split(".")
        for end in range(1, len(parts) + 1):
            prefix = ".".join(parts[:end])
            if parts[0] == "backend" and module_file(root, prefix) is not None:
                found.add(prefix)
    return found
