"""Datasets as in-memory splits, loaded with numpy/Pillow (TensorFlow only in `pipeline`)."""

from __future__ import annotations

import logging
import os

import numpy as np

from medjax import config as config_lib
from medjax.config import DATASETS, hip_variant
from medjax.data import checks, hip_xray, luna16, luna16_patches, synthetic_ct
from medjax.data.base import (DataError, Dataset, Split, capped, check_batch_size,
                              check_both_classes, stratified_holdout)

log = logging.getLogger(__name__)


def _split_label(data_config) -> str:
  if data_config.split == "random":
    return "random split by candidate: LEAKY"
  return f"split by scan, fold {data_config.fold} tests on subset{data_config.fold}"


def load_luna(data_config, seed: int) -> Dataset:
  """LUNA16 patches from `data_config.dir`, or the embedded synthetic CT volumes when unset.

  `data.dir` may be the paper's patch folder (`traindatalabels.txt`), a raw LUNA16 layout
  (`candidates*.csv` + `subset*/`: cut by `medjax.data.luna16`), or an .npz of prepared
  patches (`python -m medjax.data.luna16`). Unset: synthetic .mhd/.raw volumes go through the
  raw pipeline (both cached). Test split: `test/` if present, else `val/` (logged). Validation
  (model selection): the source's val split when it has both, else a stratified `val_fraction`
  of train.
  """
  root = data_config.dir
  is_synthetic = not root
  froc_files = (None, None)
  kind = _luna_kind(root)
  _check_used(data_config, kind)
  if kind == "npz":
    splits, source = luna16.load_splits(root), root
  elif kind == "patches":
    splits = luna16_patches.load_patch_folder(
        root, image_size=data_config.image_size, include_rotated=data_config.include_rotated,
        allow_duplicates=data_config.allow_duplicates, bit_depth=data_config.bit_depth)
    source = root
  elif kind == "raw":
    splits = luna16.prepare(root, luna16.Options.from_config(data_config, seed),
                            workers=data_config.workers, cache=data_config.cache)
    source = f"{root} (raw CT, {_split_label(data_config)})"
    froc_files = _froc_files(root)
  elif root:  # not a known layout: let the patch loader say what it expected
    splits, source = luna16_patches.load_patch_folder(root, image_size=data_config.image_size), root
  else:
    raw = synthetic_ct.luna16_root()
    froc_files = _froc_files(raw)
    splits = luna16.prepare(raw, luna16.Options.from_config(data_config, seed),
                            workers=data_config.workers or 1, cache=data_config.cache)
    splits["train"] = capped(splits["train"], data_config.synthetic_train, seed)
    splits["test"] = capped(splits["test"], data_config.synthetic_test, seed)
    source = f"embedded synthetic LUNA16 CT volumes ({_split_label(data_config)})"
  return luna_dataset(splits, source, data_config, seed, synthetic=is_synthetic,
                      froc_files=froc_files)


def luna_dataset(splits: dict[str, Split], source: str, data_config, seed: int, *,
                 synthetic: bool = False, froc_files=(None, None)) -> Dataset:
  """The LUNA16 Dataset of a source's `splits`: test is its test split (else val), validation
  its val split (else a stratified `val_fraction` of train), train and test capped by
  `max_train` / `max_test`."""
  train = splits["train"]
  if "test" in splits:
    test, val = splits["test"], splits.get("val")
  elif "val" in splits:
    log.info("no test split in %s: evaluating on val as the test split", source)
    test, val = splits["val"], None
  else:
    raise DataError(f"{source}: needs a test or val split besides train")
  train = capped(train, data_config.max_train, seed)
  test = capped(test, data_config.max_test, seed)
  if val is None and data_config.val_fraction > 0:
    train, val = stratified_holdout(train, data_config.val_fraction, seed)
  for name, split in (("train", train), ("test", test)):
    check_both_classes(split, f"{source}: {name} split")
  return Dataset("luna", train=train, val=val, test=test, synthetic=synthetic, source=source,
                 annotations=froc_files[0], excluded=froc_files[1])


def _luna_kind(root: str | None) -> str | None:
  """What LUNA16 data.dir holds: "npz", "patches", "raw", "synthetic" (unset), or None (a folder
  of neither layout: the patch loader says what it expected). A file that is not an .npz is a
  DataError."""
  if not root:
    return "synthetic"
  if os.path.isfile(root) and root.endswith(".npz"):
    return "npz"
  if os.path.isfile(luna16_patches.label_file(root, "train")):
    return "patches"
  checks.data_folder(root, f"{luna16_patches.HOLDING}, or a raw LUNA16 layout (subset*/ and "
                     "candidates.csv); or name a prepared .npz file")
  return "raw" if luna16.is_raw_layout(root) else None


# data.* fields that only some LUNA16 sources read.
RAW_FIELDS = ("split", "fold", "candidates", "neg_ratio", "test_neg_ratio", "augment_positives",
              "augment_shift", "hu_window", "slices", "workers", "test_fraction")
PATCH_FIELDS = ("include_rotated", "bit_depth")
UNUSED = {"npz": (RAW_FIELDS + PATCH_FIELDS + ("image_size",), "by prepared .npz patches"),
          "patches": (RAW_FIELDS, "by the paper's patch folder (they apply to raw LUNA16 CT)"),
          "raw": (PATCH_FIELDS, "by raw LUNA16 CT (they apply to the paper's patch folder)"),
          "synthetic": (PATCH_FIELDS, "by the embedded synthetic CT volumes (they apply to the "
                        "paper's patch folder)")}


def _check_used(data_config, kind: str | None) -> None:
  """ConfigError for the data fields that what data.dir holds never reads."""
  if kind not in UNUSED:
    return
  names, why = UNUSED[kind]
  defaults = config_lib.base_config("luna", "cnn").data
  config_lib.refuse_unused(config_lib.unused_fields(data_config, names, defaults, "data."), why)


def _froc_files(root: str) -> tuple[str | None, str | None]:
  """annotations.csv and annotations_excluded.csv of a raw LUNA16 layout, where present."""
  found = [os.path.join(root, name) for name in ("annotations.csv", "annotations_excluded.csv")]
  return tuple(p if os.path.isfile(p) else None for p in found)


def load_dataset(name: str, data_config, seed: int) -> Dataset:
  """`luna`, or a hip X-ray variant `hip<size>_<crop|full>` (size and cropping from the name)."""
  if name == "luna":
    return load_luna(data_config, seed)
  if name in DATASETS:
    size, crop = hip_variant(name)
    return hip_xray.load_hip(data_config, seed, crop=crop, size=size)
  raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def epoch_indices(n: int, batch_size: int, *, seed: int, epoch: int) -> np.ndarray:
  """[steps, batch_size] example indices of one training epoch; depends only on (seed, epoch),
  so a resumed run sees the same batches. The remainder (n % batch_size) is dropped."""
  check_batch_size(batch_size, n)
  steps = n // batch_size
  order = np.random.default_rng([seed, epoch]).permutation(n)
  return order[:steps * batch_size].reshape(steps, batch_size).astype(np.int32)


def batches(split: Split, batch_size: int, *, seed: int, epoch: int):
  """Yields the {"image", "label"} numpy batches of `epoch_indices` (full batches only)."""
  for idx in epoch_indices(len(split), batch_size, seed=seed, epoch=epoch):
    yield {"image": split.images[idx], "label": split.labels[idx]}


__all__ = ["DataError", "Dataset", "Split", "load_dataset", "luna_dataset", "batches",
           "epoch_indices"]
