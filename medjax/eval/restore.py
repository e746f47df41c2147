"""A finished run, loaded back from its workdir: config, model, the tested checkpoint's variables.

    run = restore("runs/luna_cnn-synthetic")
    probs = run.predict(images)          # P(positive), as in the run's predictions.csv
    logits = run.logits(images)          # jitted; NHWC uint8 0..255 or float in [0, 1]

The model is built as its trainer builds it (`medjax.train.loop` for the CNN and ResNet-50,
`medjax.train.dbn` for the DBN, `medjax.train.sgan` for the SGAN, whose classifier is the
discriminator) and the checkpoint that results.json says was tested is restored against a
`jax.eval_shape` template of the trainer's state, read-only.
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

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Restored:
  """A trained classifier of a workdir.

  model       the linen classifier (the SGAN's discriminator), applied with `train=False`
  variables   {"params": ..., "batch_stats": ...} for `model.apply`
  preprocess  images as the data feeds them -> the model's input (float32 [0, 1]; the SGAN's
              discriminator: [-1, 1])
  """
  workdir: str
  config: ml_collections.ConfigDict
  results: dict[str, Any]
  model: Any
  variables: dict[str, Any]
  preprocess: Callable
  epoch: int
  image_shape: tuple[int, int, int]

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


@functools.partial(jax.jit, static_argnames=("model", "preprocess"))
def model_logits(variables, images, *, model, preprocess):
  """`model`'s logits [N, K] in inference mode for images as the data feeds them."""
  return model.apply(variables, preprocess(images), train=False)


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


def abstract_state(config, shape: tuple[int, int, int], n_train: int):
  """(classifier, preprocess, template of the trainer's state, state -> variables)."""
  init_rng = jax.random.key(config.seed)
  if config.model == "sgan":
    from medjax.models.sgan import to_tanh_range
    from medjax.train import sgan
    generator, discriminator = sgan.create_models(config, shape)
    g_tx, d_tx = sgan.create_optimizers(config.sgan)
    template = jax.eval_shape(lambda rng: sgan.create_state(
        generator, discriminator, g_tx, d_tx, rng, shape, config.sgan.latent_dim), init_rng)
    return discriminator, to_tanh_range, template, lambda s: {"params": s.d_params}

  from medjax.train import optim
  from medjax.train.state import create_train_state
  from medjax.train.supervised import to_float
  if config.model == "dbn":
    from medjax.models import DTYPES
    from medjax.models.rbm import DBN
    from medjax.train.dbn import layer_sizes
    model = DBN(num_classes=2, hidden=layer_sizes(config)[0], dtype=DTYPES[config.dtype])
  else:
    from medjax.models import create_model
    model = create_model(config.model, size=config.model_size, num_classes=2,
                         dtype=config.dtype)
  tx, _ = optim.adam(config, max(1, n_train // config.batch_size))
  template = jax.eval_shape(lambda rng: create_train_state(model, tx, rng, shape), init_rng)
  return model, to_float, template, lambda s: {"params": s.params,
                                               "batch_stats": s.batch_stats}


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


def restore(workdir: str, *, epoch: int | None = None) -> Restored:
  """Loads the classifier of a finished run; `epoch` defaults to the checkpoint results.json
  was tested with. Raises WorkdirError when the workdir, its results or checkpoint is missing."""
  if not os.path.isdir(workdir):
    raise WorkdirError(f"{workdir} is not a directory: expected the workdir of a finished run")
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
  model, preprocess, template, to_variables = abstract_state(
      config, shape, int(results.get("n_train") or config.batch_size))
  state = restore_state(os.path.join(os.path.abspath(workdir), "checkpoints"), epoch, template)
  log.info("restored %s (%s, %s) epoch %d from %s", config.experiment, config.model_size,
           config.dtype, epoch, workdir)
  return Restored(workdir=workdir, config=config, results=results, model=model,
                  variables=to_variables(state), preprocess=preprocess, epoch=epoch,
                  image_shape=shape)
