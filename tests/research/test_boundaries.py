"""The layers import downwards only: the shipped runtime (``backend/``) and the add-on never import
the research workbench or the benchmarks, which may import the runtime."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("backend", "blender_addon")
FORBIDDEN = ("workbench", "benchmarks", "backend.train")


def named_modules(path: Path) -> set[str]:
    """Modules ``path`` imports, absolute or relative, and dotted strings it could hand to importlib."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = (node.module or "").lstrip(".")
            names.add(base)
            names.update(f"{base}.{alias.name}".lstrip(".") for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)
    return names


def forbidden(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in FORBIDDEN) or (
        ".backend.train" in f".{name}"
    )


def test_runtime_and_addon_never_import_the_workbench_or_benchmarks() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {name}"
        for folder in SHIPPED
        for path in sorted((ROOT / folder).rglob("*.py"))
        for name in named_modules(path)
        if forbidden(name)
    }
    assert not offenders, sorted(offenders)


def test_the_check_sees_relative_and_importlib_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import importlib\nfrom .backend.train import x\nimportlib.import_module('workbench.data')\n"
    )
    assert {name for name in named_modules(sample) if forbidden(name)} == {
        "backend.train", "backend.train.x", "workbench.data"
    }
