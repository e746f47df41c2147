"""Embedded synthetic LUNA16-like patch set, so every experiment runs without downloads.

Each 50x50 axial patch is rendered in Hounsfield units at 0.7 mm per pixel and windowed like the
paper's pipeline ([-1000, 400] HU -> 0..255):
  - lung parenchyma (about -850 HU) with smooth texture and CT noise;
  - vessels as tubes of several widths in random directions, and vessel cross-sections as small,
    slightly elongated bright blobs, sometimes right at the centre (the hard negatives);
  - sometimes chest wall (soft tissue) along one side;
  - positives (about 1 in 6, as in the paper's 1:5 set) add a round, slightly lobulated nodule of
    3-30 mm (log-uniform) near the centre, solid or ground-glass, sometimes only partly in-slice.
Small and faint nodules look like vessel cross-sections, so the task is learnable but not trivial.

Every patch comes from its own seeded stream, so the set is the same on every machine; it is
cached as an .npz (written atomically) after the first call.
"""

from __future__ import annotations

import hashlib
import logging
import os

import numpy as np

from medjax.data.base import Split, save_npz_atomic

log = logging.getLogger(__name__)

VERSION = 1
MM_PER_PIXEL = 0.7
HU_WINDOW = (-1000.0, 400.0)
POSITIVE_FRACTION = 1 / 6


def cache_dir() -> str:
  return os.environ.get("MEDJAX_CACHE_DIR",
                        os.path.join(os.path.expanduser("~"), ".cache", "medjax"))


def window_hu(hu: np.ndarray, window=HU_WINDOW) -> np.ndarray:
  """Clips to the HU window and scales to [0, 1]."""
  lo, hi = window
  return np.clip((hu - lo) / (hi - lo), 0.0, 1.0)


def _smooth_noise(rng, size: int, scale: float) -> np.ndarray:
  """Low-frequency texture: white noise filtered in Fourier space."""
  f = np.fft.fftfreq(size)
  radius2 = f[:, None] ** 2 + f[None, :] ** 2
  spectrum = np.fft.fft2(rng.normal(size=(size, size))) * np.exp(-radius2 * (size / scale) ** 2)
  field = np.real(np.fft.ifft2(spectrum))
  return field / (field.std() + 1e-8)


def _tube(yy, xx, rng, size, width) -> np.ndarray:
  """A straight vessel through a random point: Gaussian profile across the line."""
  theta = rng.uniform(0, np.pi)
  py, px = rng.uniform(0, size, 2)
  dist = (yy - py) * np.cos(theta) - (xx - px) * np.sin(theta)
  return np.exp(-0.5 * (dist / width) ** 2)


def _blob(yy, xx, cy, cx, ry, rx, angle, edge=0.7, lobes=0.0, rng=None) -> np.ndarray:
  """A soft-edged ellipse (optionally lobulated) with values in [0, 1]."""
  dy, dx = yy - cy, xx - cx
  c, s = np.cos(angle), np.sin(angle)
  u, v = (dy * c + dx * s) / ry, (-dy * s + dx * c) / rx
  r = np.sqrt(u ** 2 + v ** 2)
  if lobes > 0:
    phi = np.arctan2(v, u)
    k, phase = rng.integers(3, 7), rng.uniform(0, 2 * np.pi)
    r = r / (1 + lobes * np.sin(k * phi + phase))
  return 1.0 / (1.0 + np.exp((r - 1.0) * min(ry, rx) / edge))


def render_patch(rng: np.random.Generator, positive: bool, size: int = 50) -> np.ndarray:
  """One patch in HU, float32 [size, size]."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
  center = (size - 1) / 2
  hu = -850.0 + 45.0 * _smooth_noise(rng, size, scale=rng.uniform(4, 10))

  if rng.random() < 0.3:  # chest wall along one side
    theta = rng.uniform(0, 2 * np.pi)
    dist = (yy - center) * np.cos(theta) + (xx - center) * np.sin(theta)
    wall = 1 / (1 + np.exp(-(dist - rng.uniform(12, 26)) / 1.5))
    hu = hu * (1 - wall) + (40.0 + 15 * _smooth_noise(rng, size, 6)) * wall

  for _ in range(rng.integers(0, 4)):  # vessels in the slice plane
    width = rng.uniform(0.5, 2.2)
    hu += (rng.uniform(350, 750) * min(1.0, width)) * _tube(yy, xx, rng, size, width)

  n_sections = rng.integers(0, 4)
  central_section = (not positive) and rng.random() < 0.45
  for i in range(n_sections + int(central_section)):  # vessels crossing the slice
    if central_section and i == 0:
      cy, cx = center + rng.normal(0, 1.5, 2)
      r = rng.uniform(1.5, 4.0)
    else:
      cy, cx = rng.uniform(0, size, 2)
      r = rng.uniform(1.0, 3.5)
    elong = rng.uniform(1.0, 2.2)
    hu += rng.uniform(600, 900) * _blob(yy, xx, cy, cx, r * elong, r, rng.uniform(0, np.pi))

  if positive:
    diameter_mm = np.exp(rng.uniform(np.log(3.0), np.log(30.0)))
    radius = diameter_mm / 2 / MM_PER_PIXEL
    cy, cx = center + rng.normal(0, 1.5, 2)
    elong = rng.uniform(1.0, 1.3)
    density = rng.uniform(-550, -300) if rng.random() < 0.2 else rng.uniform(-50, 80)
    in_slice = 1.0 if rng.random() < 0.7 else rng.uniform(0.45, 1.0)  # partial volume
    nodule = _blob(yy, xx, cy, cx, radius * elong, radius, rng.uniform(0, np.pi),
                   edge=rng.uniform(0.5, 1.5), lobes=rng.uniform(0, 0.15), rng=rng)
    hu = hu + (density + 850.0) * in_slice * nodule

  hu += rng.normal(0, rng.uniform(15, 40), size=(size, size))
  return hu.astype(np.float32)


def generate_split(n: int, *, seed: int, stream: str, size: int = 50) -> Split:
  """`n` windowed uint8 patches [n, size, size, 1]; patch i depends only on (seed, stream, i)."""
  stream_id = int(hashlib.sha256(stream.encode()).hexdigest()[:8], 16)
  images = np.empty((n, size, size, 1), np.uint8)
  labels = np.empty((n,), np.int32)
  for i in range(n):
    rng = np.random.default_rng([seed, stream_id, i, VERSION])
    labels[i] = rng.random() < POSITIVE_FRACTION
    patch = window_hu(render_patch(rng, bool(labels[i]), size))
    images[i, ..., 0] = np.round(patch * 255).astype(np.uint8)
  names = np.asarray([f"synthetic/{stream}/{i}" for i in range(n)])
  return Split(images, labels, names)


def luna_patches(n_train: int = 1500, n_test: int = 500, *, seed: int = 0, size: int = 50,
                 cache: bool = True) -> dict[str, Split]:
  """The synthetic LUNA16-like train/test splits, generated once and cached on disk."""
  path = os.path.join(cache_dir(),
                      f"luna_patches_v{VERSION}_s{seed}_{size}px_{n_train}-{n_test}.npz")
  if cache and os.path.exists(path):
    try:
      with np.load(path) as z:
        return {s: Split(z[f"{s}_images"], z[f"{s}_labels"], z[f"{s}_names"])
                for s in ("train", "test")}
    except Exception as e:  # a damaged cache is regenerated, never trusted
      log.warning("ignoring unreadable cache %s (%s); regenerating", path, e)
  log.info("generating synthetic LUNA16-like patches (%d train, %d test)...", n_train, n_test)
  splits = {"train": generate_split(n_train, seed=seed, stream="train", size=size),
            "test": generate_split(n_test, seed=seed, stream="test", size=size)}
  if cache:
    save_npz_atomic(path, {f"{s}_{k}": getattr(v, k) for s, v in splits.items()
                           for k in ("images", "labels", "names")})
    log.info("cached synthetic patches in %s", path)
  return splits
