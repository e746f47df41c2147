"""Leakage audit: test patches that are near-duplicates of training patches.

    python -m medjax.data.audit ../shared/data/luna16_patches        # train vs val (and test)
    python -m medjax.data.audit TRAIN_SPEC TEST_SPEC   # SPEC: DIR[:split] or X.npz[:split]

A test patch counts as a near-duplicate when some training patch, under one of the 8 dihedral
transforms (rotations by 90 degrees, flips) and a shift of up to `max_shift` pixels, matches it
within `tolerance` (RMS difference in 0..255 grey levels over the overlap). A shift of zero is a
copy (the same candidate, or a rotated/flipped copy of it); a non-zero shift is the same place
in the same slice seen from another candidate a few millimetres away (the same nodule, in the
random split by candidate).

Search, with numpy alone: blurred 10x10 thumbnails of every test patch under the 8 transforms
against those of every training patch (one matrix product per chunk) give a few candidates per
test patch; each is then checked at full resolution over all shifts at once with FFT
correlations of zero-padded images.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from absl import flags

from medjax import cli
from medjax.data.base import DataError, Split
from medjax.data.luna16 import load_splits
from medjax.data.luna16_patches import load_patch_folder
from medjax.errors import UserError

TOLERANCE = 6.0
MAX_SHIFT = 12
THUMB = 10


def dihedral(images: np.ndarray, k: int) -> np.ndarray:
  """Transform k (0..7) of images [..., H, W]: rot90 by k % 4, then a left-right flip if k >= 4."""
  out = np.rot90(images, k % 4, axes=(-2, -1))
  return out[..., ::-1] if k >= 4 else out


def _gray(split_or_images) -> np.ndarray:
  images = split_or_images.images if isinstance(split_or_images, Split) else split_or_images
  images = np.asarray(images)
  if images.ndim == 4:  # [N, H, W, C]: the centre channel
    images = images[..., images.shape[-1] // 2]
  # Pixel values 0..255 either way (float images, e.g. from 16-bit files, lie in [0, 1]).
  return images.astype(np.float32) * (1 if images.dtype == np.uint8 else 255)


def _blur(images: np.ndarray, sigma: float) -> np.ndarray:
  radius = int(3 * sigma)
  k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
  k /= k.sum()
  pad = np.pad(images, ((0, 0), (radius, radius), (radius, radius)), mode="edge")
  out = sum(k[i] * pad[:, i:i + images.shape[1], :] for i in range(len(k)))
  return sum(k[i] * out[:, :, i:i + images.shape[2]] for i in range(len(k)))


def thumbnails(images: np.ndarray) -> np.ndarray:
  """Blurred samples on a THUMB x THUMB grid symmetric about the centre, so that transforming a
  thumbnail equals the thumbnail of the transformed image. [N, THUMB, THUMB]."""
  h, w = images.shape[1:]
  blurred = _blur(images, sigma=max(h, w) / THUMB / 2)
  ys = np.round(np.linspace(0, h - 1, 2 * THUMB + 1)[1::2]).astype(int)
  xs = np.round(np.linspace(0, w - 1, 2 * THUMB + 1)[1::2]).astype(int)
  return blurred[:, ys][:, :, xs]


def shortlist(train: np.ndarray, test: np.ndarray, k: int = 4, chunk: int = 256):
  """Per test image, the k best (train index, transform) per transform by thumbnail distance:
  arrays [M, 8 * k]."""
  k = min(k, len(train))
  a = thumbnails(train).reshape(len(train), -1).astype(np.float32)
  a_sq = (a ** 2).sum(1)
  tb = thumbnails(test)
  idx = np.empty((len(test), 8, k), np.int64)
  for t in range(8):
    b = dihedral(tb, t).reshape(len(test), -1).astype(np.float32)
    for s in range(0, len(test), chunk):
      d = a_sq[None] - 2 * b[s:s + chunk] @ a.T  # + |b|^2, constant per row
      idx[s:s + chunk, t] = np.argpartition(d, k - 1, axis=1)[:, :k]
  trans = np.broadcast_to(np.arange(8)[None, :, None], idx.shape)
  return idx.reshape(len(test), -1), trans.reshape(len(test), -1)


def _overlap_sums(images: np.ndarray, shifts: np.ndarray) -> np.ndarray:
  """[P, S, S]: sum of images[p, y, x] over the rows/columns that stay inside after moving by
  (dy, dx) in shifts x shifts (integral images)."""
  p, h, w = images.shape
  ii = np.zeros((p, h + 1, w + 1))
  ii[:, 1:, 1:] = images.astype(np.float64).cumsum(1).cumsum(2)
  y0, y1 = np.maximum(0, -shifts), h - np.maximum(0, shifts)
  x0, x1 = np.maximum(0, -shifts), w - np.maximum(0, shifts)
  return (ii[:, y1[:, None], x1] - ii[:, y0[:, None], x1] - ii[:, y1[:, None], x0] +
          ii[:, y0[:, None], x0])


class _Shifted:
  """Spectra and overlap energies of images, so that each pair costs one inverse FFT."""

  def __init__(self, images: np.ndarray, max_shift: int, *, moving: bool):
    h, w = images.shape[1:]
    self.size = tuple(1 << int(np.ceil(np.log2(n + max_shift))) for n in (h, w))  # fast sizes
    self.spectra = np.fft.rfft2(images.astype(np.float32), self.size).astype(np.complex64)
    self.shifts = np.arange(-max_shift, max_shift + 1)
    # a (moving=False) is compared at x with b (moving=True) at x + d.
    self.energy = _overlap_sums(images.astype(np.float64) ** 2,
                                -self.shifts if moving else self.shifts)
    self.count = np.outer(h - np.abs(self.shifts), w - np.abs(self.shifts))


def _pair_rms(a: _Shifted, ia, b: _Shifted, ib) -> tuple[np.ndarray, np.ndarray]:
  cross = np.fft.irfft2(np.conj(a.spectra[ia]) * b.spectra[ib], a.size)  # sum a[x] b[x + d]
  idx = a.shifts % a.size[0], a.shifts % a.size[1]
  cross = cross[:, idx[0][:, None], idx[1]]
  mse = np.maximum(a.energy[ia] + b.energy[ib] - 2 * cross, 0) / a.count
  flat = mse.reshape(len(mse), -1)
  best = flat.argmin(1)
  dy, dx = np.unravel_index(best, mse.shape[1:])
  return np.sqrt(flat[np.arange(len(flat)), best]), np.stack([a.shifts[dy], a.shifts[dx]], 1)


def shifted_rms(a: np.ndarray, b: np.ndarray, max_shift: int) -> tuple[np.ndarray, np.ndarray]:
  """Min over shifts |dy|, |dx| <= max_shift of the RMS of a[y, x] - b[y + dy, x + dx] over the
  overlap, for pairs a[P, H, W], b[P, H, W]; returns (rms [P], (dy, dx) [P, 2])."""
  n = np.arange(len(a))
  return _pair_rms(_Shifted(a, max_shift, moving=False), n, _Shifted(b, max_shift, moving=True), n)


@dataclasses.dataclass
class Matches:
  """Best training match per test image."""
  rms: np.ndarray        # [M] RMS difference (grey levels)
  train_index: np.ndarray
  transform: np.ndarray  # dihedral k applied to the test image
  shift: np.ndarray      # [M, 2]

  def duplicates(self, tolerance: float = TOLERANCE) -> np.ndarray:
    return self.rms <= tolerance


def best_matches(train, test, *, max_shift: int = MAX_SHIFT, k: int = 8,
                 chunk: int = 2048) -> Matches:
  """For each test image, its closest training image under dihedral transforms and shifts."""
  a, b = _gray(train), _gray(test)
  if a.shape[1:] != b.shape[1:]:
    raise DataError(f"image sizes differ: train {a.shape[1:]}, test {b.shape[1:]}")
  cand, trans = shortlist(a, b, k)
  m, c = cand.shape
  # Spectra once per (test image, transform) and per shortlisted training image.
  views = _Shifted(np.stack([dihedral(b, t) for t in range(8)], 1).reshape(-1, *b.shape[1:]),
                   max_shift, moving=False)
  used, train_slot = np.unique(cand, return_inverse=True)
  train_views = _Shifted(a[used], max_shift, moving=True)
  ia = (np.arange(m)[:, None] * 8 + trans).ravel()
  ib = train_slot.reshape(-1)
  rms, shift = np.empty(m * c), np.empty((m * c, 2), np.int64)
  for s in range(0, m * c, chunk):
    rms[s:s + chunk], shift[s:s + chunk] = _pair_rms(views, ia[s:s + chunk], train_views,
                                                     ib[s:s + chunk])
  rms, shift = rms.reshape(m, c), shift.reshape(m, c, 2)
  best = rms.argmin(1)
  rows = np.arange(m)
  return Matches(rms[rows, best], cand[rows, best], trans[rows, best], shift[rows, best])


def report(train: Split, test: Split, matches: Matches, tolerance: float = TOLERANCE,
           name: str = "test", max_shift: int = MAX_SHIFT) -> str:
  """Counts per class; `matches` from `best_matches(train, test)`."""
  dup = matches.duplicates(tolerance)
  copy = dup & (np.abs(matches.shift).sum(1) == 0)
  same_label = train.labels[matches.train_index] == test.labels
  lines = [f"{name}: {dup.sum()} of {len(test)} images ({100 * dup.mean():.1f}%) are "
           f"near-duplicates of train images (RMS <= {tolerance:g} grey levels, 8 dihedral "
           f"transforms, shifts <= {max_shift} px)"]
  for cls, label in ((1, "positive"), (0, "negative")):
    sel = test.labels == cls
    lines.append(f"  {label:8s}: {dup[sel].sum():5d} of {sel.sum():5d} "
                 f"({100 * dup[sel].mean():.1f}%)"
                 f"; copies (no shift) {copy[sel].sum()}, shifted {(dup & ~copy)[sel].sum()}"
                 f"; matched train image has the same label: {(dup & same_label)[sel].sum()}")
  if dup.any():
    kinds = np.bincount(matches.transform[dup], minlength=8)
    names = ["identity", "rot90", "rot180", "rot270", "flip", "rot90+flip", "rot180+flip",
             "rot270+flip"]
    lines.append("  transforms: " + ", ".join(f"{n} {c}" for n, c in zip(names, kinds) if c))
  shared = np.intersect1d([os.path.basename(str(n)) for n in train.names],
                          [os.path.basename(str(n)) for n in test.names])
  if len(shared):
    lines.append(f"  {len(shared)} file name(s) appear in both splits")
  return "\n".join(lines)


def _load(spec: str) -> dict[str, Split]:
  path, _, split = spec.partition(":") if not os.path.exists(spec) else (spec, "", "")
  if path.endswith(".npz"):
    splits = load_splits(path)
  else:
    splits = load_patch_folder(path, allow_duplicates=True)  # exact copies are what we count
  if split:
    if split not in splits:
      raise DataError(f"{path} has no split {split!r}; it has {', '.join(splits)}")
    return {split: splits[split]}
  return splits


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_float("tolerance", TOLERANCE, "Mean absolute pixel difference (0..255) below "
                     "which two patches count as near-duplicates.", flag_values=fv)
  flags.DEFINE_integer("max_shift", MAX_SHIFT, "Largest shift (pixels) tried between two "
                       "patches.", flag_values=fv)
  flags.DEFINE_integer("shortlist", 8, "Training images checked per test image and transform.",
                       flag_values=fv)


def main(argv=None) -> int:
  """`python -m medjax.data.audit SPEC [SPEC] [--flags]`: SPEC = DIR or X.npz (train against
  its other splits), or TRAIN_SPEC TEST_SPEC with SPEC = DIR[:split] or X.npz[:split]."""
  args, specs = cli.parse_args(define_flags, argv,
                               __doc__ + "\nusage: python -m medjax.data.audit SPEC [SPEC] [flags]")
  if len(specs) == 1:
    splits = _load(specs[0])
    train, others = splits["train"], {k: v for k, v in splits.items() if k != "train"}
  elif len(specs) == 2:
    [train] = _load(specs[0]).values() if ":" in specs[0] else [_load(specs[0])["train"]]
    tests = _load(specs[1])
    others = tests if ":" in specs[1] else {k: v for k, v in tests.items() if k != "train"}
  else:
    raise UserError("give one source (DIR or X.npz) or TRAIN_SPEC TEST_SPEC")
  if not others:
    raise UserError("nothing to compare train with: the source has no other split")
  for name, test in others.items():
    matches = best_matches(train, test, max_shift=args.max_shift, k=args.shortlist)
    print(report(train, test, matches, args.tolerance, name, args.max_shift))
  return 0


if __name__ == "__main__":
  cli.run(main)
