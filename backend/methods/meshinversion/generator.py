"""ConvMesh textured-mesh generator (Pavllo et al. 2020), as used unchanged by MeshInversion.

Module names, parameter names, buffer names and shapes follow the official ``Generator`` so a
released ``generator_running_avg`` state dict loads with ``strict=True``. ``GeneratorConfig.width``
scales every channel count so the same class also builds the small demo models.

Output of ``Generator.forward``: a UV texture (B, 3, T, T) in [-1, 1] and a displacement map
(B, 3, 32, 32) whose channels are offsets along each template vertex's normal, tangent and
bitangent (see ``template.py``). Row 0 of both maps is the north pole (v = 1); in symmetric mode
the generated half occupies the central columns (u in [0.25, 0.75], the x >= 0 side of the mesh).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

NORMS = ("batch", "instance", "none")
BASE_CHANNELS = (512, 256, 128, 64)
"""Official channel counts of the trunk, the texture/mesh branches and the last texture block."""
MESH_MAP_SIZE = 32
START_SIZE = 8
"""``fc`` reshapes to an 8x8 grid (8x4 when symmetric), upsampled twice to the 32x32 mesh map."""


@dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of one generator; stored as the ``config`` table of a weights-store entry.

    ``n_classes`` = 0 builds the unconditional variant; ``n_colors`` > 0 adds ConvMesh's Pascal3D
    colour embedding next to the class embedding. ``template_rings`` names the sphere template the
    displacement maps belong to (16 for CUB, 31 for the Pascal3D car models); the network itself
    does not depend on it.
    """

    latent_dim: int = 64
    n_classes: int = 0
    n_colors: int = 0
    texture_resolution: int = 512
    symmetric: bool = True
    norm: str = "batch"
    width: float = 1.0
    template_rings: int = 16

    def __post_init__(self) -> None:
        checks = [
            (self.latent_dim > 0 and (self.n_colors == 0 or self.latent_dim % 2 == 0), "latent_dim"),
            (self.n_classes >= 0 and self.n_colors >= 0, "n_classes/n_colors"),
            (self.n_colors == 0 or self.n_classes > 0, "n_colors needs n_classes"),
            (self.texture_resolution in (256, 512, 1024), "texture_resolution must be 256, 512 or 1024"),
            (self.norm in NORMS, f"norm must be one of {NORMS}"),
            (self.width > 0, "width must be positive"),
            (self.template_rings in (16, 31), "template_rings must be 16 or 31"),
        ]
        for ok, what in checks:
            if not ok:
                raise ValueError(f"invalid generator config: {what} ({self})")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        """Build from a manifest ``config`` table; unknown keys are an error so typos never pass."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown generator config key(s): {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def channels(self) -> tuple[int, int, int, int]:
        """The official (512, 256, 128, 64) scaled by ``width`` (at least 4 channels each)."""
        return tuple(max(4, round(c * self.width)) for c in BASE_CHANNELS)  # type: ignore[return-value]

    @property
    def embedding_dim(self) -> int:
        """Length of the conditioning vector fed to ``fc`` and every conditional norm."""
        return 2 * self.latent_dim if self.n_classes else self.latent_dim


def replicate_pad_width(x: torch.Tensor, amount: int) -> torch.Tensor:
    """Pad the width by edge replication: emulates even-mirror padding at the symmetry plane."""
    return F.pad(x, (amount, amount, 0, 0), mode="replicate")


def circular_pad_width(x: torch.Tensor, amount: int) -> torch.Tensor:
    """Pad the width circularly: the UV map wraps around the sphere's seam."""
    return torch.cat((x[..., -amount:], x, x[..., :amount]), dim=-1)


def adjust_poles(mesh_map: torch.Tensor) -> torch.Tensor:
    """Replace the first and last rows by their mean: every column of those rows is the same pole."""
    top = mesh_map[:, :, :1].mean(dim=3, keepdim=True).expand_as(mesh_map[:, :, :1])
    bottom = mesh_map[:, :, -1:].mean(dim=3, keepdim=True).expand_as(mesh_map[:, :, -1:])
    return torch.cat((top, mesh_map[:, :, 1:-1], bottom), dim=2)


def symmetrize_map(half: torch.Tensor) -> torch.Tensor:
    """(B, C, H, N) generated half -> (B, C, H, 2N) full map, mirrored about u = 0.25 and u = 0.75.

    The half lands in the central columns; the flipped half fills both ends, so the mirror
    x -> -x of the mesh (u -> 0.5 - u) maps the map onto itself.
    """
    quarter = half.shape[-1] // 2
    flipped = half.flip(-1)
    return torch.cat((flipped[..., quarter:], half, flipped[..., :quarter]), dim=-1)


class ConditionalBatchNorm2d(nn.Module):
    """Normalisation without affine parameters, modulated by (1 + gamma(e)) and beta(e)."""

    def __init__(self, channels: int, embedding_dim: int, norm: str) -> None:
        super().__init__()
        if norm == "batch":
            self.norm: nn.Module = nn.BatchNorm2d(channels, affine=False)
        elif norm == "instance":
            self.norm = nn.InstanceNorm2d(channels, affine=False)
        else:
            self.norm = nn.Identity()
        self.fc_gamma = nn.Linear(embedding_dim, channels)
        self.fc_beta = nn.Linear(embedding_dim, channels)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        gamma = self.fc_gamma(e)[:, :, None, None]
        beta = self.fc_beta(e)[:, :, None, None]
        return self.norm(x) * (1 + gamma) + beta


def spectral_conv(ch_in: int, ch_out: int, kernel: int) -> nn.Module:
    """Bias-free conv, zero-padded in height only (the width is padded by the caller), spectrally normed
    with PyTorch's own hook so the ``weight_orig``/``weight_u``/``weight_v`` keys match the official ones."""
    padding = (kernel // 2, 0)
    return nn.utils.spectral_norm(nn.Conv2d(ch_in, ch_out, kernel, padding=padding, bias=False))


class ResBlockUp(nn.Module):
    """Two 3x3 convs with conditional norms plus a (1x1 conv when needed) shortcut.

    Despite the official name it does not upsample; the generator upsamples between blocks.
    """

    def __init__(self, ch_in: int, ch_out: int, embedding_dim: int, norm: str, symmetric: bool) -> None:
        super().__init__()
        ch_mid = min(ch_in, ch_out)
        self.conv1 = spectral_conv(ch_in, ch_mid, 3)
        self.conv2 = spectral_conv(ch_mid, ch_out, 3)
        self.norm1 = ConditionalBatchNorm2d(ch_mid, embedding_dim, norm)
        self.norm2 = ConditionalBatchNorm2d(ch_out, embedding_dim, norm)
        self.shortcut = spectral_conv(ch_in, ch_out, 1) if ch_in != ch_out else nn.Identity()
        self.pad = replicate_pad_width if symmetric else circular_pad_width

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        skip = self.shortcut(x)
        x = F.leaky_relu(self.norm1(self.conv1(self.pad(x, 1)), e), 0.2)
        x = F.leaky_relu(self.norm2(self.conv2(self.pad(x, 1)), e), 0.2)
        return x + skip


class Generator(nn.Module):
    """z (B, latent_dim) [+ class labels] -> (texture (B,3,T,T) in [-1,1], displacement (B,3,32,32)).

    Attribute names and registration order equal the official ones, so ``state_dict()`` keys come
    out in the official order: emb_class, (emb_color), fc, blk1, blk2, blk3a, (blk3b, blk3c), blk4,
    blk5, blk6, conv_final, blk3_mesh, conv_mesh.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        c_trunk, c_mid, c_tex, c_last = config.channels
        emb = config.embedding_dim
        self.start_width = START_SIZE // 2 if config.symmetric else START_SIZE
        self.pad = replicate_pad_width if config.symmetric else circular_pad_width

        if config.n_colors:
            self.emb_class = nn.Embedding(config.n_classes, config.latent_dim // 2)
            self.emb_color = nn.Embedding(config.n_colors, config.latent_dim // 2)
        elif config.n_classes:
            self.emb_class = nn.Embedding(config.n_classes, config.latent_dim)
        self.fc = nn.Linear(emb, START_SIZE * self.start_width * c_trunk)

        def block(ch_in: int, ch_out: int) -> ResBlockUp:
            return ResBlockUp(ch_in, ch_out, emb, config.norm, config.symmetric)

        self.blk1 = block(c_trunk, c_trunk)
        self.blk2 = block(c_trunk, c_mid)
        self.blk3a = block(c_mid, c_mid)
        if config.texture_resolution >= 512:
            self.blk3b = block(c_mid, c_mid)
        if config.texture_resolution >= 1024:
            self.blk3c = block(c_mid, c_mid)
        self.blk4 = block(c_mid, c_tex)
        self.blk5 = block(c_tex, c_tex)
        self.blk6 = block(c_tex, c_last)
        self.conv_final = nn.Conv2d(c_last, 3, 5, padding=(2, 0))
        self.blk3_mesh = block(c_mid, c_last)
        self.conv_mesh = nn.Conv2d(c_last, 3, 5, padding=(2, 0))
        # Zero displacement at initialisation: training starts from the smooth sphere.
        nn.init.zeros_(self.conv_mesh.weight)
        nn.init.zeros_(self.conv_mesh.bias)

    def texture_blocks(self) -> list[ResBlockUp]:
        """The upsampling texture blocks present at this resolution, in forward order."""
        names = ["blk3a", "blk3b", "blk3c", "blk4", "blk5"]
        return [getattr(self, n) for n in names if hasattr(self, n)]

    def conditioning(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """cat(z, class embedding[, colour embedding]) for conditional models, z otherwise."""
        if not self.config.n_classes:
            return z
        if labels is None:
            raise ValueError("this generator is class-conditional: pass class labels")
        labels = labels.reshape(z.shape[0], -1)
        parts = [z, self.emb_class(labels[:, 0])]
        if self.config.n_colors:
            if labels.shape[1] < 2:
                raise ValueError("this generator is also colour-conditional: pass (class, colour) labels")
            parts.append(self.emb_color(labels[:, 1]))
        return torch.cat(parts, dim=1)

    def trunk(self, z: torch.Tensor, labels: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Shared features at the mesh-map resolution and the conditioning vector."""
        e = self.conditioning(z, labels)
        x = self.fc(e).view(z.shape[0], -1, START_SIZE, self.start_width)
        x = _up(self.blk1(x, e))
        return _up(self.blk2(x, e)), e

    def mesh_head(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        mesh = F.leaky_relu(self.blk3_mesh(x, e), 0.2)
        mesh = adjust_poles(self.conv_mesh(self.pad(mesh, 2)))
        return symmetrize_map(mesh) if self.config.symmetric else mesh

    def texture_head(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        for blk in self.texture_blocks():
            x = _up(blk(x, e))
        tex = F.leaky_relu(self.blk6(x, e), 0.2)
        tex = torch.tanh(self.conv_final(self.pad(tex, 2)))
        return symmetrize_map(tex) if self.config.symmetric else tex

    def displacement(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Only the displacement map: the texture branch holds most of the cost, and shape-only
        steps (camera search, mean shape) do not need it."""
        return self.mesh_head(*self.trunk(z, labels))

    def forward(
        self, z: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x, e = self.trunk(z, labels)
        return self.texture_head(x, e), self.mesh_head(x, e)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")
