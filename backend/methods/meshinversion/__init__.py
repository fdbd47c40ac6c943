"""MeshInversion (Zhang et al., ECCV 2022): invert a ConvMesh textured-mesh GAN to fit one photo."""

from backend.methods.meshinversion.convert import convert_official

__all__ = ["convert_official"]
