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

import contextlib
import copy
import functools
import logging
from typing import Any, Sequence

import jax

from medjax.data import Dataset
from medjax.rundir import RunDir
from medjax.train import bn_stats, driver, ensemble, loop, optim, supervised
from medjax.train.registry import model_spec

log = logging.getLogger(__name__)


def config_for_seed(config, seed: int):
  """A copy of the (resolved, locked) config with `seed` replaced; the data seed is kept."""
  c = copy.deepcopy(config)
  c.seed = int(seed)
  return c


def train_seeds(config, seeds: Sequence[int], workdirs: Sequence[str], dataset: Dataset, *,
                overwrite: bool = False) -> list[dict[str, Any]]:
  """Trains `config`'s model (a stackable one: CNN or ResNet) once per seed, all in one vmapped
  step; returns each seed's results.json content. Seeds whose checkpoints are at different
  epochs (a run killed between two seeds' saves) are resumed one by one instead."""
  seeds = [int(s) for s in seeds]
  if len(seeds) != len(workdirs) or len(set(seeds)) != len(seeds):
    raise ValueError(f"need one workdir per distinct seed, got seeds {seeds} and "
                     f"{len(workdirs)} workdirs")
  spec = model_spec(config.model)
  if not spec.stackable:
    raise ValueError(f"the seeds of {config.model!r} cannot train in one vmapped step (its "
                     "training has phases of its own): run its seeds one by one")
  if jax.process_count() > 1:
    raise ValueError("stacked seeds run in one process; use one process per seed group")
  configs = [config_for_seed(config, s) for s in seeds]
  with contextlib.ExitStack() as stack:
    runs = [stack.enter_context(RunDir.open(c, w, dataset, overwrite=overwrite))
            for c, w in zip(configs, workdirs)]
    log.info("data: %s", dataset.summary())
    model = spec.classifier(config, dataset.image_shape)
    tx, schedule = optim.adam(config, len(dataset.train) // config.batch_size)
    state = ensemble.create_train_states(model, tx, seeds, dataset.image_shape)
    members = [driver.Member(c, r, events=loop.open_events(r)) for c, r in zip(configs, runs)]
    for m in members:
      stack.callback(m.events.close)
    try:
      state, start = driver.restore(members, state, stacked=True)
    except driver.UnevenResumeError as e:
      log.warning("seeds %s %s", seeds, e)
      stack.close()
      return [spec.train(c, w, dataset) for c, w in zip(configs, workdirs)]
    log.info("model: %s (%s, %s), %d seeds %s in one vmapped step", config.model,
             config.model_size, config.dtype, len(seeds), seeds)
    step = ensemble.stacked_step(functools.partial(
        supervised.train_step, model=model, tx=tx, augment=loop.augment_config(config)))
    source = loop.epoch_source(config, step, dataset.train, seeds, ensemble.step_rngs(seeds))
    eval_fn = jax.jit(jax.vmap(functools.partial(supervised.eval_step, model=model),
                               in_axes=(0, None)))
    one_eval_fn = jax.jit(functools.partial(supervised.eval_step, model=model))
    task = driver.Task(source=source, eval_fn=eval_fn, images_per_step=config.batch_size,
                       stacked=True, learning_rate=schedule,
                       refresh_stats=bn_stats.from_config(config, model, dataset.train,
                                                          stacked=True))
    state = driver.fit(task, members, state, start, dataset)

    n = len(seeds)
    results = []
    for i, m in enumerate(members):
      per_model = (m.meta["timed_images"] / m.meta["timed_seconds"]
                   if m.meta["timed_seconds"] else None)
      results.append(driver.finish_member(
          m, ensemble.unstack(state, i), dataset, one_eval_fn,
          extra={"stacked_seeds": seeds,
                 "stacked_images_per_second": round(per_model * n, 1) if per_model else None}))
    return results
