"""Prepared patch splits as one .npz that loads with numpy alone (GPU machines without SimpleITK).

Keys: `<split>/images` (uint8 0..255 or float in [0, 1], [N, H, W, C]), `<split>/labels` (0/1,
[N]), optionally `<split>/names` [N] and `<split>/meta/<key>` [N, ...], for split in train
(required), val, test.
"""

from __future__ import annotations

import os
import zipfile
import zlib

import numpy as np

from medjax.data.base import DataError, Split, check_labels, save_npz_atomic

SPLITS = ("train", "val", "test")
REQUIRED = ("images", "labels")
EXPECTED_KEYS = ("<split>/images and <split>/labels, optionally <split>/names and "
                 "<split>/meta/<key>, for <split> in train (required), val, test")


def save_splits(path: str, splits: dict[str, Split]) -> None:
  """Saves patch splits (images, labels, names, meta) as one .npz (written atomically)."""
  arrays = {}
  for name, split in splits.items():
    arrays.update({f"{name}/images": split.images, f"{name}/labels": split.labels,
                   f"{name}/names": split.names})
    arrays.update({f"{name}/meta/{k}": v for k, v in (split.meta or {}).items()})
  save_npz_atomic(path, arrays)


def _read_npz(path: str) -> dict[str, np.ndarray]:
  if not os.path.isfile(path):
    raise DataError(f"prepared patches not found: {path}")
  try:
    z = np.load(path, allow_pickle=False)
    if not isinstance(z, np.lib.npyio.NpzFile):
      raise DataError(f"{path}: a single array (.npy), not an .npz of patch splits; expected "
                      f"keys {EXPECTED_KEYS}")
    with z:
      return {k: z[k] for k in z.files}
  except (OSError, ValueError, EOFError, RuntimeError, zipfile.BadZipFile, zlib.error) as e:
    # RuntimeError: zipfile on damaged flags (encryption, unknown compression or version)
    raise DataError(f"{path}: not a readable .npz (truncated or corrupt?): {e}") from None


def _key_kind(key: str) -> bool:
  split, _, rest = key.partition("/")
  return split in SPLITS and (rest in REQUIRED + ("names",) or
                              (rest.startswith("meta/") and len(rest) > len("meta/")))


def check_images(images: np.ndarray, where: str) -> np.ndarray:
  """uint8 [N, H, W, C] as is, float in [0, 1] as float32; DataError says what is wrong."""
  if images.ndim != 4:
    hint = " (add a channel axis: images[..., None])" if images.ndim == 3 else ""
    raise DataError(f"{where}: shape {images.shape}, expected [N, H, W, C]{hint}")
  if images.dtype == np.uint8:
    return images
  if not np.issubdtype(images.dtype, np.floating):
    raise DataError(f"{where}: dtype {images.dtype}, expected uint8 (0..255) or float in [0, 1]")
  if images.size and not np.isfinite(images).all():
    raise DataError(f"{where}: float images contain NaN or infinity")
  lo, hi = (float(images.min()), float(images.max())) if images.size else (0.0, 0.0)
  if lo < 0 or hi > 1:
    if lo >= 0 and hi <= 255:
      raise DataError(f"{where}: float images in 0..255 (max {hi:g}); float images must lie in "
                      f"[0, 1]: divide by 255 or store them as uint8")
    raise DataError(f"{where}: float images range over [{lo:g}, {hi:g}], expected [0, 1]")
  return images.astype(np.float32, copy=False)


def _check_split(arrays: dict[str, np.ndarray], path: str, name: str) -> Split:
  missing = [f"{name}/{f}" for f in REQUIRED if f"{name}/{f}" not in arrays]
  if missing:
    have = sorted(k for k in arrays if k.startswith(f"{name}/"))
    raise DataError(f"{path}: missing key(s) {', '.join(missing)} (split {name} has "
                    f"{', '.join(have)}); expected {EXPECTED_KEYS}")
  images = check_images(arrays[f"{name}/images"], f"{path}: {name}/images")
  n = len(images)
  if n == 0:
    raise DataError(f"{path}: split {name} has no examples")
  labels = arrays[f"{name}/labels"]
  if labels.ndim != 1 or labels.dtype.kind not in "biuf":
    raise DataError(f"{path}: {name}/labels must be 0/1 numbers of shape [N], got "
                    f"{labels.dtype} {labels.shape}")
  names = arrays.get(f"{name}/names")
  if names is None:
    names = np.asarray([f"{name}/{i}" for i in range(n)])
  meta = {k.rsplit("/", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{name}/meta/")}
  counts = {"labels": len(labels), "names": len(names),
            **{f"meta/{k}": len(v) for k, v in meta.items()}}
  wrong = [f"{len_} {what}" for what, len_ in counts.items() if len_ != n]
  if wrong:
    raise DataError(f"{path}: split {name} has {n} images but {', '.join(wrong)}")
  check_labels(labels, f"{path}: {name}/labels")
  return Split(images, labels.astype(np.int32), names, meta or None)


def load_splits(path: str) -> dict[str, Split]:
  """Reads `save_splits` output (or an .npz with the same keys) with numpy alone, checked."""
  arrays = _read_npz(path)
  unknown = sorted(k for k in arrays if not _key_kind(k))
  if unknown:
    raise DataError(f"{path}: unexpected key(s) {', '.join(unknown[:8])}; expected "
                    f"{EXPECTED_KEYS}")
  if not any(k.startswith("train/") for k in arrays):
    raise DataError(f"{path}: no train split in the prepared patches (keys: "
                    f"{', '.join(sorted(arrays)) or 'none'}); expected {EXPECTED_KEYS}")
  splits = {name: _check_split(arrays, path, name) for name in SPLITS
            if any(k.startswith(f"{name}/") for k in arrays)}
  shapes = {name: s.images.shape[1:] for name, s in splits.items()}
  if len(set(shapes.values())) > 1:
    raise DataError(f"{path}: image shapes differ between splits (" + ", ".join(
        f"{name} {'x'.join(map(str, shape))}" for name, shape in shapes.items()) +
        "); every split needs the same [H, W, C]")
  return splits
