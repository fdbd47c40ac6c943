"""Loss terms of the published objectives that need weights nobody can ship here.

A run without their weights leaves the term off (``result.json`` notes say so per run); this module
is the one list of them, read by ``doctor`` and sent in the handshake so the add-on's panel can say
before a run which terms will be off and how to switch them on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from backend.methods.meshinversion.vgg import VGG_CONFIG
from backend.protocol import PublishedTerm


@dataclass(frozen=True)
class TermWeights:
    """A published term and the weights entry that switches it on."""

    method: str
    term: str
    detail: str
    marker: tuple[str, str]
    """(config key, value) of the weights entry that serves the term."""
    import_command: str


PUBLISHED_TERMS = (
    TermWeights("meshinversion", "VGG19 feature loss", "relu3_1, weight 0.04 in the paper",
                ("network", VGG_CONFIG["network"]),
                "python -m backend weights import vgg19.pth --method meshinversion --category vgg19"),
    TermWeights("gan2shape", "perceptual (LPIPS) loss", "its VGG16 backbone",
                ("kind", "vgg16"),
                "python -m backend weights import vgg16.pth --method gan2shape --category vgg16"),
    TermWeights("gan2shape", "LPIPS v0.1 heads", "equal channel weights without them",
                ("kind", "lpips"),
                "python -m backend weights import lpips_vgg.pth --method gan2shape --category lpips"),
)  # fmt: skip


def term_status(entries: list[Any]) -> list[PublishedTerm]:
    """Each published term with whether a registered weights entry switches it on."""
    return [
        PublishedTerm(
            method=t.method,
            term=t.term,
            detail=t.detail,
            on=any(e.method == t.method and e.config.get(t.marker[0]) == t.marker[1] for e in entries),
            import_command=t.import_command,
        )
        for t in PUBLISHED_TERMS
    ]
