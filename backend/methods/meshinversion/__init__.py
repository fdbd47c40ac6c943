"""MeshInversion (Zhang et al., ECCV 2022): invert a ConvMesh textured-mesh GAN to fit one photo.

``METHOD`` loads on first use, so ``options`` imports without torch.
"""

from __future__ import annotations

from .. import lazy_exports

__all__ = ["METHOD"]
__getattr__ = lazy_exports(__name__, {"METHOD": "method:MeshInversion"})
