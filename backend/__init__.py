"""Reconstruct from Image: the compute backend (torch, numpy, pillow).

Kept import-light on purpose: the Blender add-on imports ``backend.protocol`` from the bundled
copy of this package without torch, so nothing here may import torch or numpy.
"""

__version__ = "0.1.0"
