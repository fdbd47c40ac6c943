"""A folder's whole content as a comparable value, for tests that promise "nothing was touched"."""

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
