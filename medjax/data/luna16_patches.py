"""The paper's preprocessed LUNA16 patch set: 50x50 grayscale JPEGs plus label files.

Layout (see DESIGN.md): `train/`, `val/`, `test/` folders and `traindatalabels.txt`,
`valdatalabels.txt`, `testdatalabels.txt` with lines `train/image_<n>.jpg <0|1>`, where <n> is
the candidate's row in candidates.csv (V1). `train/` also holds unlisted copies of each listed
positive rotated by 90 and 180 degrees, `image_<n+1000000>.jpg` and `image_<n+2000000>.jpg`.

Read with Pillow and numpy only: no TensorFlow, so this works on JAX-only GPU machines.
"""

from __future__ import annotations

import logging
import os
import re

import numpy as np
from PIL import Image, UnidentifiedImageError

from medjax.data.base import DataError, Split, check_labels

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
ROTATED_OFFSETS = (1_000_000, 2_000_000)
_NAME = re.compile(r"image_(\d+)\.jpg$")


def label_file(root: str, split: str) -> str:
  return os.path.join(root, f"{split}datalabels.txt")


def available_splits(root: str) -> list[str]:
  return [s for s in SPLITS if os.path.isfile(label_file(root, s))]


def read_label_file(path: str) -> list[tuple[str, int]]:
  """Parses `<relative path> <label>` lines; raises DataError naming the first bad line."""
  entries = []
  with open(path) as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      parts = line.split()
      if len(parts) != 2 or parts[1] not in ("0", "1"):
        raise DataError(f"{path}:{lineno}: expected '<image path> <0|1>', got {line.strip()!r}")
      entries.append((parts[0], int(parts[1])))
  if not entries:
    raise DataError(f"{path}: no entries")
  return entries


def _read_image(path: str) -> np.ndarray:
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert("L"), dtype=np.uint8)
  except FileNotFoundError:
    raise DataError(f"listed image is missing: {path}") from None
  except (UnidentifiedImageError, OSError) as e:
    raise DataError(f"cannot decode image {path}: {e}") from None


def load_split(root: str, split: str, *, image_size: int = 50,
               include_rotated: bool = False) -> Split:
  """Loads one split's listed images as uint8 [N, size, size, 1].

  Images of another size are skipped with a warning (the paper's set has one 50x47 image in
  train, which the paper dropped too). `include_rotated` adds the unlisted rotated copies of
  listed positives (train only) where they exist.
  """
  entries = read_label_file(label_file(root, split))
  if include_rotated and split == "train":
    extra = []
    for rel, label in entries:
      m = _NAME.search(rel)
      if label == 1 and m:
        for off in ROTATED_OFFSETS:
          rot = os.path.join(os.path.dirname(rel), f"image_{int(m.group(1)) + off}.jpg")
          if os.path.isfile(os.path.join(root, rot)):
            extra.append((rot, 1))
    entries += extra
  images, labels, names, skipped = [], [], [], []
  for rel, label in entries:
    img = _read_image(os.path.join(root, rel))
    if img.shape != (image_size, image_size):
      skipped.append(f"{rel} ({img.shape[1]}x{img.shape[0]})")
      continue
    images.append(img)
    labels.append(label)
    names.append(rel)
  if skipped:
    log.warning("%s: skipped %d image(s) that are not %dx%d: %s", split, len(skipped),
                image_size, image_size, ", ".join(skipped[:5]))
  if not images:
    raise DataError(f"{root}: no {image_size}x{image_size} images in split {split!r}")
  labels = np.asarray(labels, np.int32)
  check_labels(labels, label_file(root, split))
  return Split(np.stack(images)[..., None], labels, np.asarray(names))


def load_patch_folder(root: str, *, image_size: int = 50,
                      include_rotated: bool = False) -> dict[str, Split]:
  """Loads whichever of train/val/test the folder has; train is required."""
  if not os.path.isdir(root):
    raise DataError(f"data dir does not exist: {root}")
  splits = available_splits(root)
  if "train" not in splits:
    raise DataError(f"{root} is not a LUNA16 patch folder: no {os.path.basename(label_file(root, 'train'))} "
                    f"(expected {', '.join(os.path.basename(label_file(root, s)) for s in SPLITS)})")
  return {s: load_split(root, s, image_size=image_size, include_rotated=include_rotated)
          for s in splits}
