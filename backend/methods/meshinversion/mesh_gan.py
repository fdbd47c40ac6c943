"""A loaded ConvMesh generator with its template: latent -> textured mesh -> rendering.

Rendering follows the official texture lookup exactly on our renderer: the texture is padded by
one column circularly (the seam wraps) and the UVs are remapped so that a UV (u, v) reads column
T u - 1/2 and row (1 - v)(T - 1), as kaolin's ``align_corners=True`` sampler of the padded
texture does. The same row remapping is applied to exported UVs, so Blender shows what the
optimisation saw. Renders are unlit (colour = texture), back faces culled, as in the official code.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from backend.methods.meshinversion.camera_search import WeakPerspective
from backend.methods.meshinversion.generator import Generator, GeneratorConfig
from backend.methods.meshinversion.template import SphereTemplate, sphere_template
from backend.render.interpolate import interpolate_corner_attributes, sample_texture
from backend.render.rasterize import rasterize
from backend.render.silhouette import contour_crossings, coverage
from backend.render.topology import EdgeTopology, build_edge_topology


def exported_uvs(corner_uvs: torch.Tensor, texture_height: int) -> torch.Tensor:
    """Per-corner UVs for a viewer sampling at texel centres (Blender, glTF) that reproduce the
    official lookup: v' puts row (1 - v)(T - 1) at the texel centre; u already matches (T u - 1/2)."""
    v = 1 - ((1 - corner_uvs[..., 1]) * (texture_height - 1) + 0.5) / texture_height
    return torch.stack((corner_uvs[..., 0], v), dim=-1)


def render_uvs(
    corner_uvs: torch.Tensor, texture_width: int, texture_height: int, symmetric: bool
) -> torch.Tensor:
    """Per-corner UVs into the column-padded texture of ``pad_texture`` for our renderer's sampler.

    Symmetric models: one column on each side, u' = (T u + 1) / (T + 2) (column T u - 1/2 with
    wrap). Otherwise the first column is appended on the right and u reads column T u (official).
    """
    uv = exported_uvs(corner_uvs, texture_height)
    if symmetric:
        u = (uv[..., 0] * texture_width + 1) / (texture_width + 2)
    else:
        u = (uv[..., 0] * texture_width + 0.5) / (texture_width + 1)
    return torch.stack((u, uv[..., 1]), dim=-1)


def viewer_render_uvs(uvs: torch.Tensor, texture_width: int) -> torch.Tensor:
    """Exported (viewer) UVs -> UVs into a texture padded by one wrapped column on each side
    (``pad_texture(symmetric=True)``): u reads column W u - 1/2 with wrap, v is unchanged."""
    return torch.stack(((uvs[..., 0] * texture_width + 1) / (texture_width + 2), uvs[..., 1]), dim=-1)


def pad_texture(texture: torch.Tensor, symmetric: bool) -> torch.Tensor:
    """(B, 3, T, T) -> the column-padded texture ``render_uvs`` addresses."""
    if symmetric:
        return torch.cat((texture[..., -1:], texture, texture[..., :1]), dim=-1)
    return torch.cat((texture, texture[..., :1]), dim=-1)


def finite(vertices: torch.Tensor) -> torch.Tensor:
    """Stop with a clear error before NaN/Inf vertices reach the rasteriser (or the optimiser)."""
    if not bool(torch.isfinite(vertices).all()):
        raise FloatingPointError("meshinversion diverged: the generator produced NaN/Inf vertices")
    return vertices


@dataclass
class Rendering:
    """``rgb`` (B, 3, H, W) in [-1, 1] (0 on background), ``mask`` (B, H, W) bool coverage and, when
    asked for, ``alpha`` (B, H, W): the coverage antialiased along the contour, differentiable there."""

    rgb: torch.Tensor
    mask: torch.Tensor
    alpha: torch.Tensor | None = None


class MeshGAN:
    """The generator (frozen, eval mode) plus the sphere template its displacement maps belong to."""

    def __init__(self, generator: Generator) -> None:
        self.generator = generator.eval().requires_grad_(False)
        self.config: GeneratorConfig = generator.config
        self.template: SphereTemplate = sphere_template(self.config.template_rings)

    @property
    def device(self) -> torch.device:
        return self.generator.fc.weight.device

    @cached_property
    def faces(self) -> torch.Tensor:
        return self.template.faces.to(self.device)

    @cached_property
    def uvs_for_rendering(self) -> torch.Tensor:
        size = self.config.texture_resolution
        return render_uvs(self.template.corner_uvs, size, size, self.config.symmetric).to(self.device)

    def labels(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """Labels for conditional models (None passes through for unconditional ones)."""
        return labels if self.config.n_classes else None

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, latent) -> texture (B, 3, T, T) in [-1, 1] and vertices (B, V, 3) in object space."""
        texture, displacement = self.generator(z, self.labels(labels))
        return texture, self.displace(displacement)

    def displace(self, displacement: torch.Tensor) -> torch.Tensor:
        """(B, 3, 32, 32) displacement map -> (B, V, 3) template vertices, mirrored for symmetric models."""
        return finite(self.template.displace(displacement, self.config.symmetric))

    def shape(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """(B, V, 3) vertices only (skips the texture branch)."""
        return self.displace(self.generator.displacement(z, self.labels(labels)))

    @cached_property
    def topology(self) -> EdgeTopology:
        return build_edge_topology(self.faces)

    def render(
        self,
        vertices: torch.Tensor,
        texture: torch.Tensor,
        camera: WeakPerspective,
        size: int,
        silhouette: bool = False,
    ) -> Rendering:
        """Unlit render of textured meshes through weak-perspective cameras at ``size`` x ``size``;
        ``silhouette`` adds the antialiased coverage (the official losses use the hard mask only)."""
        screen = camera.camera().project(vertices)
        fragments = rasterize(screen, self.faces, size, cull_backfaces=True)
        uv = interpolate_corner_attributes(fragments, self.uvs_for_rendering)
        rgb = sample_texture(pad_texture(texture, self.config.symmetric), uv) * fragments.mask[..., None]
        alpha = None
        if silhouette:
            crossings = contour_crossings(screen, self.faces, self.topology, fragments.mask)
            alpha = coverage(fragments.mask, crossings)
        return Rendering(rgb.permute(0, 3, 1, 2), fragments.mask, alpha)

    @cached_property
    def exported_uvs(self) -> torch.Tensor:
        """(F, 3, 2) UVs of the exported mesh (texel-centre convention, any texture size)."""
        return exported_uvs(self.template.corner_uvs, self.config.texture_resolution).to(self.device)

    def render_exported(
        self, vertices: torch.Tensor, texture: torch.Tensor, camera: WeakPerspective, size: int,
        mesh: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> Rendering:
        """Unlit render with a (B, 3, N, N) texture in [-1, 1] of any size N, addressed by the exported
        UVs as Blender and glTF viewers do (the texture stage writes such textures); ``mesh``: other
        (faces, exported corner UVs) for ``vertices`` than the template's (a denser export)."""
        faces, exported = mesh or (self.faces, self.exported_uvs)
        screen = camera.camera().project(vertices)
        fragments = rasterize(screen, faces, size, cull_backfaces=True)
        uvs = viewer_render_uvs(exported, texture.shape[-1])
        uv = interpolate_corner_attributes(fragments, uvs)
        rgb = sample_texture(pad_texture(texture, symmetric=True), uv) * fragments.mask[..., None]
        return Rendering(rgb.permute(0, 3, 1, 2), fragments.mask)

    def silhouette(self, vertices: torch.Tensor, camera: WeakPerspective, size: int) -> torch.Tensor:
        """(B, H, W) bool coverage without any texture work."""
        return rasterize(camera.camera().project(vertices), self.faces, size, cull_backfaces=True).mask
