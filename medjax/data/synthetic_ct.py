"""Synthetic LUNA16: small CT volumes written as real .mhd/.raw, with matching CSVs.

The embedded default behind `luna` experiments and the fixture of the raw-pipeline tests. Each
scan is an int16 HU volume (MET_SHORT) of about 184x184x48 voxels with its own origin and
spacing (0.6-0.85 mm in-plane, 1.25-2.5 mm slices); scans 1, 5, 9... have the x and y axes
flipped (direction diag(-1, -1, 1)), scans 3, 7, 11... the z axis, as some LUNA16 scans do.
Content, in HU: air outside the body, a soft-tissue chest wall, lung parenchyma with smooth
texture, branching vessels of 0.6-2.5 mm radius (which look like small nodules when cut
across), round nodules of 3.5-25 mm (solid or ground-glass, some touching the wall or a vessel),
and CT noise.

Files: `subset<k>/<seriesuid>.mhd|.raw`, `annotations.csv` (one row per nodule),
`candidates.csv` (1-3 positives per nodule, jittered as a CAD system would; negatives on
vessels, parenchyma, the wall, next to nodules, and a few near the volume border) and
`seriesuids.csv`. Deterministic in `seed`; written to a temp dir then renamed, and cached.
"""

from __future__ import annotations

import hashlib
import logging
import os

import numpy as np

from medjax.data.base import build_folder_atomically, cache_dir
from medjax.data.luna16 import tables, write_metaimage
from medjax.rundir import write_csv, write_text

log = logging.getLogger(__name__)

VERSION = 1
N_SCANS = 16
N_SUBSETS = 4           # scans go round-robin into subset0..3: fold 0 tests on a quarter
NODULES_PER_SCAN = (8, 13)
NEGATIVES_PER_POSITIVE = 7  # more than the default 5:1 subsampling keeps, as in real data



def seriesuid(seed: int, index: int) -> str:
  digest = int(hashlib.sha256(f"medjax-luna16-{seed}-{index}".encode()).hexdigest()[:24], 16)
  return f"1.3.6.1.4.1.14519.5.2.1.9999.{seed}.{digest}"


def direction_for(index: int) -> np.ndarray:
  if index % 4 == 1:
    return np.diag([-1.0, -1.0, 1.0])
  if index % 4 == 3:
    return np.diag([1.0, 1.0, -1.0])
  return np.eye(3)


def _sigmoid(x):
  return 0.5 * (1 + np.tanh(0.5 * x))


def _smooth_noise(rng, shape, scale_vox) -> np.ndarray:
  """Unit-variance low-frequency 3-D texture (white noise filtered in Fourier space)."""
  freqs = np.meshgrid(*[np.fft.fftfreq(n) * s for n, s in zip(shape, scale_vox)],
                      indexing="ij", sparse=True)
  radius2 = sum(f ** 2 for f in freqs)
  field = np.real(np.fft.ifftn(np.fft.fftn(rng.normal(size=shape)) * np.exp(-radius2)))
  return (field / (field.std() + 1e-8)).astype(np.float32)


class _Scan:
  """A volume being painted in HU; positions are continuous (i, j, k) = (x, y, z) indices."""

  def __init__(self, rng, index: int):
    self.rng = rng
    n_xy, n_z = int(rng.integers(168, 201)), int(rng.integers(40, 57))
    self.shape = (n_z, n_xy, n_xy)
    self.spacing = np.array([rng.uniform(0.6, 0.85)] * 2 + [rng.uniform(1.25, 2.5)])
    self.direction = direction_for(index)
    extent = self.spacing * np.array([n_xy, n_xy, n_z])
    # Origin so that the volume is centred near a plausible chest position.
    centre_world = np.array([rng.uniform(-60, 60), rng.uniform(-220, -140),
                             rng.uniform(-250, -100)])
    self.origin = centre_world - self.direction @ (extent / 2)
    self.hu = np.empty(self.shape, np.float32)
    self.nodules: list[tuple[np.ndarray, float]] = []  # (index xyz, diameter mm)
    self.vessels: list[tuple[np.ndarray, np.ndarray, float]] = []

  def to_world(self, index) -> np.ndarray:
    return self.origin + (np.asarray(index, np.float64) * self.spacing) @ self.direction.T

  def mm(self, index) -> np.ndarray:
    return np.asarray(index, np.float64) * self.spacing

  def _box(self, lo_mm, hi_mm):
    """Index ranges (z, y, x slices) and mm grids of the axis-aligned box [lo, hi] mm."""
    lo = np.maximum(np.floor(np.asarray(lo_mm) / self.spacing), 0).astype(int)
    hi = np.minimum(np.ceil(np.asarray(hi_mm) / self.spacing) + 1,
                    np.array(self.shape[::-1])).astype(int)
    if np.any(hi <= lo):
      return None
    sl = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    z, y, x = np.meshgrid(*[np.arange(l, h) * s for l, h, s in
                            zip(lo[::-1], hi[::-1], self.spacing[::-1])],
                          indexing="ij", sparse=True)
    return sl, x, y, z

  def body(self):
    rng = self.rng
    nz, ny, nx = self.shape
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float32)
    cy, cx = (ny - 1) / 2, (nx - 1) / 2
    r = np.sqrt(((x - cx) / (0.62 * nx)) ** 2 + ((y - cy) / (0.58 * ny)) ** 2)
    lung_edge = 1 - rng.uniform(10, 16) / (0.6 * nx * self.spacing[0])
    tissue = _sigmoid((r - lung_edge) * nx * 0.6)
    air = _sigmoid((r - 1.0) * nx * 0.6)
    texture = _smooth_noise(rng, self.shape, (6, 12, 12))
    lung = -850.0 + 40.0 * texture
    soft = 40.0 + 20.0 * texture
    self.hu[:] = lung * (1 - tissue) + soft * tissue
    self.hu[:] = self.hu * (1 - air) + -1000.0 * air
    self.lung_mask = (r < lung_edge - 0.04)
    self.wall_r = (r, lung_edge)

  def random_lung_point(self, margin_mm=0.0) -> np.ndarray:
    nz, ny, nx = self.shape
    for _ in range(1000):
      p = self.rng.uniform([0, 0, 0], [nx - 1, ny - 1, nz - 1])
      ok = self.lung_mask[int(round(p[1])), int(round(p[0]))]
      if ok and np.all(self.mm(p) >= margin_mm) and \
          np.all(self.mm(np.array([nx - 1, ny - 1, nz - 1]) - p) >= margin_mm):
        return p
    raise RuntimeError("no lung point found")

  def wall_point(self) -> np.ndarray:
    """A point in the lung just inside the chest wall."""
    r, edge = self.wall_r
    nz = self.shape[0]
    ys, xs = np.nonzero((r > edge - 0.08) & (r < edge - 0.03))
    i = self.rng.integers(len(ys))
    return np.array([xs[i], ys[i], self.rng.uniform(0, nz - 1)])

  def vessel(self, start, direction, length_mm, radius_mm):
    a = self.mm(start)
    b = a + direction / np.linalg.norm(direction) * length_mm
    box = self._box(np.minimum(a, b) - 3 * radius_mm, np.maximum(a, b) + 3 * radius_mm)
    self.vessels.append((a, b, radius_mm))
    if box is None:
      return
    sl, x, y, z = box
    ab = b - a
    t = np.clip(((x - a[0]) * ab[0] + (y - a[1]) * ab[1] + (z - a[2]) * ab[2]) / (ab @ ab), 0, 1)
    d = np.sqrt((x - a[0] - t * ab[0]) ** 2 + (y - a[1] - t * ab[1]) ** 2 +
                (z - a[2] - t * ab[2]) ** 2)
    profile = _sigmoid(-(d - radius_mm) / 0.35)
    target = self.rng.uniform(-10, 60)
    self.hu[sl] += (target - self.hu[sl]) * profile * self.lung_mask[None, sl[1], sl[2]]

  def nodule(self, centre, diameter_mm, density):
    c = self.mm(centre)
    radii = diameter_mm / 2 * self.rng.uniform(0.85, 1.15, 3)
    sl, x, y, z = self._box(c - radii.max() * 1.6, c + radii.max() * 1.6)
    r = np.sqrt(((x - c[0]) / radii[0]) ** 2 + ((y - c[1]) / radii[1]) ** 2 +
                ((z - c[2]) / radii[2]) ** 2)
    edge = self.rng.uniform(0.4, 1.2) / radii.min()
    profile = _sigmoid(-(r - 1) / edge)
    self.hu[sl] = np.maximum(self.hu[sl], self.hu[sl] + (density - self.hu[sl]) * profile)
    self.nodules.append((np.asarray(centre, np.float64), float(diameter_mm)))

  def distance_to_nodules_mm(self, p) -> float:
    if not self.nodules:
      return np.inf
    return min(np.linalg.norm(self.mm(p) - self.mm(c)) - d / 2 for c, d in self.nodules)


def render_scan(seed: int, index: int):
  """(int16 volume [z, y, x], origin, spacing, direction, nodules, candidates) for one scan.

  nodules: [(world xyz, diameter mm)]; candidates: [(world xyz, class)].
  """
  rng = np.random.default_rng([seed, index, VERSION])
  s = _Scan(rng, index)
  s.body()
  nz, ny, nx = s.shape

  for _ in range(int(rng.integers(10, 16))):  # vessel trees: a trunk and a few branches
    start = s.random_lung_point()
    d = rng.normal(size=3)
    d[2] *= rng.uniform(0.5, 3)  # many vessels run along z, crossing axial slices as blobs
    radius = rng.uniform(1.2, 2.5)
    s.vessel(start, d, rng.uniform(30, 80), radius)
    a, b, _ = s.vessels[-1]
    for _ in range(int(rng.integers(1, 4))):
      t = rng.uniform(0.2, 0.9)
      branch_start = (a + t * (b - a)) / s.spacing
      s.vessel(branch_start, d + rng.normal(size=3) * 1.2, rng.uniform(15, 40),
               radius * rng.uniform(0.4, 0.8))

  for n in range(int(rng.integers(*NODULES_PER_SCAN))):
    diameter = float(np.exp(rng.uniform(np.log(3.5), np.log(25.0))))
    kind = rng.random()
    if kind < 0.15:
      centre = s.wall_point()  # juxtapleural
    elif kind < 0.3 and s.vessels:  # juxtavascular: on a vessel
      a, b, _ = s.vessels[rng.integers(len(s.vessels))]
      centre = np.clip((a + rng.uniform(0.1, 0.9) * (b - a)) / s.spacing, 0,
                       np.array([nx - 1, ny - 1, nz - 1]))
    else:
      centre = s.random_lung_point(margin_mm=2.0)
    density = rng.uniform(-650, -350) if rng.random() < 0.2 else rng.uniform(-60, 80)
    s.nodule(centre, diameter, density)

  s.hu += rng.normal(0, rng.uniform(20, 40), s.shape).astype(np.float32)
  volume = np.clip(np.round(s.hu), -1024, 3071).astype(np.int16)

  nodules = [(s.to_world(c), d) for c, d in s.nodules]
  limits = np.array([nx - 1, ny - 1, nz - 1])
  candidates = []
  for c, d in s.nodules:
    for j in range(int(rng.integers(1, 4))):
      jitter = rng.normal(0, 0.08 if j == 0 else 0.2, 3) * d / s.spacing
      candidates.append((s.to_world(np.clip(c + jitter, 0, limits)), 1))
  n_neg = NEGATIVES_PER_POSITIVE * sum(1 for _, label in candidates if label)
  while n_neg > 0:
    kind = rng.random()
    if kind < 0.5 and s.vessels:
      a, b, _ = s.vessels[rng.integers(len(s.vessels))]
      p = (a + rng.uniform(0, 1) * (b - a)) / s.spacing
    elif kind < 0.7:
      p = s.random_lung_point()
    elif kind < 0.82:
      p = s.wall_point()
    elif kind < 0.95 and s.nodules:  # beside a nodule, outside it
      c, d = s.nodules[rng.integers(len(s.nodules))]
      u = rng.normal(size=3)
      p = c + u / np.linalg.norm(u) * (d / 2 + rng.uniform(3, 12)) / s.spacing
    else:  # near the volume border: exercises padding
      p = rng.uniform([0, 0, 0], limits)
      axis = rng.integers(2)
      p[axis] = rng.choice([rng.uniform(0, 6), limits[axis] - rng.uniform(0, 6)])
    p = np.clip(p, 0, limits)
    if s.distance_to_nodules_mm(p) < 2.0:
      continue
    candidates.append((s.to_world(p), 0))
    n_neg -= 1
  return volume, s.origin, s.spacing, s.direction, nodules, candidates


def write_dataset(root: str, seed: int = 0, n_scans: int = N_SCANS) -> None:
  """Writes the synthetic LUNA16 layout into `root` (which must not exist yet)."""
  os.makedirs(root)
  ann, cand, uids = [], [], []
  for i in range(n_scans):
    uid = seriesuid(seed, i)
    volume, origin, spacing, direction, nodules, candidates = render_scan(seed, i)
    folder = os.path.join(root, f"subset{i % N_SUBSETS}")
    os.makedirs(folder, exist_ok=True)
    write_metaimage(os.path.join(folder, f"{uid}.mhd"), volume, origin, spacing, direction)
    uids.append(uid)
    ann += [(uid, *(f"{v:.6f}" for v in (*w, d))) for w, d in nodules]
    cand += [(uid, *(f"{v:.6f}" for v in w), c) for w, c in candidates]
  write_csv(os.path.join(root, "annotations.csv"), tables.ANNOTATION_COLUMNS, ann)
  write_csv(os.path.join(root, "candidates.csv"), tables.CANDIDATE_COLUMNS, cand)
  write_text(os.path.join(root, "seriesuids.csv"), "\n".join(uids) + "\n")


def luna16_root(seed: int = 0, n_scans: int = N_SCANS, *, directory: str | None = None) -> str:
  """Path of the synthetic LUNA16 layout, generated on first use (atomically) and cached."""
  parent = directory or cache_dir()
  root = os.path.join(parent, f"luna16_synthetic_v{VERSION}_s{seed}_n{n_scans}")
  if not os.path.isfile(os.path.join(root, "seriesuids.csv")):
    log.info("generating %d synthetic LUNA16 CT volumes in %s...", n_scans, root)
  return build_folder_atomically(root, "seriesuids.csv",
                                 lambda folder: write_dataset(folder, seed, n_scans))
