"""MeshInversion (Zhang et al., ECCV 2022): invert a ConvMesh textured-mesh GAN to fit one photo."""

from backend.methods.meshinversion.method import MeshInversion

METHOD = MeshInversion

__all__ = ["METHOD"]
