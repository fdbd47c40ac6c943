"""Weak-perspective camera of MeshInversion, and the search that replaces its CMR initialisation.

The camera (official convention): view = s * R(q) v + (tx, ty, 0) with view x right, y down,
z away from the camera; NDC x = view x, NDC y = -view y. MeshInversion optimises an
un-normalised quaternion; we normalise it inside ``rotation`` so the fitted camera is always a
rotation (the optimisation is otherwise the same, and the Blender camera needs a rotation).

The official code starts from a camera predicted by a pretrained CMR network. We have none, so
``search_cameras`` scores a grid of azimuth x elevation hypotheses: for each, scale and
translation come from the mask's bounding box (the bounding box of the projected vertices is
the silhouette's), a few Adam steps on the chamfer mask loss and the soft silhouette IoU refine
s, t and q, and the best ones by silhouette IoU are kept. A symmetric object seen from azimuth a
has the same silhouette as from 180 deg - a (mirrored elevation), so the final choice among the
kept hypotheses is left to the texture loss.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from backend.methods.meshinversion.losses import (
    chamfer_mask_loss,
    gather_points,
    mask_iou,
    mask_points,
    silhouette_loss,
    subsample,
)
from backend.render.cameras import OrthographicCamera, weak_perspective_camera
from backend.render.rasterize import rasterize
from backend.render.silhouette import contour_crossings, coverage
from backend.render.topology import EdgeTopology


def quaternion_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of (..., 4) quaternions (w, x, y, z): the rotation b, then a."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        (
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ),
        dim=-1,
    )


def view_quaternion(azimuth: torch.Tensor, elevation: torch.Tensor) -> torch.Tensor:
    """(N,) azimuth, elevation (radians) -> (N, 4) quaternion of the object -> view rotation.

    Azimuth 0, elevation 0 looks at the object's front (+z) with its up (+y) up in the image and
    its +x on the image's right. Positive azimuth turns the object about its up axis so its front
    swings to the image's right; positive elevation raises the camera (the top becomes visible).
    """
    zero = torch.zeros_like(azimuth)
    turn = torch.stack((torch.cos(azimuth / 2), zero, torch.sin(azimuth / 2), zero), dim=-1)
    front = torch.tensor([0.0, 1.0, 0.0, 0.0], device=azimuth.device).expand_as(turn)
    tilt = torch.stack((torch.cos(elevation / 2), torch.sin(elevation / 2), zero, zero), dim=-1)
    return quaternion_multiply(tilt, quaternion_multiply(front, turn))


def turn_around(quaternion: torch.Tensor) -> torch.Tensor:
    """(..., 4) views -> the same views of the object turned 180 deg about its up axis (front and back
    swapped): ``view_quaternion(a + pi, e)`` for ``view_quaternion(a, e)``."""
    half_turn = torch.tensor([0.0, 0.0, 1.0, 0.0], device=quaternion.device, dtype=quaternion.dtype)
    return quaternion_multiply(quaternion, half_turn.expand_as(quaternion))


@dataclass
class WeakPerspective:
    """Per-image camera parameters: ``quaternion`` (B, 4), ``scale`` (B,), ``translation`` (B, 2) in NDC
    units of the view frame (x right, y down)."""

    quaternion: torch.Tensor
    scale: torch.Tensor
    translation: torch.Tensor

    def camera(self) -> OrthographicCamera:
        return weak_perspective_camera(F.normalize(self.quaternion, dim=-1), self.scale, self.translation)

    def project_xy(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) object-space vertices -> (B, V, 2) NDC positions (y up)."""
        return self.camera().project(vertices)[..., :2]

    def parameters(self) -> list[torch.Tensor]:
        return [self.quaternion, self.scale, self.translation]

    def detach(self) -> WeakPerspective:
        return WeakPerspective(self.quaternion.detach(), self.scale.detach(), self.translation.detach())

    def index(self, rows: torch.Tensor) -> WeakPerspective:
        """The cameras at ``rows`` (a (K,) index or a bool mask)."""
        return WeakPerspective(self.quaternion[rows], self.scale[rows], self.translation[rows])

    def rotation(self) -> torch.Tensor:
        """(B, 3, 3) object -> view rotation."""
        return self.camera().rotation


def mask_box(target_xy: torch.Tensor, target_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 2) centre and (B, 2) size of the valid points' bounding box in NDC."""
    big = torch.finfo(target_xy.dtype).max
    low = target_xy.masked_fill(~target_valid[..., None], big).amin(dim=1)
    high = target_xy.masked_fill(~target_valid[..., None], -big).amax(dim=1)
    return (low + high) / 2, (high - low).clamp(min=1e-3)


def fit_box(
    vertices: torch.Tensor, quaternion: torch.Tensor, centre: torch.Tensor, size: torch.Tensor
) -> WeakPerspective:
    """Scale and translation that put the projected vertices' bounding box on the mask's.

    ``vertices`` (N, V, 3), ``quaternion`` (N, 4), ``centre``/``size`` (N, 2) of the mask box.
    The scale matches the geometric mean of the width and height ratios.
    """
    unit = WeakPerspective(quaternion, torch.ones_like(quaternion[:, 0]), torch.zeros_like(centre))
    xy = unit.project_xy(vertices)
    low, high = xy.amin(dim=1), xy.amax(dim=1)
    scale = torch.sqrt((size / (high - low).clamp(min=1e-3)).prod(dim=1))
    projected_centre = (low + high) / 2 * scale[:, None]
    shift = centre - projected_centre
    translation = torch.stack((shift[:, 0], -shift[:, 1]), dim=1)  # NDC y up -> view y down
    return WeakPerspective(quaternion, scale, translation)


def hypothesis_grid(azimuths: int, elevations_deg: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """(H, 4) quaternions for ``azimuths`` evenly spaced azimuths times the given elevations."""
    az = torch.arange(azimuths, device=device, dtype=torch.float32) * (2 * math.pi / azimuths)
    el = torch.tensor(elevations_deg, device=device, dtype=torch.float32).deg2rad()
    grid_az, grid_el = torch.meshgrid(az, el, indexing="ij")
    return view_quaternion(grid_az.reshape(-1), grid_el.reshape(-1))


def silhouettes(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    camera: WeakPerspective,
    size: int,
    topology: EdgeTopology | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Hard coverage (N, S, S) and, given the edge topology, the antialiased coverage (differentiable)."""
    screen = camera.camera().project(vertices)
    mask = rasterize(screen, faces, size, cull_backfaces=True).mask
    if topology is None:
        return mask, None
    return mask, coverage(mask, contour_crossings(screen, faces, topology, mask))


def search_cameras(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    topology: EdgeTopology,
    target_mask: torch.Tensor,
    quaternions: torch.Tensor,
    keep: int,
    refine_steps: int,
    rng: torch.Generator,
    points: int = 256,
    learning_rate: float = 0.01,
    on_step: Callable[[int, int], None] | None = None,
) -> tuple[WeakPerspective, torch.Tensor]:
    """Best ``keep`` cameras per image for a shape, by silhouette IoU after a short refinement.

    ``vertices`` (B, V, 3) the shape to place (e.g. the mean shape), ``target_mask`` (B, S, S) bool
    at the (coarse) search resolution, ``quaternions`` (H, 4) the hypotheses, or (B, H, 4) each
    image's own. All B * H hypotheses
    are refined in one batch by the chamfer mask loss (long-range pull, on ``points`` mask pixels)
    plus the soft silhouette IoU (the vertex chamfer alone barely tells rotations apart), then
    ranked by the IoU of their hard silhouettes. Returns cameras with batch B * keep (image-major)
    and their (B, keep) IoUs. ``on_step(step, total)`` runs after every refinement step (progress
    and cancel).
    """
    batch, hypotheses, size = vertices.shape[0], quaternions.shape[-2], target_mask.shape[-1]
    per_image = quaternions.reshape(-1, 4) if quaternions.dim() == 3 else quaternions.repeat(batch, 1)
    keep = min(keep, hypotheses)
    expand = torch.arange(batch, device=vertices.device).repeat_interleave(hypotheses)
    all_xy, all_valid = mask_points(target_mask)
    centre, extent = mask_box(all_xy, all_valid)
    index, valid = subsample(all_valid, points, rng)
    points_xy = gather_points(all_xy, index)[expand]
    valid, targets = valid[expand], target_mask[expand]
    shapes = vertices[expand]
    start = fit_box(shapes, per_image, centre[expand], extent[expand])
    cams = WeakPerspective(*(p.clone().requires_grad_() for p in start.parameters()))
    optimiser = torch.optim.Adam(cams.parameters(), lr=learning_rate, betas=(0.0, 0.99))
    for step in range(refine_steps):
        optimiser.zero_grad(set_to_none=True)
        _, alpha = silhouettes(shapes, faces, cams, size, topology)
        assert alpha is not None
        loss = chamfer_mask_loss(cams.project_xy(shapes), points_xy, valid) + silhouette_loss(alpha, targets)
        loss.sum().backward()
        optimiser.step()
        if on_step is not None:
            on_step(step + 1, refine_steps)
    with torch.no_grad():
        iou = mask_iou(silhouettes(shapes, faces, cams, size)[0], targets).view(batch, hypotheses)
    best, order = iou.topk(keep, dim=1)
    rows = (order + torch.arange(batch, device=vertices.device)[:, None] * hypotheses).reshape(-1)
    return cams.detach().index(rows), best
