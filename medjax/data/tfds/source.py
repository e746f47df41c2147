"""`data.source="tfds"`: a dataset's splits read from the prepared TFDS data set of medjax's
builders (`tfds.builder(...).as_dataset`) instead of from the image files.

    LUNA16 patch folder  -> luna16_patches        hip<size>_<crop|full> -> hip_xray/<size>_<...>

The data set is prepared (offline, from `data.dir` as the manual folder; the embedded synthetic
hip folder when unset) into `data.tfds_dir` the first time, then read from there. The builders
keep their examples in the loaders' order (`disable_shuffling`), so the splits are the arrays
the files give, in the same order: training is the same as from the files, step for step.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from medjax.config import hip_variant
from medjax.data import luna16_patches, luna_dataset, synthetic_hip
from medjax.data.base import DataError, Dataset, Split, cache_dir, capped
from medjax.data.tfds.hip_xray import HipXrayConfig
from medjax.data.tfds.luna16_patches import Luna16Patches  # noqa: F401 (registers it)
from medjax.errors import ConfigError


def load_dataset(name: str, data_config, seed: int) -> Dataset:
  """`medjax.data.load_dataset`'s Dataset, read from the TFDS data set of `name`."""
  if name != "luna":
    size, crop = hip_variant(name)
    return load_hip(data_config, seed, crop=crop, size=size)
  root = data_config.dir
  if not root or not os.path.isfile(luna16_patches.label_file(root, "train")):
    raise ConfigError("data.source='tfds' reads LUNA16 through the luna16_patches builder: set "
                      "data.dir to the paper's patch folder (traindatalabels.txt); raw CT and "
                      "the embedded synthetic volumes train with data.source='arrays'")
  return luna_dataset(luna_patch_splits(root, data_config),
                      f"TFDS luna16_patches in {data_dir(data_config)} from {root}", data_config,
                      seed)


def data_dir(data_config) -> str:
  """Where prepared TFDS data sets live: data.tfds_dir, else <medjax cache>/tensorflow_datasets."""
  return data_config.tfds_dir or os.path.join(cache_dir(), "tensorflow_datasets")


def read_splits(builder, manual_dir: str, name_key: str) -> dict[str, Split]:
  """Prepares `builder` from `manual_dir` where it is not yet, and reads every split into
  memory in the builder's stored order."""
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  out = {}
  for split in builder.info.splits:
    ex = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, shuffle_files=False))
    names = np.asarray([n.decode() for n in ex[name_key]])
    out[split] = Split(ex["image"], ex["label"].astype(np.int32), names)
  return out


def luna_patch_splits(root: str, data_config) -> dict[str, Split]:
  """The paper's LUNA16 patch folder `root` through the luna16_patches builder."""
  defaults = {"image_size": 50, "include_rotated": False, "bit_depth": None,
              "allow_duplicates": False}
  changed = [f"data.{k}={data_config[k]!r}" for k, v in defaults.items() if data_config[k] != v]
  if changed:
    raise ConfigError(f"{', '.join(changed)}: the luna16_patches TFDS builder reads the folder "
                      "with the defaults; use data.source='arrays'")
  builder = tfds.builder("luna16_patches", data_dir=data_dir(data_config))
  return read_splits(builder, root, "name")


def load_hip(data_config, seed: int, *, crop: bool, size: int) -> Dataset:
  """A hip X-ray variant through the hip_xray builder, with a config of the run's split seed,
  fractions and padding; `max_train` / `max_test` capped as `hip_xray.load_hip` caps them."""
  changed = [f"data.{k}={data_config[k]!r}" for k, v in
             (("bit_depth", None), ("allow_duplicates", False)) if data_config[k] != v]
  if changed:
    raise ConfigError(f"{', '.join(changed)}: the hip_xray TFDS builder does not read them; "
                      "use data.source='arrays'")
  root = data_config.dir or synthetic_hip.hip_root(n=data_config.synthetic_n)
  variant = f"{size}_{'crop' if crop else 'full'}"
  config = HipXrayConfig(
      name=f"{variant}_seed{seed}_val{data_config.val_fraction:g}_test"
           f"{data_config.test_fraction:g}_{data_config.pad}",
      crop=crop, size=size, pad=data_config.pad, seed=seed,
      val_fraction=data_config.val_fraction, test_fraction=data_config.test_fraction,
      description=f"hip{variant} as medjax's data.seed={seed} splits it")
  builder = tfds.builder("hip_xray", config=config, data_dir=data_dir(data_config))
  splits = read_splits(builder, root, "path")
  train = capped(splits["train"], data_config.max_train, seed)
  test = capped(splits["test"], data_config.max_test, seed)
  val = splits.get("val")
  if train is None or test is None:
    raise DataError(f"{root}: the hip_xray TFDS data set has no train or test split")
  source = f"TFDS hip_xray/{variant} in {data_dir(data_config)} from " + \
      ("the embedded synthetic hip X-rays" if not data_config.dir else root)
  return Dataset(f"hip{size}_{'crop' if crop else 'full'}", train=train, test=test,
                 val=val if val is not None and len(val) else None,
                 synthetic=not data_config.dir, source=source)
