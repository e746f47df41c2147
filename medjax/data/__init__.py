"""Datasets as in-memory splits, loaded with numpy/Pillow (TensorFlow only in `pipeline`)."""

from __future__ import annotations

import logging

import numpy as np

from medjax.data.base import (DataError, Dataset, Split, check_both_classes,
                              stratified_holdout)

log = logging.getLogger(__name__)

DATASETS = ("luna",)


def _subset(split: Split, n: int | None, seed: int) -> Split:
  """At most n examples (seeded, class proportions kept); for smoke runs."""
  if not n or n >= len(split):
    return split
  rng = np.random.default_rng([seed, 0x5B])
  take = []
  for cls in (0, 1):
    idx = np.flatnonzero(split.labels == cls)
    k = max(round(n * len(idx) / len(split)), min(1, len(idx)))
    take.append(rng.permutation(idx)[:k])
  return split.take(np.sort(np.concatenate(take)))


def load_luna(data_config, seed: int) -> Dataset:
  """The LUNA16 patch set from `data_config.dir`, or the embedded synthetic one when unset.

  Test split: `test/` if present, else `val/` (logged). Validation (model selection): `val/`
  when a separate test split exists, else a stratified `val_fraction` of train.
  """
  from medjax.data import luna16_patches, synthetic
  if data_config.dir:
    splits = luna16_patches.load_patch_folder(
        data_config.dir, image_size=data_config.image_size,
        include_rotated=data_config.include_rotated)
    source, is_synthetic = data_config.dir, False
  else:
    splits = synthetic.luna_patches(data_config.synthetic_train, data_config.synthetic_test,
                                    size=data_config.image_size)
    source, is_synthetic = "embedded synthetic LUNA16-like patches", True
  train = splits["train"]
  if "test" in splits:
    test, val = splits["test"], splits.get("val")
  elif "val" in splits:
    log.info("no test split in %s: evaluating on val as the test split", source)
    test, val = splits["val"], None
  else:
    raise DataError(f"{source}: needs a test or val split besides train")
  train = _subset(train, data_config.max_train, seed)
  test = _subset(test, data_config.max_test, seed)
  if val is None and data_config.val_fraction > 0:
    train, val = stratified_holdout(train, data_config.val_fraction, seed)
  for name, split in (("train", train), ("test", test)):
    check_both_classes(split, f"{source}: {name} split")
  return Dataset("luna", train=train, val=val, test=test, synthetic=is_synthetic, source=source)


def load_dataset(name: str, data_config, seed: int) -> Dataset:
  if name == "luna":
    return load_luna(data_config, seed)
  raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")


def batches(split: Split, batch_size: int, *, seed: int, epoch: int, shuffle: bool = True):
  """Yields {"image", "label"} numpy batches; full batches only (fixed shapes, no recompiles).

  The order depends only on (seed, epoch), so a resumed run sees the same batches.
  """
  n = len(split)
  if batch_size > n:
    raise DataError(f"batch_size {batch_size} is larger than the {n} training examples")
  order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
  for start in range(0, n - batch_size + 1, batch_size):
    idx = order[start:start + batch_size]
    yield {"image": split.images[idx], "label": split.labels[idx]}


__all__ = ["DataError", "Dataset", "Split", "load_dataset", "batches"]
