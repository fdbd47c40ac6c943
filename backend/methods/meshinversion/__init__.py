"""MeshInversion (Zhang et al., ECCV 2022): invert a ConvMesh textured-mesh GAN to fit one photo."""
