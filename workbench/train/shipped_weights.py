"""The manifest entry of a trained file shipped in ``weights/``: written in place, so the entries of
other files (and the manifest's comments) stay byte-identical."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

from backend.weights import sha256_file, toml_table


def register_shipped_file(
    target: Path, method: str, weights_id: str, category: str, source: str, train_command: str,
    config: dict[str, object],
) -> dict[str, object]:
    """Upsert the manifest entry of a weights file just written to ``weights/`` (its size and sha256
    read from the file) and return it."""
    entry = {
        "id": weights_id,
        "method": method,
        "category": category,
        "file": target.name,
        "sha256": sha256_file(target),
        "size": target.stat().st_size,
        "source": source,
        "licence": "GPL-3.0-or-later (same as the project)",
        "train_command": train_command,
        "config": config,
    }
    upsert_manifest_entry(target.parent / "manifest.toml", entry)
    return entry


def upsert_manifest_entry(manifest: Path, entry: dict[str, object]) -> None:
    """Replace the ``[[weights]]`` block with ``entry['id']`` (or append it), leaving the rest untouched.

    Other engineers' entries and comments stay byte-identical; the result is parsed back before the
    atomic replace, so a bad value can never leave a broken manifest.
    """
    config = entry["config"]
    assert isinstance(config, dict)
    lines = toml_table("[[weights]]", {k: v for k, v in entry.items() if k != "config"})
    lines += toml_table("[weights.config]", config)
    block = "\n".join(lines) + "\n\n"
    text = manifest.read_text(encoding="utf-8") if manifest.exists() else ""
    head, *blocks = re.split(r"(?m)^(?=\[\[weights\]\]\s*$)", text)
    ids = [tomllib.loads(b)["weights"][0].get("id") for b in blocks]
    if entry["id"] in ids:
        blocks[ids.index(entry["id"])] = block
    else:
        if blocks:
            blocks[-1] = blocks[-1].rstrip("\n") + "\n\n"
        else:
            head = head.rstrip("\n") + "\n\n" if head.strip() else ""
        blocks.append(block)
    new_text = head + "".join(blocks)
    parsed = [e for e in tomllib.loads(new_text)["weights"] if e["id"] == entry["id"]]
    if parsed != [entry]:
        raise ValueError(f"manifest entry {entry['id']} did not survive a TOML round trip")
    tmp = manifest.with_name(f".{manifest.name}.tmp{os.getpid()}")
    tmp.write_text(new_text, encoding="utf-8")
    os.replace(tmp, manifest)
