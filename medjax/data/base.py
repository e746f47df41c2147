"""In-memory splits: the form in which every dataset reaches the training loop."""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from typing import Callable, Mapping

import numpy as np

from medjax.errors import ConfigError
from medjax.errors import DataError  # re-exported: the data modules import it from here


@dataclasses.dataclass(frozen=True)
class Split:
  """A labelled split held in host memory.

  images: uint8 [N, H, W, C] (0..255) or float32 in [0, 1]; labels: int32 [N] in {0, 1};
  names: one identifier per example (file name or generator index), for tracing predictions;
  meta: optional per-example arrays (e.g. "seriesuid", "world" [N, 3] mm) indexed with the split.
  """
  images: np.ndarray
  labels: np.ndarray
  names: np.ndarray
  meta: dict[str, np.ndarray] | None = None

  def __post_init__(self):
    if self.images.ndim != 4:
      raise DataError(f"images must be [N, H, W, C], got shape {self.images.shape}")
    n = len(self.images)
    if self.labels.shape != (n,) or len(self.names) != n:
      raise DataError(f"{n} images but labels {self.labels.shape} and {len(self.names)} names")
    for key, value in (self.meta or {}).items():
      if len(value) != n:
        raise DataError(f"meta[{key!r}] has {len(value)} entries for {n} images")

  def __len__(self) -> int:
    return len(self.labels)

  @property
  def class_counts(self) -> tuple[int, int]:
    return int(np.sum(self.labels == 0)), int(np.sum(self.labels == 1))

  def take(self, index) -> "Split":
    meta = None if self.meta is None else {k: v[index] for k, v in self.meta.items()}
    return Split(self.images[index], self.labels[index], self.names[index], meta)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """train/val/test splits of one dataset; `val` may be None (no model selection data)."""
  name: str
  train: Split
  test: Split
  val: Split | None = None
  synthetic: bool = False
  source: str = ""
  # LUNA16 annotations (and excluded findings) of CT-derived patches, for FROC scoring.
  annotations: str | None = None
  excluded: str | None = None
  # Training images whose labels are withheld (data.num_labelled): the SGAN learns from them
  # without labels; every other model never sees them.
  unlabelled: Split | None = None

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train.images.shape[1:])

  def summary(self) -> str:
    parts = []
    for split_name in ("train", "unlabelled", "val", "test"):
      split = getattr(self, split_name)
      if split is not None:
        neg, pos = split.class_counts
        parts.append(f"{split_name} {len(split)} ({pos} pos / {neg} neg)")
    kind = "synthetic" if self.synthetic else "real"
    return f"{self.name} [{kind}, {self.source}] {'x'.join(map(str, self.image_shape))}: " + \
        ", ".join(parts)


def check_labels(labels: np.ndarray, where: str) -> None:
  bad = ~np.isin(labels, (0, 1))
  if bad.any():
    raise DataError(f"{where}: labels must be 0 or 1, found {sorted(set(labels[bad].tolist()))}")


def check_batch_size(batch_size: int, n: int, where: str = "") -> None:
  """A ConfigError when `batch_size` is larger than the `n` training examples (of `where`): a
  training epoch keeps full batches only, so it would have no step."""
  if batch_size > n:
    raise ConfigError(f"batch_size {batch_size} is larger than the {n} training examples"
                      + (f" of {where}" if where else "") + f"; set --config.batch_size <= {n}")


def check_both_classes(split: Split, where: str) -> None:
  neg, pos = split.class_counts
  if neg == 0 or pos == 0:
    raise DataError(f"{where} has no {'negative' if neg == 0 else 'positive'} examples "
                    f"({pos} positive, {neg} negative): metrics such as AUC need both classes")


def concatenate_splits(*splits: Split) -> Split:
  """One split holding the examples of `splits` in order (meta kept where all have it)."""
  keys = set.intersection(*(set(s.meta or {}) for s in splits))
  meta = {k: np.concatenate([s.meta[k] for s in splits]) for k in sorted(keys)} or None
  return Split(np.concatenate([s.images for s in splits]),
               np.concatenate([s.labels for s in splits]),
               np.concatenate([s.names for s in splits]), meta)


def stratified_sample(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
  """Sorted indices of about `n` examples drawn from each class in its share of `labels`, at
  least one of each class present."""
  take = []
  for cls in (0, 1):
    idx = np.flatnonzero(labels == cls)
    k = min(len(idx), max(1, round(n * len(idx) / len(labels))))
    take.append(rng.permutation(idx)[:k])
  return np.sort(np.concatenate(take))


def capped(split: Split, n: int | None, seed: int) -> Split:
  """At most `n` examples of `split` (stratified, seeded; None: all): `data.max_train`,
  `max_test` and the synthetic caps."""
  if not n or n >= len(split):
    return split
  return split.take(stratified_sample(split.labels, n, np.random.default_rng([seed, 0x5B])))


def labelled_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
  """Sorted indices of the `n` examples that keep their label (`data.num_labelled`): stratified
  and seeded, so seed k labels the same examples for every model."""
  if n < 2:
    raise DataError(f"data.num_labelled must be >= 2 (one per class), got {n}")
  return stratified_sample(labels, n, np.random.default_rng([seed, 0x5CA]))


def with_labelled_subset(dataset: Dataset, n: int | None, seed: int) -> Dataset:
  """`dataset` training with labels on `n` stratified, seeded examples of its training split
  (the same for every model with the same seed); the others become `dataset.unlabelled`.
  None, or n at least the training split's size: `dataset` unchanged."""
  if n is None or n >= len(dataset.train):
    return dataset
  index = labelled_subset(dataset.train.labels, n, seed)
  rest = np.setdiff1d(np.arange(len(dataset.train)), index)
  return dataclasses.replace(dataset, train=dataset.train.take(index),
                             unlabelled=dataset.train.take(rest))


def stratified_holdout(split: Split, fraction: float, seed: int) -> tuple[Split, Split]:
  """Splits off `fraction` of each class (seeded) as a validation split."""
  if not 0.0 < fraction < 1.0:
    raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
  rng = np.random.default_rng([seed, 0x7A1])
  held = []
  for cls in (0, 1):
    idx = np.flatnonzero(split.labels == cls)
    rng.shuffle(idx)
    held.append(idx[:max(1, round(fraction * len(idx)))] if len(idx) > 1 else idx[:0])
  held_idx = np.sort(np.concatenate(held))
  keep = np.ones(len(split), bool)
  keep[held_idx] = False
  return split.take(np.flatnonzero(keep)), split.take(held_idx)


def cache_dir() -> str:
  """Where generated and prepared data are cached: $MEDJAX_CACHE_DIR or ~/.cache/medjax."""
  return os.environ.get("MEDJAX_CACHE_DIR",
                        os.path.join(os.path.expanduser("~"), ".cache", "medjax"))


def save_npz_atomic(path: str, arrays: Mapping[str, np.ndarray]) -> None:
  """Writes an .npz through a temp file + rename, so a crash never leaves a half file."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp.npz")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def build_folder_atomically(root: str, marker: str, write: Callable[[str], None]) -> str:
  """`write(folder)` into a temp folder beside `root`, then renamed to `root`: a crash never
  leaves a half-written folder, and an existing one (its `marker` file present) is kept."""
  if os.path.isfile(os.path.join(root, marker)):
    return root
  parent = os.path.dirname(os.path.abspath(root))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(root) + "_")
  try:
    write(os.path.join(tmp, "data"))
    try:
      os.rename(os.path.join(tmp, "data"), root)
    except OSError:  # another process finished first: its copy is identical
      if not os.path.isfile(os.path.join(root, marker)):
        raise
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return root
