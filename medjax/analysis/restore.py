"""A finished run, loaded back from its workdir: config, model, the tested checkpoint's variables.

    run = restore("runs/luna_cnn-synthetic")
    probs = run.predict(images)          # P(positive), as in the run's predictions.csv
    logits = run.logits(images)          # jitted; NHWC uint8 0..255 or float in [0, 1]

    ensemble = restore("runs/luna_cnn/ensemble")   # the seeds' runs, restored one by one
    probs = ensemble.predict(images)               # their mean, as in its predictions.csv

Every model is loaded the same way, through the model table (`medjax.train.registry`): the
classifier is built as its trainer builds it (the SGAN's is its discriminator), and the
checkpoint that results.json says was tested is restored, read-only, against a `jax.eval_shape`
template of the trainer's state.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from medjax import config as config_lib
from medjax.errors import WorkdirError
from medjax.train.registry import model_spec

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Restored:
  """A trained classifier of a workdir.

  model       the linen classifier (the SGAN's discriminator), applied with `train=False`
  variables   {"params": ..., "batch_stats": ...} for `model.apply`
  preprocess  images as the data feeds them -> the model's input (float32 [0, 1]; the SGAN's
              discriminator: [-1, 1])
  state       the whole restored train state (the SGAN's generator, optimizer states) when
              `restore(..., keep_state=True)` asked for it (config.init_from), else None
  """
  workdir: str
  config: ml_collections.ConfigDict
  results: dict[str, Any]
  model: Any
  variables: dict[str, Any]
  preprocess: Callable
  epoch: int
  image_shape: tuple[int, int, int]
  state: Any = None

  def logits(self, images) -> jax.Array:
    """Logits [N, K] of NHWC `images` (uint8 0..255 or float in [0, 1]), jitted."""
    return model_logits(self.variables, images, model=self.model, preprocess=self.preprocess)

  def predict(self, images, batch_size: int | None = None) -> np.ndarray:
    """P(positive) [N] in batches of `batch_size` (default: the run's eval_batch_size)."""
    batch_size = batch_size or self.config.eval_batch_size
    probs = [np.asarray(jax.nn.softmax(self.logits(images[i:i + batch_size]), -1)[:, 1])
             for i in range(0, len(images), batch_size)]
    return np.concatenate(probs) if probs else np.zeros(0, np.float32)

  @property
  def synthetic(self) -> bool:
    return bool(self.results.get("synthetic", not self.config.data.dir))


@dataclasses.dataclass(frozen=True)
class RestoredEnsemble:
  """The seed ensemble of a directory that `medjax.analysis.seed_ensemble` wrote: its members'
  runs restored; P(positive) is the mean of theirs, as in the ensemble's predictions.csv."""
  workdir: str
  results: dict[str, Any]
  members: tuple[Restored, ...]

  @property
  def config(self) -> ml_collections.ConfigDict:
    """The first member's config (the members share its data split)."""
    return self.members[0].config

  def predict(self, images, batch_size: int | None = None) -> np.ndarray:
    return np.mean([m.predict(images, batch_size) for m in self.members], axis=0)

  @property
  def synthetic(self) -> bool:
    return self.members[0].synthetic


@functools.partial(jax.jit, static_argnames=("model", "preprocess"))
def model_logits(variables, images, *, model, preprocess):
  """`model`'s logits [N, K] in inference mode for images as the data feeds them."""
  return model.apply(variables, preprocess(images), train=False)


def is_ensemble(workdir: str) -> bool:
  """Whether `workdir` holds a seed ensemble (results.json, no config.json of its own)."""
  return (not os.path.isfile(os.path.join(workdir, "config.json")) and
          os.path.isfile(os.path.join(workdir, "results.json")) and
          read_json(workdir, "results.json", "seed ensemble").get("ensemble") is True)


def restore_ensemble(workdir: str) -> RestoredEnsemble:
  """Restores every member of the seed ensemble in `workdir` (see `restore`)."""
  results = read_json(workdir, "results.json", "seed ensemble")
  members = results.get("members")
  if not members or not isinstance(members, list):
    raise WorkdirError(f"{workdir}/results.json names no members of the ensemble")
  return RestoredEnsemble(workdir=workdir, results=results, members=tuple(
      restore(os.path.join(workdir, m)) for m in members))


def read_json(workdir: str, name: str, what: str) -> dict[str, Any]:
  path = os.path.join(workdir, name)
  if not os.path.isfile(path):
    raise WorkdirError(f"{path} is missing: {workdir} does not hold a {what}")
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError) as e:
    raise WorkdirError(f"cannot read {path}: {e}") from None


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's resolved config: `base_config(dataset, model)` updated with config.json (locked).
  Fields config.json has and medjax no longer knows are skipped with a warning."""
  saved = read_json(workdir, "config.json", "medjax run (no config.json)")
  try:
    config = config_lib.base_config(saved["dataset"], saved["model"])
  except KeyError as e:
    raise WorkdirError(f"{workdir}/config.json has no {e} field") from None
  unknown = []

  def merge(target, values, prefix):
    for key, value in values.items():
      if key not in target:
        unknown.append(prefix + key)
      elif isinstance(value, dict) and isinstance(target[key], ml_collections.ConfigDict):
        merge(target[key], value, f"{prefix}{key}.")
      else:
        try:
          setattr(target, key, value)
        except TypeError as e:  # a field whose type changed since the run
          raise WorkdirError(f"{workdir}/config.json: {prefix}{key}={value!r}: {e}") from None

  merge(config, saved, "")
  if unknown:
    log.warning("%s/config.json: skipping fields unknown to this medjax: %s", workdir,
                ", ".join(unknown))
  config.lock()
  return config


def image_shape(workdir: str, config) -> tuple[int, int, int]:
  """The training images' [H, W, C], from data.json (else from the config)."""
  path = os.path.join(workdir, "data.json")
  if os.path.isfile(path):
    with open(path) as f:
      shape = json.load(f).get("image_shape")
    if shape:
      return tuple(int(n) for n in shape)
  size = config.data.image_size
  return size, size, config.data.slices if config.dataset == "luna" else 1


def _not_read_only_notice(record: logging.LogRecord) -> bool:
  return "read only" not in record.getMessage()


def restore_state(checkpoints: str, epoch: int, template):
  """The train state of `epoch` in the orbax CheckpointManager directory, read-only, placed on
  the first local device."""
  if not os.path.isdir(checkpoints):
    raise WorkdirError(f"{checkpoints} is missing: the run has no checkpoints")
  absl_log = logging.getLogger("absl")
  absl_log.addFilter(_not_read_only_notice)  # orbax warns that a read-only manager is one
  try:
    manager = ocp.CheckpointManager(checkpoints, options=ocp.CheckpointManagerOptions(
        read_only=True, create=False, save_interval_steps=0))
  finally:
    absl_log.removeFilter(_not_read_only_notice)
  try:
    steps = manager.all_steps()
    if epoch not in steps:
      raise WorkdirError(
          f"{os.path.join(checkpoints, str(epoch))} is missing: results.json tested epoch "
          f"{epoch}, the checkpoints hold epochs {sorted(steps) or 'none'}")
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), template)
    try:
      restored = manager.restore(epoch, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract)))
    except (ValueError, KeyError, TypeError) as e:
      raise WorkdirError(f"cannot restore {os.path.join(checkpoints, str(epoch))} into the "
                         f"model config.json describes: {e}") from e
  finally:
    manager.close()
  return restored["state"]


def restore(workdir: str, *, epoch: int | None = None,
            keep_state: bool = False) -> Restored | RestoredEnsemble:
  """Loads the classifier of a finished run, or the members of a seed ensemble's directory;
  `epoch` defaults to the checkpoint results.json was tested with; `keep_state` keeps the whole
  train state in `Restored.state` (not only the classifier's variables; the optimizer states
  make it several times their size). Raises WorkdirError when the workdir, its results or
  checkpoint is missing."""
  if not os.path.isdir(workdir):
    raise WorkdirError(f"{workdir} is not a directory: expected the workdir of a finished run")
  if is_ensemble(workdir):
    if epoch is not None:
      raise WorkdirError(f"{workdir} is a seed ensemble: its members' epochs are their own")
    return restore_ensemble(workdir)
  config = load_config(workdir)
  results = read_json(workdir, "results.json",
                      "finished run (no results.json: the run has not finished)")
  if epoch is None:
    try:
      epoch = int(results["checkpoint"]["epoch"])
    except (KeyError, TypeError, ValueError):
      raise WorkdirError(f"{workdir}/results.json does not say which checkpoint was tested "
                         "(no checkpoint.epoch)") from None
  shape = image_shape(workdir, config)
  spec = model_spec(config.model)
  template = spec.state_template(config, shape, int(results.get("n_train") or config.batch_size))
  state = restore_state(os.path.join(os.path.abspath(workdir), "checkpoints"), epoch, template)
  log.info("restored %s (%s, %s) epoch %d from %s", config.experiment, config.model_size,
           config.dtype, epoch, workdir)
  return Restored(workdir=workdir, config=config, results=results,
                  model=spec.classifier(config, shape), variables=spec.variables(state),
                  preprocess=spec.preprocess, epoch=epoch, image_shape=shape,
                  state=state if keep_state else None)
