"""The epoch loop shared by the supervised experiments.

train_and_evaluate(config, workdir, dataset) trains for config.num_epochs, evaluates on the
validation split after every epoch, checkpoints every epoch (orbax: the last and the best by the
validation metric), evaluates the chosen checkpoint on the test split and writes into workdir:
  config.json        the resolved config (a re-run with another config is refused)
  metrics.jsonl      one JSON line per epoch (train loss/accuracy, norms, val metrics, timing)
  checkpoints/       orbax CheckpointManager directory, one step per epoch
  results.json       the contract of DESIGN.md, plus extra context fields
  predictions.csv    name,label,prob_positive for every test example
  confusion_matrix.png
Re-running in the same workdir resumes from the last checkpoint.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import shutil
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from medjax.data import Dataset, Split
from medjax.eval import metrics as metrics_lib
from medjax.eval.plots import save_confusion_matrix
from medjax.models import create_model
from medjax.train import parallel, supervised
from medjax.train.checkpoint import Checkpoints
from medjax.train.epoch import DeviceEpochs, HostEpochs
from medjax.train.state import count_params, create_train_state

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
  """The loss or gradient became NaN/Inf; carries where it happened."""


class ConfigMismatchError(ValueError):
  """The workdir holds a run with a different config."""


def config_to_dict(config) -> dict[str, Any]:
  return json.loads(config.to_json_best_effort()) if hasattr(config, "to_json_best_effort") \
      else dict(config)


def _flatten(d, prefix=""):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def is_writer() -> bool:
  """Only process 0 writes files in a multi-host run (orbax coordinates checkpoints itself)."""
  return jax.process_index() == 0


def check_workdir_config(workdir: str, config_dict: dict, overwrite: bool = False) -> None:
  """Writes config.json, or refuses a workdir whose saved config differs."""
  path = os.path.join(workdir, "config.json")
  if os.path.exists(path) and not overwrite:
    with open(path) as f:
      saved = _flatten(json.load(f))
    current = _flatten(config_dict)
    diffs = [f"{k}: {saved.get(k, '<absent>')!r} -> {current.get(k, '<absent>')!r}"
             for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    if diffs:
      raise ConfigMismatchError(
          f"{workdir} holds a run with another config ({'; '.join(diffs)}). Use another "
          "--workdir, or pass --overwrite to discard that run and start over.")
    return
  if is_writer():
    _write_json(path, config_dict)


OUTPUTS = ("checkpoints", "metrics.jsonl", "results.json", "predictions.csv",
           "confusion_matrix.png", "samples", "submission_luna16.csv",
           "submission_seriesuids.csv")


def remove_outputs(workdir: str) -> None:
  """Deletes a previous run's training outputs (for --overwrite)."""
  for name in OUTPUTS:
    path = os.path.join(workdir, name)
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.exists(path):
      os.remove(path)


def truncate_metrics(path: str, last_epoch: int) -> None:
  """Keeps the metrics lines of epochs <= last_epoch: a run killed after logging an epoch but
  before its checkpoint was committed re-runs that epoch without a duplicate line."""
  if not os.path.exists(path):
    return
  with open(path) as f:
    lines = [l for l in f if l.strip()]
  kept = []
  for line in lines:
    try:
      if json.loads(line)["epoch"] <= last_epoch:
        kept.append(line)
    except (ValueError, KeyError):  # a line cut short by a kill
      break
  if len(kept) != len(lines):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
      f.writelines(kept)
    os.replace(tmp, path)


def open_checkpoints(config, workdir: str, state, *, overwrite: bool = False):
  """The run's checkpoint manager, and `state` restored from its latest epoch if there is one.

  Returns (ckpts, state, meta) with meta's "epoch" (0 for a new run), "train_seconds",
  "timed_images" and "timed_seconds". `overwrite` first removes a previous run's outputs;
  metrics.jsonl is trimmed to the restored epoch.
  """
  if overwrite and is_writer():
    remove_outputs(workdir)
  ckpts = Checkpoints(os.path.join(workdir, "checkpoints"),
                      metric=f"val_{config.checkpoint_metric}")
  meta = {"epoch": 0, "train_seconds": 0.0, "timed_images": 0, "timed_seconds": 0.0}
  if ckpts.latest_epoch is not None:
    state, saved = ckpts.restore(ckpts.latest_epoch, state)
    meta.update(saved)
    log.info("resuming from %s (epoch %d of %d)", ckpts.path(meta["epoch"]), meta["epoch"],
             config.num_epochs)
  if is_writer():
    truncate_metrics(os.path.join(workdir, "metrics.jsonl"), meta["epoch"])
  return ckpts, state, meta


def validate(config, dataset: Dataset, eval_fn, state, metric_name: str):
  """Validation metrics for metrics.jsonl ("val_*") and the checkpoint metric, or ({}, None)
  without a validation split. An undefined metric (AUC with one class) falls back to accuracy."""
  if dataset.val is None:
    return {}, None
  return val_metrics(config, dataset.val.labels,
                     predict(eval_fn, state, dataset.val, config.eval_batch_size), metric_name)


def val_metrics(config, labels: np.ndarray, probs: np.ndarray, metric_name: str):
  """`validate` from the validation split's P(positive)."""
  val = metrics_lib.classification_metrics(labels, probs, seed=config.seed)
  value = val[config.checkpoint_metric]
  return ({f"val_{k}": v for k, v in val.items() if k != "accuracy_ci95"},
          {metric_name: value if value is not None else val["accuracy"]})


def predict(eval_fn, state, split: Split, batch_size: int) -> np.ndarray:
  """P(positive) for every example ([..., n]: eval_fn may return [..., batch, K], e.g. one row
  per stacked model); the last batch is padded so eval compiles once."""
  probs = []
  for start in range(0, len(split), batch_size):
    images = split.images[start:start + batch_size]
    n = len(images)
    if n < batch_size:
      images = np.concatenate([images, np.zeros((batch_size - n, *images.shape[1:]),
                                                images.dtype)])
    probs.append(np.asarray(eval_fn(state, {"image": images}))[..., :n, 1])
  return np.concatenate(probs, axis=-1)


def _mean_metrics(history: list[dict]) -> dict[str, float]:
  return {k: float(np.mean([h[k] for h in history])) for k in history[0]}


def _augment_config(config) -> dict[str, Any] | None:
  aug = config.augment
  if not aug.dihedral and not aug.max_shift:
    return None
  return {"dihedral": bool(aug.dihedral), "max_shift": int(aug.max_shift)}


def prepare_workdir(config, workdir: str, overwrite: bool = False) -> None:
  """Creates the workdir and records (or checks) its config."""
  os.makedirs(workdir, exist_ok=True)
  check_workdir_config(workdir, config_to_dict(config), overwrite)


def epoch_bar(epoch: int, num_epochs: int, steps: int):
  """The per-epoch progress bar, on terminals only (the per-epoch log line suffices in logs)."""
  return tqdm(total=steps, desc=f"epoch {epoch}/{num_epochs}", unit="step", leave=False,
              dynamic_ncols=True, file=sys.stderr, disable=not sys.stderr.isatty())


def train_and_evaluate(config, workdir: str, dataset: Dataset, *, overwrite: bool = False,
                       model=None, initial_params=None,
                       extra_results: dict[str, Any] | None = None) -> dict[str, Any]:
  """Supervised training of `model` (default: `create_model(config.model, ...)`).

  `initial_params` replaces the random initial params (e.g. a pretrained DBN stack);
  `extra_results` are added to results.json (e.g. the DBN's pretraining summary).
  """
  prepare_workdir(config, workdir, overwrite)
  log.info("data: %s", dataset.summary())

  if model is None:
    model = create_model(config.model, size=config.model_size, num_classes=2,
                         dtype=config.dtype)
  tx = optax.adam(config.learning_rate)
  init_rng, train_rng = jax.random.split(jax.random.key(config.seed))
  state = create_train_state(model, tx, init_rng, dataset.image_shape)
  if initial_params is not None:
    if jax.tree.structure(initial_params) != jax.tree.structure(state.params):
      raise ValueError("initial_params do not match the model's parameter tree")
    initial_params = jax.tree.map(jnp.asarray, initial_params)
    state = state.replace(params=initial_params, opt_state=tx.init(initial_params))
  log.info("model: %s (%s, %s), %s parameters", config.model, config.model_size, config.dtype,
           f"{count_params(state.params):,}")

  step = functools.partial(supervised.train_step, model=model, tx=tx,
                           augment=_augment_config(config))
  # Data parallel over every device (one device included): batch sharded, state replicated.
  mesh = parallel.data_mesh()
  parallel.check_batch_size(config.batch_size, mesh)
  state = parallel.put_replicated(state, mesh)
  train_rng = parallel.put_replicated(train_rng, mesh)
  if config.device_resident:
    epochs = DeviceEpochs(step, dataset.train, config.batch_size, seed=config.seed,
                          chunk=config.log_every,
                          put_data=functools.partial(parallel.put_replicated, mesh=mesh),
                          batch_sharding=parallel.batch_sharded(mesh))
  else:
    epochs = HostEpochs(jax.jit(step, donate_argnums=0), dataset.train, config.batch_size,
                        seed=config.seed, chunk=config.log_every,
                        place_batch=functools.partial(parallel.put_batch, mesh=mesh))
  eval_fn = jax.jit(functools.partial(supervised.eval_step, model=model))

  metrics_path = os.path.join(workdir, "metrics.jsonl")
  ckpts, state, meta = open_checkpoints(config, workdir, state, overwrite=overwrite)
  start_epoch, train_seconds = meta["epoch"], meta["train_seconds"]
  timed_images, timed_seconds = meta["timed_images"], meta["timed_seconds"]

  steps_per_epoch = epochs.steps_per_epoch
  if steps_per_epoch == 0:
    raise ValueError(f"batch_size {config.batch_size} > {len(dataset.train)} training examples")
  warm = False
  try:
    for epoch in range(start_epoch + 1, config.num_epochs + 1):
      t0 = time.perf_counter()
      history = []
      bar = epoch_bar(epoch, config.num_epochs, steps_per_epoch)
      t_chunk = time.perf_counter()
      for state, chunk in epochs.run(state, epoch, train_rng):
        now = time.perf_counter()
        if warm:  # the first chunk of a process includes compilation: not steady state
          timed_seconds += now - t_chunk
          timed_images += len(chunk) * config.batch_size
        warm, t_chunk = True, now
        for j, m in enumerate(chunk):
          if not (math.isfinite(m["loss"]) and math.isfinite(m["grad_norm"])):
            last = ckpts.latest_epoch
            raise NonFiniteLossError(
                f"non-finite loss or gradient (loss={m['loss']}, grad_norm={m['grad_norm']}) "
                f"at step {len(history) + j + 1} of epoch {epoch} (global step "
                f"{(epoch - 1) * steps_per_epoch + len(history) + j + 1}); last good checkpoint: "
                f"{ckpts.path(last) if last is not None else 'none (failed in epoch 1)'}")
        history.extend(chunk)
        bar.update(len(chunk))
        bar.set_postfix(loss=f"{np.mean([m['loss'] for m in history]):.4f}",
                        acc=f"{np.mean([m['accuracy'] for m in history]):.3f}", refresh=False)
      bar.close()
      t_train = time.perf_counter() - t0
      train_seconds += t_train

      record = {"epoch": epoch, "step": int(state.step),
                **{f"train_{k}": v for k, v in _mean_metrics(history).items()},
                "epoch_seconds": t_train,
                "train_images_per_second": steps_per_epoch * config.batch_size / t_train}
      val_record, ckpt_metrics = validate(config, dataset, eval_fn, state, ckpts.metric)
      record.update(val_record)
      if is_writer():
        with open(metrics_path, "a") as f:
          f.write(json.dumps(record) + "\n")
      ckpts.save(epoch, state, {"epoch": epoch, "train_seconds": train_seconds,
                                "timed_images": timed_images, "timed_seconds": timed_seconds},
                 ckpt_metrics)
      val_text = (f", val acc {record['val_accuracy']:.4f} auc "
                  f"{_fmt(record.get('val_auc'))}" if dataset.val is not None else "")
      log.info("epoch %d/%d: loss %.4f, train acc %.4f%s (%.1fs, %.0f img/s)", epoch,
               config.num_epochs, record["train_loss"], record["train_accuracy"], val_text,
               t_train, record["train_images_per_second"])
  finally:  # an error or Ctrl-C never abandons a checkpoint half-written
    ckpts.manager.wait_until_finished()
  state, checkpoint = restore_for_test(config, dataset, ckpts, state)

  probs = predict(eval_fn, state, dataset.test, config.eval_batch_size)
  return write_results(
      config, workdir, dataset, probs, train_seconds=train_seconds,
      images_per_second=timed_images / timed_seconds if timed_seconds else None,
      checkpoint=checkpoint,
      extra=extra_results)


def restore_for_test(config, dataset: Dataset, ckpts: Checkpoints, state):
  """The checkpoint to test: the best by the validation metric (config.eval_checkpoint="best"
  and a validation split) or the last. `state` must be the latest epoch's. Closes `ckpts`."""
  use_best = config.eval_checkpoint == "best" and dataset.val is not None
  chosen = ckpts.best_epoch if use_best and ckpts.best_epoch is not None else ckpts.latest_epoch
  if chosen is None:
    raise ValueError("num_epochs must be >= 1: there is no checkpoint to evaluate")
  if chosen != ckpts.latest_epoch:
    state, _ = ckpts.restore(chosen, state)
  ckpts.close()
  return state, {"kind": "best" if use_best else "last", "epoch": int(chosen),
                 "metric": ckpts.metric if use_best else None}


def write_results(config, workdir: str, dataset: Dataset, probs: np.ndarray, *,
                  train_seconds: float, images_per_second: float | None,
                  checkpoint: dict[str, Any], extra: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
  """Test metrics from P(positive) of every test example -> results.json, predictions.csv and
  confusion_matrix.png in workdir. Shared by every trainer (supervised, DBN, SGAN)."""
  test = metrics_lib.classification_metrics(dataset.test.labels, probs, seed=config.seed)
  results = {
      "experiment": config.experiment, "model": config.model, "dataset": config.dataset,
      "synthetic": dataset.synthetic, "seed": config.seed, "epochs": config.num_epochs,
      "n_train": len(dataset.train), "n_test": len(dataset.test), "test": test,
      "train_seconds": round(train_seconds, 2),
      "train_images_per_second": round(images_per_second, 1) if images_per_second else None,
      "n_val": len(dataset.val) if dataset.val is not None else 0,
      "checkpoint": checkpoint,
      "data_source": dataset.source, "batch_size": config.batch_size,
      "learning_rate": config.learning_rate, "dtype": config.dtype,
      "model_size": config.model_size, "device": jax.devices()[0].device_kind,
      **(extra or {}),
  }
  if not is_writer():
    return results
  _write_json(os.path.join(workdir, "results.json"), results)
  with open(os.path.join(workdir, "predictions.csv"), "w") as f:
    f.write("name,label,prob_positive\n")
    for name, label, p in zip(dataset.test.names, dataset.test.labels, probs):
      f.write(f"{name},{label},{p:.6f}\n")
  save_confusion_matrix(test["confusion_matrix"], os.path.join(workdir, "confusion_matrix.png"),
                        f"{config.experiment} (test, epoch {checkpoint['epoch']})")
  meta = dataset.test.meta or {}
  if "seriesuid" in meta and "world" in meta:  # patches cut from CT volumes: LUNA16 scoring
    from medjax.eval import froc
    froc.write_submission(os.path.join(workdir, "submission_luna16.csv"), meta["seriesuid"],
                          meta["world"], probs)
    with open(os.path.join(workdir, "submission_seriesuids.csv"), "w") as f:
      f.write("seriesuid\n" + "".join(f"{u}\n" for u in sorted(set(meta["seriesuid"]))))
  return results


def _fmt(x, digits=4):
  return "n/a" if x is None else f"{x:.{digits}f}"


def _write_json(path: str, obj) -> None:
  """temp + rename: a crash never leaves a half-written file."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(obj, f, indent=2, sort_keys=False)
  os.replace(tmp, path)


def results_table(results: dict[str, Any]) -> str:
  """A short plain-text summary of results.json."""
  t = results["test"]
  (tn, fp), (fn, tp) = t["confusion_matrix"]
  lo, hi = t["accuracy_ci95"]
  data = "synthetic" if results["synthetic"] else "real"
  ips = results["train_images_per_second"]
  rows = [
      f"{results['experiment']}  ({data} data, seed {results['seed']}, "
      f"{results['epochs']} epochs, checkpoint: {results['checkpoint']['kind']} "
      f"epoch {results['checkpoint']['epoch']})",
      f"  n_train {results['n_train']}, n_test {results['n_test']}",
      f"  accuracy     {t['accuracy']:.4f}  (95% CI {lo:.4f}-{hi:.4f})",
      f"  ROC AUC      {_fmt(t['auc'])}",
      f"  sensitivity  {_fmt(t['sensitivity'])}",
      f"  specificity  {_fmt(t['specificity'])}",
      f"  confusion    TN {tn}  FP {fp}  FN {fn}  TP {tp}",
      f"  training     {results['train_seconds']:.1f} s"
      + (f", {ips:,.0f} img/s steady" if ips else ""),
  ]
  return "\n".join(rows)
