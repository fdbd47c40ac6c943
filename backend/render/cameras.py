"""Cameras (world -> screen) and THE definition of every frame the renderer uses.

Frames
------
* **world**: whatever the caller uses (the project's canonical object frame is x left-right,
  y up, z the object's front).
* **view**: the camera frame of OpenCV, Unsup3d/GAN2Shape and MeshInversion before its final
  flip: x right, y DOWN, z forward (away from the camera). Right-handed. A camera maps world to
  view with a linear map plus a translation.
* **NDC**: x right in [-1, 1] across the image width, y UP in [-1, 1] across its height. The
  centre of pixel (row i, column j) is x = (2j + 1 - W) / W, y = (H - 2i - 1) / H; row 0 is the
  top of the image (as in DIB-R/kaolin; pytorch3d is the same except that its x points left).
* **screen vertices** (B, V, 3) = (x_ndc, y_ndc, depth) with depth = view z, smaller is nearer.
  This is what ``rasterize`` takes; the cameras below produce it.

Projection
----------
* Orthographic / weak perspective: view = scale * (R @ v) + t; x_ndc = view_x, y_ndc = -view_y.
* Perspective: view = R @ v + t; x_ndc = focal * X / Z, y_ndc = -focal_y * Y / Z (focal_y
  defaults to focal); faces with a vertex at Z <= near are dropped (no clipping).
  focal = 1 / tan(fov / 2) makes the field of view span the full image width.
* NDC spans each axis separately, so on a non-square W x H image square pixels need the y scale
  multiplied by W / H: ``focal_y = focal * W / H``, or for the orthographic camera a rotation
  argument whose y row is scaled by W / H (any linear map is accepted).

Winding: with a proper R (det > 0), a face wound counter-clockwise seen from outside has a
positive signed area in NDC when it faces the camera. Back-face culling drops the others.

Textures: UVs per face corner, u to the right and v up (Blender/OpenGL); texture row 0 is the
top (v = 1); sampling uses ``align_corners=False`` (u = 0 is the left edge of the first texel).

Outputs: images are channels-last (B, H, W, C) with row 0 at the top; depth images hold the view z
(0 on background); normal images hold unit outward normals in the view frame. Internally the
rasteriser works in pixel units with y up (``screen_to_pixels``): pixel (i, j) is centred at
(j, H - 1 - i).

The two published conventions
-----------------------------
* MeshInversion: ``vtx = qrot(q, s * v) + t`` then ``vtx *= (1, -1, -1)``; x, y are NDC and the
  larger z wins. Its pre-flip frame is our view frame, and ``qrot`` is linear in v even for an
  un-normalised q, so ``weak_perspective_camera`` reproduces it exactly.
* GAN2Shape/Unsup3d: ``fx = (S - 1) / 2 / tan(fov / 2)``, ``cx = (S - 1) / 2`` in pixel units
  where pixel centres are integers (their ``depth_to_3d_grid``), i.e. focal = (S - 1) / S /
  tan(fov / 2) in NDC; R = Rz @ Ry @ Rx, points rotated about (0, 0, pivot_depth) and then
  translated. neural_renderer rasterised with a half-pixel offset against that grid; we follow
  the grid, so a depth map unprojected with Unsup3d's formula re-renders onto its own pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor


def _per_batch(value: Tensor | float, like: Tensor) -> Tensor:
    """A (B, 1, 1) tensor on ``like``'s device from a float, (), (B,) or (B, 1) value."""
    value = torch.as_tensor(value, dtype=like.dtype, device=like.device)
    return value.reshape(-1, 1, 1)


@dataclass
class OrthographicCamera:
    """Weak perspective: view = scale * (vertices @ rotation^T) + translation.

    ``rotation`` (B, 3, 3) may be any linear map (MeshInversion's un-normalised quaternion is not
    a rotation); ``scale`` (B,) or a float; ``translation`` (B, 3) in view units (x right, y down).
    """

    rotation: Tensor
    scale: Tensor | float
    translation: Tensor

    perspective: ClassVar[bool] = False

    def to_view(self, vertices: Tensor) -> Tensor:
        """World (B, V, 3) -> view frame (B, V, 3)."""
        scale = _per_batch(self.scale, vertices)
        return scale * (vertices @ self.rotation.transpose(1, 2)) + self.translation[:, None, :]

    def view_to_screen(self, view: Tensor) -> Tensor:
        """View (B, V, 3) -> screen (x_ndc, y_ndc, depth)."""
        return torch.stack((view[..., 0], -view[..., 1], view[..., 2]), dim=-1)

    def project(self, vertices: Tensor) -> Tensor:
        """World (B, V, 3) -> screen (B, V, 3)."""
        return self.view_to_screen(self.to_view(vertices))


@dataclass
class PerspectiveCamera:
    """Pinhole camera: view = vertices @ rotation^T + translation, x_ndc = focal * X / Z.

    ``focal`` (B,) or a float is in NDC units (1 / tan(fov / 2) for a field of view ``fov``
    across the image width); ``focal_y`` likewise for y, None meaning ``focal`` (square images);
    ``translation`` (B, 3) in the view frame (x right, y down, z forward).
    """

    rotation: Tensor
    translation: Tensor
    focal: Tensor | float
    focal_y: Tensor | float | None = None

    perspective: ClassVar[bool] = True

    def to_view(self, vertices: Tensor) -> Tensor:
        """World (B, V, 3) -> view frame (B, V, 3)."""
        return vertices @ self.rotation.transpose(1, 2) + self.translation[:, None, :]

    def view_to_screen(self, view: Tensor) -> Tensor:
        """View (B, V, 3) -> screen (x_ndc, y_ndc, depth); depth is the view z."""
        focal_x = _per_batch(self.focal, view)[..., 0]
        focal_y = focal_x if self.focal_y is None else _per_batch(self.focal_y, view)[..., 0]
        depth = view[..., 2]
        return torch.stack((view[..., 0] * focal_x / depth, -view[..., 1] * focal_y / depth, depth), dim=-1)

    def project(self, vertices: Tensor) -> Tensor:
        """World (B, V, 3) -> screen (B, V, 3)."""
        return self.view_to_screen(self.to_view(vertices))


def focal_from_fov(fov: float) -> float:
    """NDC focal length for a field of view ``fov`` (radians) across the full image width."""
    return 1.0 / math.tan(fov / 2.0)


def quaternion_matrix(quaternion: Tensor) -> Tensor:
    """(B, 4) quaternions (w, x, y, z), not necessarily unit -> (B, 3, 3) matrices.

    Returns the matrix of MeshInversion's ``qrot(q, v) = v + 2 (w (q x v) + q x (q x v))``,
    which is linear in v for any q but a rotation only when |q| = 1; MI never renormalises q,
    so neither do we.
    """
    w, vec = quaternion[:, :1], quaternion[:, 1:]
    zero = torch.zeros_like(w)
    x, y, z = vec[:, 0:1], vec[:, 1:2], vec[:, 2:3]
    cross = torch.cat((zero, -z, y, z, zero, -x, -y, x, zero), dim=1).reshape(-1, 3, 3)
    eye = torch.eye(3, dtype=quaternion.dtype, device=quaternion.device).expand_as(cross)
    return eye + 2.0 * (w[:, :, None] * cross + cross @ cross)


def euler_rotation_xyz(angles: Tensor) -> Tensor:
    """(B, 3) angles (rx, ry, rz) in radians -> R = Rz @ Ry @ Rx (Unsup3d's convention)."""
    cos, sin = angles.cos(), angles.sin()
    one, zero = torch.ones_like(cos[:, 0]), torch.zeros_like(cos[:, 0])
    cx, cy, cz = cos.unbind(1)
    sx, sy, sz = sin.unbind(1)
    rot_x = torch.stack((one, zero, zero, zero, cx, -sx, zero, sx, cx), 1).reshape(-1, 3, 3)
    rot_y = torch.stack((cy, zero, sy, zero, one, zero, -sy, zero, cy), 1).reshape(-1, 3, 3)
    rot_z = torch.stack((cz, -sz, zero, sz, cz, zero, zero, zero, one), 1).reshape(-1, 3, 3)
    return rot_z @ rot_y @ rot_x


def weak_perspective_camera(quaternion: Tensor, scale: Tensor, translation: Tensor) -> OrthographicCamera:
    """Weak perspective from a (B, 4) quaternion (w, x, y, z), (B,) or (B, 1) scale and (B, 2) or
    (B, 3) translation (its z is a dummy and does not move the image): MeshInversion's camera exactly."""
    if translation.shape[-1] == 2:
        translation = torch.cat((translation, torch.zeros_like(translation[:, :1])), dim=1)
    return OrthographicCamera(quaternion_matrix(quaternion), scale.reshape(-1), translation)


def pivot_perspective_camera(
    view: Tensor, image_size: int, fov_degrees: float = 10.0, pivot_depth: float = 1.0
) -> PerspectiveCamera:
    """Perspective camera that turns points about a pivot on its axis, from a 6-d view (rx, ry, rz in
    radians, tx, ty, tz) already scaled by the caller: the Unsup3d/GAN2Shape camera exactly
    (GAN2Shape: rotation = tanh output * 60 deg, txy = output * 0.1).

    Points are rotated about (0, 0, pivot_depth) in the camera frame, then translated:
    view = R (v - c) + c + t, so the camera translation is c - R c + t.
    """
    rotation = euler_rotation_xyz(view[:, :3])
    pivot = view.new_tensor([0.0, 0.0, pivot_depth])
    translation = pivot - rotation @ pivot + view[:, 3:6]
    focal = (image_size - 1) / image_size / math.tan(math.radians(fov_degrees) / 2.0)
    return PerspectiveCamera(rotation, translation, focal)


def screen_to_pixels(screen: Tensor, image_size: tuple[int, int]) -> Tensor:
    """Screen (..., >=2) -> pixel coordinates (px, qy), px to the right and qy UP, with the centre
    of pixel (row i, column j) at (j, H - 1 - i). Keeping y up preserves the NDC winding sign."""
    height, width = image_size
    px = (screen[..., 0] + 1.0) * (width / 2.0) - 0.5
    qy = (screen[..., 1] + 1.0) * (height / 2.0) - 0.5
    return torch.stack((px, qy), dim=-1)
