"""GAN2Shape (Pan et al., ICLR 2021): 3D shape from a 2D image GAN, on a relief (depth-map) model.

``METHOD`` loads on first use, so ``options`` imports without torch.
"""

from __future__ import annotations

from .. import lazy_exports

__all__ = ["METHOD"]
__getattr__ = lazy_exports(__name__, {"METHOD": "method:METHOD"})
