"""The paper's preprocessed LUNA16 patch set: 50x50 grayscale JPEGs plus label files.

Layout (see DESIGN.md): `train/`, `val/`, `test/` folders and `traindatalabels.txt`,
`valdatalabels.txt`, `testdatalabels.txt` with lines `train/image_<n>.jpg <0|1>`, where <n> is
the candidate's row in candidates.csv (V1). `train/` also holds unlisted copies of each listed
positive rotated by 90 and 180 degrees, `image_<n+1000000>.jpg` and `image_<n+2000000>.jpg`.
Label files are UTF-8 (a BOM is fine) or UTF-16 with a BOM.

Read with Pillow and numpy only: no TensorFlow, so this works on JAX-only GPU machines.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re

import numpy as np

from medjax.data import checks
from medjax.data.base import DataError, Split, check_labels

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
ROTATED_OFFSETS = (1_000_000, 2_000_000)
_NAME = re.compile(r"image_(\d+)\.jpg$")
HOLDING = "traindatalabels.txt and the train/ images (the paper's LUNA16 patch set)"


def label_file(root: str, split: str) -> str:
  return os.path.join(root, f"{split}datalabels.txt")


def available_splits(root: str) -> list[str]:
  return [s for s in SPLITS if os.path.isfile(label_file(root, s))]


def _label_lines(path: str) -> list[tuple[str, int, int, str | None]]:
  """(relative path, label, line number, split column or None) of each entry; DataError naming
  the first bad line."""
  entries = []
  for lineno, line in enumerate(checks.read_text(path).splitlines(), 1):
    if not line.strip():
      continue
    parts = line.split()
    if len(parts) not in (2, 3) or parts[1] not in ("0", "1"):
      raise DataError(f"{path}:{lineno}: expected '<image path> <0|1> [train|val|test]', got "
                      f"{line.strip()!r}")
    split = parts[2].lower() if len(parts) == 3 else None
    if split is not None and split not in SPLITS:
      raise DataError(f"{path}:{lineno}: the split column must be train, val or test, got "
                      f"{parts[2]!r}")
    entries.append((parts[0], int(parts[1]), lineno, split))
  if not entries:
    raise DataError(f"{path}: no entries")
  return entries


def read_label_file(path: str) -> list[tuple[str, int]]:
  """Parses `<relative path> <label> [split]` lines (UTF-8, or UTF-16 with a BOM); raises
  DataError naming the first bad line."""
  return [(rel, label) for rel, label, _, _ in _label_lines(path)]


def _entries_by_split(root: str, files: list[str]) -> dict[str, list[tuple[str, int, str]]]:
  """(path, label, source) per split: a line's split column if it has one (a fixed split, as
  given), else the split of the label file that lists it."""
  out: dict[str, list] = {}
  for split in files:
    path = label_file(root, split)
    for rel, label, n, column in _label_lines(path):
      out.setdefault(column or split, []).append(
          (rel, label, f"{os.path.basename(path)}:{n}"))
  return {s: out[s] for s in SPLITS if s in out}


def _read_image(path: str, bit_depth: int | None = None) -> tuple[np.ndarray, str, int, int]:
  """(pixels, digest of the file bytes, brightest pixel, full scale) by `checks.read_pixels`:
  8-bit and colour images uint8 [H, W] (full scale 0), 16-bit float32 [H, W] in [0, 1]."""
  pixels, data, raw_max, full = checks.read_pixels(path, bit_depth)
  return pixels, checks.file_digest(data), raw_max, full


def _read_split(root: str, split: str, entries: list[tuple[str, int, str]], *,
                image_size: int, include_rotated: bool,
                bit_depth: int | None) -> tuple[Split, list[checks.Listed]]:
  """One split's images and, for the duplicate check, the files they came from."""
  path = label_file(root, split)
  if include_rotated and split == "train":
    extra = []
    for rel, label, _ in entries:
      m = _NAME.search(rel)
      if label == 1 and m:
        for off in ROTATED_OFFSETS:
          rot = os.path.join(os.path.dirname(rel), f"image_{int(m.group(1)) + off}.jpg")
          if os.path.isfile(os.path.join(root, rot)):
            extra.append((rot, 1, f"rotated copy of {rel}"))
    entries += extra
  images, labels, names, skipped, listed = [], [], [], [], []
  depth = checks.RangeReport()
  for rel, label, source in entries:
    img, digest, raw_max, full = _read_image(os.path.join(root, rel), bit_depth)
    if img.shape != (image_size, image_size):
      skipped.append(f"{rel} ({img.shape[1]}x{img.shape[0]})")
      continue
    listed.append(checks.Listed(split, rel, checks.same_file_key(root, rel), label, digest, source))
    if full:
      depth.add(rel, raw_max, full)
    images.append(img)
    labels.append(label)
    names.append(rel)
  if skipped:
    log.warning("%s: skipped %d image(s) that are not %dx%d: %s", split, len(skipped),
                image_size, image_size, ", ".join(skipped[:5]))
  depth.warn(f"{root}: {split}")
  if not images:
    raise DataError(f"{root}: no {image_size}x{image_size} images in split {split!r}")
  labels = np.asarray(labels, np.int32)
  check_labels(labels, path)
  if any(img.dtype != np.uint8 for img in images):  # 16-bit data: float32 for the whole split
    images = [img if img.dtype == np.float32 else img / np.float32(255) for img in images]
  return Split(np.stack(images)[..., None], labels, np.asarray(names)), listed


def _as_float(split: Split) -> Split:
  if split.images.dtype == np.float32:
    return split
  return dataclasses.replace(split, images=split.images.astype(np.float32) / np.float32(255))


def load_split(root: str, split: str, *, image_size: int = 50, include_rotated: bool = False,
               allow_duplicates: bool = False, bit_depth: int | None = None) -> Split:
  """Loads one split's listed images as [N, size, size, 1]: uint8, or float32 in [0, 1] when
  the split has 16-bit images (scaled by `bit_depth`, else the PNG's sBIT, else 65535).

  Images of another size are skipped with a warning (the paper's set has one 50x47 image in
  train, which the paper dropped too). `include_rotated` adds the unlisted rotated copies of
  listed positives (train only) where they exist. A file listed twice, or the same bytes under
  two names, is a DataError unless `allow_duplicates` (a warning then); a file listed with
  both labels always is.
  """
  path = label_file(root, split)
  entries = [(rel, label, f"{os.path.basename(path)}:{n}")
             for rel, label, n, _ in _label_lines(path)]
  data, listed = _read_split(root, split, entries, image_size=image_size,
                             include_rotated=include_rotated,
                             bit_depth=checks.check_bit_depth(bit_depth))
  checks.check_duplicates(listed, where=f"{root}: {split}", allow=allow_duplicates)
  return data


def load_patch_folder(root: str, *, image_size: int = 50, include_rotated: bool = False,
                      allow_duplicates: bool = False,
                      bit_depth: int | None = None) -> dict[str, Split]:
  """Loads whichever of train/val/test the folder has; train is required.

  Duplicates and leakage are checked within and across the splits (see `load_split`); when
  one split has 16-bit images, every split is float32 in [0, 1].
  """
  checks.data_folder(root, HOLDING)
  files = available_splits(root)
  if "train" not in files:
    raise DataError(f"{root} is not a LUNA16 patch folder: no {os.path.basename(label_file(root, 'train'))} "
                    f"(expected {', '.join(os.path.basename(label_file(root, s)) for s in SPLITS)})")
  bit_depth = checks.check_bit_depth(bit_depth)
  by_split = _entries_by_split(root, files)
  if "train" not in by_split:
    raise DataError(f"{root}: the split column names no train images")
  loaded, listed = {}, []
  for s, entries in by_split.items():
    loaded[s], found = _read_split(root, s, entries, image_size=image_size,
                                   include_rotated=include_rotated, bit_depth=bit_depth)
    listed += found
  checks.check_duplicates(listed, where=root, allow=allow_duplicates)
  if any(split.images.dtype == np.float32 for split in loaded.values()):
    loaded = {s: _as_float(split) for s, split in loaded.items()}
  return loaded
