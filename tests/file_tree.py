"""A folder's whole content as a comparable value, for tests that promise "nothing was touched", and
the linked output folder those tests write through."""

from __future__ import annotations

import os
from pathlib import Path


def tree(folder: Path) -> dict[str, object]:
    """Every entry under ``folder``: file bytes, link targets, folders; equal trees are byte-identical."""
    entries: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            entries[name] = ("link", os.readlink(path))
        else:
            entries[name] = path.read_bytes() if path.is_file() else "folder"
    return entries


def link_to_empty_folder(root: Path) -> tuple[Path, Path]:
    """``root/work/LINK`` -> the empty folder ``root/store/results``: an output path given as a link."""
    (root / "work").mkdir()
    target = root / "store" / "results"
    target.mkdir(parents=True)
    link = root / "work" / "LINK"
    link.symlink_to(target, target_is_directory=True)
    return link, target
