"""GAN2Shape (Pan et al., ICLR 2021): 3D shape from a 2D image GAN, on a relief (depth-map) model."""

from backend.methods.gan2shape.method import METHOD

__all__ = ["METHOD"]
