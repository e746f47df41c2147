"""Supervised training (CNN, ResNet-50, DBN fine-tuning) and the pieces every trainer shares.

train_and_evaluate(config, workdir, dataset) trains for config.num_epochs through the epoch
driver (`medjax.train.driver`: validation every epoch, orbax checkpoints of the last and the best
epoch, resume), tests the chosen checkpoint and writes into workdir (`medjax.rundir`):
  config.json, data.json   the resolved config and a fingerprint of the data
  metrics.jsonl, events/   one JSON line / TensorBoard scalars per epoch
  checkpoints/             orbax CheckpointManager directory, one step per epoch
  results.json, predictions.csv and figures    `medjax.train.results`
Re-running in the same workdir resumes from the last checkpoint.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import jax
import jax.numpy as jnp

from medjax.data import Dataset, Split
from medjax.rundir import RunDir
from medjax.tensorboard import EventWriter
from medjax.train import bn_stats, driver, optim, parallel, supervised, transfer
from medjax.train.epoch import DeviceEpochs, HostEpochs, TFDataEpochs
from medjax.train.profile import named
from medjax.train.state import count_params, create_train_state, seed_rngs

log = logging.getLogger(__name__)


def augment_config(config) -> dict[str, Any] | None:
  """The on-device augmentation of `config.augment`, or None when it is off."""
  aug = config.augment
  hflip = bool(aug.get("hflip", False)) and not aug.dihedral
  if not aug.dihedral and not aug.max_shift and not hflip:
    return None
  out = {"dihedral": bool(aug.dihedral), "max_shift": int(aug.max_shift)}
  return {**out, "hflip": True} if hflip else out


def train_and_evaluate(config, workdir: str, dataset: Dataset, *, model,
                       overwrite: bool = False, initial_params=None, init=None,
                       extra_results: dict[str, Any] | None = None) -> dict[str, Any]:
  """Supervised training of the classifier `model` (the model table's, `medjax.train.registry`).

  `initial_params` replaces the random initial params (e.g. a pretrained DBN stack); `init`
  (a `transfer.Pretrained`, config.init_from) replaces params and BatchNorm statistics, fitted
  to the model; `extra_results` are added to results.json (e.g. the DBN's pretraining summary).
  """
  with RunDir.open(config, workdir, dataset, overwrite=overwrite) as run:
    return train_supervised(config, run, dataset, model=model, initial_params=initial_params,
                            init=init, extra_results=extra_results)


def train_supervised(config, run: RunDir, dataset: Dataset, *, model, initial_params=None,
                     init=None, extra_results: dict[str, Any] | None = None) -> dict[str, Any]:
  """`train_and_evaluate` in an open run directory."""
  log.info("data: %s", dataset.summary())
  tx, schedule = optim.adam(config, len(dataset.train) // config.batch_size)
  init_rng, train_rng = seed_rngs(config.seed)
  state = create_train_state(model, tx, init_rng, dataset.image_shape)
  if initial_params is not None:
    if jax.tree.structure(initial_params) != jax.tree.structure(state.params):
      raise ValueError("initial_params do not match the model's parameter tree")
    initial_params = jax.tree.map(jnp.asarray, initial_params)
    state = state.replace(params=initial_params, opt_state=tx.init(initial_params))
  if init is not None:
    state, summary = transfer.initialize(state, tx, init)
    log.info("init_from: %s", transfer.describe(summary))
    extra_results = {**(extra_results or {}), "init_from": summary}
  log.info("model: %s (%s, %s), %s parameters", config.model, config.model_size,
           config.dtype, f"{count_params(state.params):,}")

  step = functools.partial(supervised.train_step, model=model, tx=tx,
                           augment=augment_config(config),
                           norm_train=not config.freeze_backbone)
  # Data parallel over every device (one device included): batch sharded, state replicated.
  mesh = parallel.data_mesh()
  parallel.check_batch_size(config.batch_size, mesh)
  train_rng = parallel.put_replicated(train_rng, mesh)
  source = epoch_source(config, step, dataset.train, config.seed, train_rng, mesh=mesh)
  eval_fn = jax.jit(functools.partial(supervised.eval_step, model=model))

  member = driver.Member(config, run, events=open_events(run))
  state, start = driver.restore([member], parallel.put_replicated(state, mesh))
  task = driver.Task(source=source, eval_fn=eval_fn, images_per_step=config.batch_size,
                     learning_rate=schedule,
                     refresh_stats=bn_stats.from_config(config, model, dataset.train))
  try:
    state = driver.fit(task, [member], state, start, dataset)
    return driver.finish_member(member, state, dataset, eval_fn, extra=extra_results)
  finally:
    if member.events is not None:
      member.events.close()


def epoch_source(config, step, split: Split, seed, rng, *, mesh=None):
  """The epoch source of `config`: device-resident chunks (`config.device_resident`), batches
  from a tf.data pipeline (`config.data.source="tfdata"`) or from host arrays; with `mesh`,
  batches are sharded over its data axis and resident data replicated. `seed` may be a list
  (stacked seeds: `step` is then the vmapped step)."""
  if config.data.source == "tfdata":
    return TFDataEpochs(jax.jit(named(step, "train_step"), donate_argnums=0), split, config.batch_size, seed=seed,
                        chunk=config.log_every, rng=rng, mesh=mesh)
  if config.device_resident:
    kw = {}
    if mesh is not None:
      kw = {"put_data": functools.partial(parallel.put_replicated, mesh=mesh),
            "batch_sharding": parallel.batch_sharded(mesh)}
    return DeviceEpochs(step, split, config.batch_size, seed=seed, chunk=config.log_every,
                        rng=rng, **kw)
  place = functools.partial(parallel.put_batch, mesh=mesh) if mesh is not None else None
  return HostEpochs(jax.jit(named(step, "train_step"), donate_argnums=0), split, config.batch_size, seed=seed,
                    chunk=config.log_every, rng=rng, place_batch=place)


def open_events(run: RunDir):
  """The run's TensorBoard writer (events/ beside metrics.jsonl), on process 0 only."""
  return EventWriter(run.file("events"), enabled=run.writer)
