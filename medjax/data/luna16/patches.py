"""World -> voxel geometry, HU windowing and axial patch cutting.

Volumes are arrays [z, y, x] with physical = origin + D @ (spacing * index), D the direction
matrix (columns are the image axes; some LUNA16 scans are flipped).
"""

from __future__ import annotations

import dataclasses

import numpy as np

HU_WINDOW = (-1000.0, 400.0)


@dataclasses.dataclass(frozen=True)
class Geometry:
  """Where a volume lies in world space; `shape` is the array shape [z, y, x]."""
  origin: np.ndarray     # (3,) x, y, z mm
  spacing: np.ndarray    # (3,) mm per voxel along the image axes i, j, k
  direction: np.ndarray  # (3, 3), columns are the image axes in world coordinates
  shape: tuple[int, int, int] = (0, 0, 0)

  def world_to_index(self, world) -> np.ndarray:
    """Continuous (i, j, k) = (x, y, z) image index of world points [..., 3]: D^-1 (p - o) / s."""
    p = np.asarray(world, np.float64) - self.origin
    return np.linalg.solve(self.direction, p.reshape(-1, 3).T).T.reshape(p.shape) / self.spacing

  def index_to_world(self, index) -> np.ndarray:
    return self.origin + (np.asarray(index, np.float64) * self.spacing) @ self.direction.T

  def world_to_voxel(self, world) -> np.ndarray:
    """Nearest voxel as array indices [..., (z, y, x)] (int64, may lie outside the volume).

    Rounds half up like SimpleITK's TransformPhysicalPointToIndex.
    """
    return np.floor(self.world_to_index(world) + 0.5).astype(np.int64)[..., ::-1]


def window_hu(hu: np.ndarray, window=HU_WINDOW) -> np.ndarray:
  """Clips to the HU window [lo, hi] and scales to [0, 1] (float32)."""
  lo, hi = window
  if not hi > lo:
    raise ValueError(f"HU window must have hi > lo, got {window}")
  return np.clip((np.asarray(hu, np.float32) - lo) / (hi - lo), 0.0, 1.0)


def to_uint8(unit: np.ndarray) -> np.ndarray:
  return np.round(unit * 255).astype(np.uint8)


def cut_patches(volume: np.ndarray, centres: np.ndarray, size: int = 50, slices: int = 1,
                pad_value=-1000) -> tuple[np.ndarray, np.ndarray]:
  """Axial patches [N, size, size, slices] around voxel centres [N, (z, y, x)].

  The centre voxel lands at row/column size // 2 and the middle channel; what falls outside
  the volume is `pad_value` (air). Also returns, per patch, whether its centre is inside.
  """
  centres = np.asarray(centres, np.int64).reshape(-1, 3)
  out = np.full((len(centres), slices, size, size), pad_value, volume.dtype)
  lo = centres - np.array([slices // 2, size // 2, size // 2])
  hi = lo + np.array([slices, size, size])
  src_lo = np.maximum(lo, 0)
  src_hi = np.minimum(hi, volume.shape)
  for n in range(len(centres)):
    (z0, y0, x0), (z1, y1, x1) = src_lo[n], src_hi[n]
    if z1 > z0 and y1 > y0 and x1 > x0:
      dz, dy, dx = src_lo[n] - lo[n]
      out[n, dz:dz + z1 - z0, dy:dy + y1 - y0, dx:dx + x1 - x0] = volume[z0:z1, y0:y1, x0:x1]
  inside = np.all((centres >= 0) & (centres < np.array(volume.shape)), axis=1)
  return out.transpose(0, 2, 3, 1), inside


def dihedral(images: np.ndarray, k: np.ndarray) -> np.ndarray:
  """Applies dihedral transform k (0..7: rot90 by k % 4, then a left-right flip if k >= 4)."""
  out = images.copy()
  for n, kn in enumerate(np.asarray(k)):
    img = np.rot90(images[n], kn % 4, axes=(0, 1))
    out[n] = img[:, ::-1] if kn >= 4 else img
  return out
