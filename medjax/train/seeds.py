"""Several seeds of one supervised model trained at once: one vmapped step over stacked states.

    results = train_seeds(config, seeds=[0, 1, 2], workdirs=[...], dataset=dataset)

At the paper's batch 20 one ResNet-50 leaves most of a GPU idle; the N models of a seed study
(or of N folds' worth of restarts) run as one step on [N, batch, ...] inputs instead. Each model
has the init, batch order and step randomness it would have alone (`medjax.train.ensemble`), and
each seed's workdir looks exactly like a single run's: config.json (with its own seed),
metrics.jsonl, checkpoints/ (latest and best by validation), results.json, predictions.csv. So a
stacked run resumes stacked, and any one seed can be resumed or inspected on its own.

All seeds share `dataset` (the split is `config.data.seed`'s). The stacked path runs on one
device (the data-parallel path of `loop.train_and_evaluate` is for one model over many devices).
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import os
import time
from typing import Any, Sequence

import jax
import numpy as np
import optax

from medjax.data import Dataset
from medjax.models import create_model
from medjax.train import ensemble, loop, supervised
from medjax.train.epoch import DeviceEpochs, HostEpochs

log = logging.getLogger(__name__)


def config_for_seed(config, seed: int):
  """A copy of the (resolved, locked) config with `seed` replaced; the data seed is kept."""
  c = copy.deepcopy(config)
  c.seed = int(seed)
  return c


def train_seeds(config, seeds: Sequence[int], workdirs: Sequence[str], dataset: Dataset, *,
                overwrite: bool = False) -> list[dict[str, Any]]:
  """Trains `config`'s CNN or ResNet once per seed, all in one vmapped step; returns each seed's
  results.json content. Seeds whose checkpoints are at different epochs (a run killed between
  two seeds' saves) are resumed one by one instead."""
  seeds = [int(s) for s in seeds]
  if len(seeds) != len(workdirs) or len(set(seeds)) != len(seeds):
    raise ValueError(f"need one workdir per distinct seed, got seeds {seeds} and "
                     f"{len(workdirs)} workdirs")
  if config.model not in ("cnn", "resnet"):
    raise ValueError(f"stacked seeds train the supervised models (cnn, resnet), not "
                     f"{config.model!r}: run its seeds one by one")
  if jax.process_count() > 1:
    raise ValueError("stacked seeds run in one process; use one process per seed group")
  configs = [config_for_seed(config, s) for s in seeds]
  for c, w in zip(configs, workdirs):
    loop.prepare_workdir(c, w, overwrite)
  log.info("data: %s", dataset.summary())

  model = create_model(config.model, size=config.model_size, num_classes=2, dtype=config.dtype)
  tx = optax.adam(config.learning_rate)
  state = ensemble.create_train_states(model, tx, seeds, dataset.image_shape)
  opened = [loop.open_checkpoints(c, w, ensemble.unstack(state, i), overwrite=overwrite)
            for i, (c, w) in enumerate(zip(configs, workdirs))]
  ckpts = [o[0] for o in opened]
  metas = [o[2] for o in opened]
  epochs_done = {m["epoch"] for m in metas}
  if len(epochs_done) > 1:
    for c in ckpts:
      c.close()
    log.warning("seeds %s stopped at different epochs %s: resuming them one by one", seeds,
                [m["epoch"] for m in metas])
    return [loop.train_and_evaluate(c, w, dataset) for c, w in zip(configs, workdirs)]
  state = jax.tree.map(lambda *xs: np.stack(xs), *[o[1] for o in opened])
  state = jax.device_put(state)
  start_epoch = metas[0]["epoch"]
  train_seconds = metas[0]["train_seconds"]
  timed_images, timed_seconds = metas[0]["timed_images"], metas[0]["timed_seconds"]
  log.info("model: %s (%s, %s), %d seeds %s in one vmapped step", config.model,
           config.model_size, config.dtype, len(seeds), seeds)

  step = ensemble.stacked_step(functools.partial(
      supervised.train_step, model=model, tx=tx, augment=loop._augment_config(config)))
  rngs = ensemble.step_rngs(seeds)
  if config.device_resident:
    epochs = DeviceEpochs(step, dataset.train, config.batch_size, seed=seeds,
                          chunk=config.log_every)
  else:
    epochs = HostEpochs(jax.jit(step, donate_argnums=0), dataset.train, config.batch_size,
                        seed=seeds, chunk=config.log_every)
  eval_fn = jax.jit(jax.vmap(functools.partial(supervised.eval_step, model=model),
                             in_axes=(0, None)))
  one_eval_fn = jax.jit(functools.partial(supervised.eval_step, model=model))
  steps_per_epoch = epochs.steps_per_epoch
  metrics_paths = [os.path.join(w, "metrics.jsonl") for w in workdirs]
  n = len(seeds)
  warm = False
  try:
    for epoch in range(start_epoch + 1, config.num_epochs + 1):
      t0 = time.perf_counter()
      history = []
      bar = loop.epoch_bar(epoch, config.num_epochs, steps_per_epoch)
      t_chunk = time.perf_counter()
      for state, chunk in epochs.run(state, epoch, rngs):
        now = time.perf_counter()
        if warm:  # the first chunk of a process includes compilation
          timed_seconds += now - t_chunk
          timed_images += len(chunk) * config.batch_size * n
        warm, t_chunk = True, now
        for j, m in enumerate(chunk):
          bad = [s for s, loss, g in zip(seeds, m["loss"], m["grad_norm"])
                 if not (math.isfinite(loss) and math.isfinite(g))]
          if bad:
            last = ckpts[0].latest_epoch
            raise loop.NonFiniteLossError(
                f"non-finite loss or gradient for seed(s) {bad} at step "
                f"{len(history) + j + 1} of epoch {epoch}; last good checkpoints: epoch "
                f"{last if last is not None else 'none (failed in epoch 1)'} in "
                + ", ".join(c.directory for c in ckpts))
        history.extend(chunk)
        bar.update(len(chunk))
        bar.set_postfix(loss=f"{np.mean([m['loss'] for m in history]):.4f}", refresh=False)
      bar.close()
      t_train = time.perf_counter() - t0
      train_seconds += t_train

      val_probs = (loop.predict(eval_fn, state, dataset.val, config.eval_batch_size)
                   if dataset.val is not None else None)
      meta = {"epoch": epoch, "train_seconds": train_seconds, "timed_images": timed_images,
              "timed_seconds": timed_seconds}
      records = []
      steps = np.asarray(state.step)  # one device fetch for all seeds
      for i, c in enumerate(configs):
        record = {"epoch": epoch, "step": int(steps[i]),
                  **{f"train_{k}": float(np.mean([h[k][i] for h in history]))
                     for k in history[0]},
                  "epoch_seconds": t_train,
                  "train_images_per_second": steps_per_epoch * config.batch_size / t_train,
                  "stacked_seeds": n}
        ckpt_metrics = None
        if val_probs is not None:
          val_record, ckpt_metrics = loop.val_metrics(c, dataset.val.labels, val_probs[i],
                                                      ckpts[i].metric)
          record.update(val_record)
        if loop.is_writer():
          with open(metrics_paths[i], "a") as f:
            f.write(json.dumps(record) + "\n")
        ckpts[i].save(epoch, ensemble.unstack(state, i), meta, ckpt_metrics)
        records.append(record)
      val_text = (", val acc " + "/".join(f"{r['val_accuracy']:.3f}" for r in records)
                  if val_probs is not None else "")
      log.info("epoch %d/%d: loss %s, train acc %s%s (%.1fs, %.0f img/s over %d seeds)", epoch,
               config.num_epochs, "/".join(f"{r['train_loss']:.4f}" for r in records),
               "/".join(f"{r['train_accuracy']:.3f}" for r in records), val_text, t_train,
               n * steps_per_epoch * config.batch_size / t_train, n)
  finally:  # an error or Ctrl-C never abandons a checkpoint half-written
    for c in ckpts:
      c.manager.wait_until_finished()

  aggregate = timed_images / timed_seconds if timed_seconds else None
  results = []
  for i, (c, w) in enumerate(zip(configs, workdirs)):
    one, checkpoint = loop.restore_for_test(c, dataset, ckpts[i], ensemble.unstack(state, i))
    probs = loop.predict(one_eval_fn, one, dataset.test, config.eval_batch_size)
    results.append(loop.write_results(
        c, w, dataset, probs, train_seconds=train_seconds,
        images_per_second=aggregate / n if aggregate else None, checkpoint=checkpoint,
        extra={"stacked_seeds": seeds,
               "stacked_images_per_second": round(aggregate, 1) if aggregate else None}))
  return results
