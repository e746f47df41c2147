"""The one epoch driver behind every trainer (supervised, stacked seeds, SGAN, DBN fine-tuning).

A trainer builds its state, its jitted step wrapped in an epoch source (`medjax.train.epoch`),
an eval function and a `Task` that says which metrics must stay finite and which to show; the
driver does the rest:

    members = [Member(config, run, ckpts)]               # one per seed (stacked: several)
    state, start = restore(members, state)                # resume from the latest checkpoint
    state = fit(task, members, state, start, dataset)     # epochs: progress, NaN check,
                                                          # throughput, validation, checkpoints
    finish(task, members, state, dataset)                 # test the chosen checkpoint, write
                                                          # results.json, predictions, figures

Throughput leaves out the first chunk of steps of every process (compilation). The wall time
outside the steps (checks, validation, metrics, checkpoints, end-of-epoch work, logging) is
measured per epoch (`medjax.train.epoch_time`): in the epoch log line, each metrics.jsonl line
and results.json's `epoch_time`. Only process 0
writes files; checkpoints are always waited for, also when an epoch fails.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from medjax.data.base import check_batch_size
from medjax.errors import UserError, WorkdirError
from medjax.eval import metrics as metrics_lib
from medjax.rundir import RunDir, disk_full
from medjax.tensorboard import confusion_matrix_image
from medjax.train import compile_time, epoch_time
from medjax.train.checkpoint import Checkpoints
from medjax.train.profile import NO_PROFILER, StepProfiler
from medjax.train.ensemble import unstack
from medjax.train.results import (eval_batch, predict, restore_for_test, val_metrics,
                                  write_results)

log = logging.getLogger(__name__)


class NonFiniteLossError(UserError, FloatingPointError):
  """A loss or gradient became NaN/Inf (or a pretraining layer diverged); says where."""


class UnevenResumeError(WorkdirError):
  """Stacked runs whose checkpoints stopped at different epochs: they resume one by one."""


@dataclasses.dataclass
class Member:
  """One model of a run: its (per-seed) config, workdir and checkpoints."""
  config: Any
  run: RunDir
  ckpts: Checkpoints | None = None
  meta: dict[str, Any] = dataclasses.field(default_factory=dict)
  events: Any = None  # medjax.tensorboard.EventWriter
  # (epoch, state, meta, metrics) of a best epoch held in memory until the next save
  pending: tuple | None = None


@dataclasses.dataclass
class Task:
  """What a trainer contributes to the driver.

  source        epoch source: `.steps_per_epoch`, `.run(state, epoch) -> (state, [metrics])`
  eval_fn       (state, {"image"}) -> class probabilities [..., batch, K]
  finite        metric names that must stay finite
  shown         (label, metric) pairs for the per-epoch log line and the progress bar
  images_per_step  training images per step and model (the batch size)
  stacked       the state holds len(members) models on a leading axis
  on_epoch_end  (epoch, state) -> None, e.g. the SGAN's sample grids
  learning_rate (step) -> learning rate, logged per epoch
  refresh_stats state -> state with BatchNorm statistics re-estimated, before each validation
                (`medjax.train.bn_stats`; saved with the epoch's checkpoint)
  """
  source: Any
  eval_fn: Callable
  images_per_step: int
  finite: Sequence[str] = ("loss", "grad_norm")
  shown: Sequence[tuple[str, str]] = (("loss", "loss"), ("acc", "accuracy"))
  stacked: bool = False
  on_epoch_end: Callable[[int, Any], None] | None = None
  learning_rate: Callable[[int], float] | None = None
  refresh_stats: Callable[[Any], Any] | None = None


def restore(members: Sequence[Member], state, *, stacked: bool = False) -> tuple[Any, int]:
  """Opens each member's checkpoints and restores its latest epoch; returns (state, epochs
  done). Stacked members must be at the same epoch (else WorkdirError: resume them one by
  one). Trims metrics.jsonl to the restored epoch."""
  restored, epochs = [], []
  for i, m in enumerate(members):
    template = unstack(state, i) if stacked else state
    m.ckpts = Checkpoints(m.run.file("checkpoints"), metric=f"val_{m.config.checkpoint_metric}")
    m.meta = {"epoch": 0, "train_seconds": 0.0, "timed_images": 0, "timed_seconds": 0.0}
    s = template
    if m.ckpts.latest_epoch is not None:
      s, saved = m.ckpts.restore(m.ckpts.latest_epoch, template)
      m.meta.update(saved)
      if m.meta["epoch"] > m.config.num_epochs:
        raise WorkdirError(
            f"{m.run.path} holds {m.meta['epoch']} trained epochs, more than num_epochs="
            f"{m.config.num_epochs}; raise num_epochs, or pass --overwrite to start over")
      log.info("resuming from %s (epoch %d of %d)", m.ckpts.path(m.meta["epoch"]),
               m.meta["epoch"], m.config.num_epochs)
    m.run.truncate_metrics(m.meta["epoch"])
    if m.events is not None and (m.meta["epoch"] or (os.path.isdir(m.events.logdir)
                                                      and os.listdir(m.events.logdir))):
      m.events.purge_step = m.meta["epoch"] + 1  # hide events a killed run logged after it
    restored.append(s)
    epochs.append(m.meta["epoch"])
  if len(set(epochs)) > 1:
    raise UnevenResumeError(f"stacked runs stopped at different epochs {epochs}: resume them "
                            "one by one")
  if stacked:
    state = jax.device_put(jax.tree.map(lambda *xs: np.stack(xs), *restored))
  else:
    state = restored[0]
  return state, epochs[0]


def _check_finite(task: Task, members, chunk: list[dict], done: int, epoch: int,
                  steps_per_epoch: int) -> None:
  for j, m in enumerate(chunk):
    bad = []
    for key in task.finite:
      values = np.atleast_1d(np.asarray(m[key], np.float64))
      for i in np.flatnonzero(~np.isfinite(values)):
        who = f" (seed {members[i].config.seed})" if task.stacked else ""
        bad.append(f"{key}={values[i]}{who}")
    if bad:
      step = done + j + 1
      raise NonFiniteLossError(
          f"non-finite {', '.join(bad)} at step {step} of epoch {epoch} (global step "
          f"{(epoch - 1) * steps_per_epoch + step}); last good checkpoint: "
          f"{_last_good(members)}; lower the learning rate or check the data")


def _last_good(members) -> str:
  """The checkpoint to resume from: the latest written, or the best epoch held in memory
  (written as the run stops)."""
  held = members[0].pending
  last = held[0] if held is not None else members[0].ckpts.latest_epoch
  return members[0].ckpts.path(last) if last is not None else "none (failed in epoch 1)"


@functools.partial(jax.jit, static_argnums=1)
def _all_finite(leaves, stacked: bool):
  """Whether every value of `leaves` is finite: one bool, or one per model when stacked."""
  if stacked:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x).reshape(x.shape[0], -1), axis=1)
                              for x in leaves]), axis=0)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _non_finite(task: Task, members, tree) -> str | None:
  """None when every float of `tree` is finite; else who is not: "" for one model, " (seed k,
  ...)" for the stacked models that are not."""
  leaves = [x for x in jax.tree.leaves(tree)
            if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)]
  if not leaves:
    return None
  finite = np.atleast_1d(np.asarray(_all_finite(leaves, task.stacked)))
  if finite.all():
    return None
  return (f" (seed {', '.join(str(members[i].config.seed) for i in np.flatnonzero(~finite))})"
          if task.stacked else "")


def _check_weights(task: Task, members, state, done: int, epoch: int,
                   steps_per_epoch: int) -> None:
  """Stops on NaN/Inf anywhere in the state (weights, optimizer moments, batch statistics): an
  update can break the weights while the loss and gradient of its step are still finite, and
  such a state must never be saved, chosen as the best or tested. Run once an epoch, after its
  last step: a pass over the whole state, a visible part of a short epoch if run at every chunk
  of steps (medjax/benchmarks/RESULTS.md)."""
  who = _non_finite(task, members, state)
  if who is not None:
    raise NonFiniteLossError(
        f"non-finite weights{who} after step {done} of epoch {epoch} (global step "
        f"{(epoch - 1) * steps_per_epoch + done}), while the loss and gradient were finite: the "
        f"updates diverged; last good checkpoint: {_last_good(members)}; lower the learning "
        "rate")


def _check_stats(task: Task, members, state, epoch: int) -> None:
  """Stops when re-estimated BatchNorm statistics are NaN/Inf (finite weights whose activations
  overflow on the training images): such statistics must never be validated, saved or tested."""
  who = _non_finite(task, members, state.batch_stats)
  if who is not None:
    raise NonFiniteLossError(
        f"non-finite BatchNorm statistics{who} re-estimated after epoch {epoch} "
        f"(bn_stats_batches): the activations overflow on training images; last good "
        f"checkpoint: {_last_good(members)}; lower the learning rate or check the data")


def duration(seconds: float) -> str:
  seconds = int(round(seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
  """A whole-run progress bar on terminals; elsewhere a log line every `every` seconds within
  long epochs. Both show the whole-run ETA: the remaining steps at the rate of the latest
  finished epoch (the first epoch of a process includes compilation), or of this epoch so far."""

  def __init__(self, total_epochs: int, start_epoch: int, steps_per_epoch: int,
               every: float = 60.0):
    self.total_epochs, self.steps = total_epochs, steps_per_epoch
    self.every = every
    self.tty = sys.stderr.isatty()
    self.bar = tqdm(total=(total_epochs - start_epoch) * steps_per_epoch, unit="step",
                    dynamic_ncols=True, file=sys.stderr, disable=not self.tty, leave=True,
                    desc="training")
    self.epoch_seconds: float | None = None  # latest finished epoch, validation included
    self._epoch_start = self._last_log = time.perf_counter()

  def start_epoch(self) -> None:
    self._epoch_start = time.perf_counter()

  def end_epoch(self) -> None:
    self.epoch_seconds = time.perf_counter() - self._epoch_start

  def eta(self, epoch: int, step_in_epoch: int = 0) -> float | None:
    """Seconds left in the run from step `step_in_epoch` of `epoch`."""
    epochs_left = self.total_epochs - epoch
    if self.epoch_seconds is not None:
      per_epoch = self.epoch_seconds
    elif step_in_epoch:
      per_epoch = (time.perf_counter() - self._epoch_start) / step_in_epoch * self.steps
    else:
      return None
    return per_epoch * (epochs_left + 1 - step_in_epoch / self.steps)

  def update(self, epoch: int, step_in_epoch: int, n: int, postfix: dict[str, str]) -> None:
    self.bar.update(n)
    self.bar.set_description(f"epoch {epoch}/{self.total_epochs}", refresh=False)
    self.bar.set_postfix(postfix, refresh=False)
    now = time.perf_counter()
    if not self.tty and now - self._last_log >= self.every and step_in_epoch < self.steps:
      self._last_log = now
      eta = self.eta(epoch, step_in_epoch)
      log.info("epoch %d/%d: step %d/%d, %s%s", epoch, self.total_epochs, step_in_epoch,
               self.steps, ", ".join(f"{k} {v}" for k, v in postfix.items()),
               f", run ETA {duration(eta)}" if eta is not None else "")

  def close(self) -> None:
    self.bar.close()


def fit(task: Task, members: Sequence[Member], state, start_epoch: int, dataset) -> Any:
  """Trains from `start_epoch` to num_epochs (or early stopping); returns the last state."""
  config = members[0].config
  n = len(members)
  steps = task.source.steps_per_epoch
  check_batch_size(config.batch_size, len(dataset.train))
  patience = config.get("early_stopping_patience") if hasattr(config, "get") else None
  progress = Progress(config.num_epochs, start_epoch, steps)
  eval_size = eval_batch(dataset, config.eval_batch_size)
  profiler = StepProfiler(tuple(config.get("profile_steps") or ()) or None,
                          members[0].run.file("profile")) if members[0].run.writer else NO_PROFILER
  warm = False
  best = [m.meta.get("best_value") for m in members]
  since_best = [m.meta.get("epochs_since_best", 0) for m in members]
  clock = epoch_time.EpochClock()
  last_save = time.perf_counter()
  try:
    for epoch in range(start_epoch + 1, config.num_epochs + 1):
      progress.start_epoch()
      t0 = time.perf_counter()
      history: list[dict] = []
      epoch_images, epoch_timed = 0, 0.0
      t_chunk = time.perf_counter()
      chunks = iter(task.source.run(state, epoch, profiler))
      while True:
        t_next, compiled = time.perf_counter(), compile_time.total()
        item = next(chunks, None)
        now = time.perf_counter()
        clock.add("steps", now - t_next, compile_time.total() - compiled)
        if item is None:
          break
        state, chunk = item
        if warm:  # the first chunk of a process includes compilation: not steady state
          epoch_timed += now - t_chunk
          epoch_images += len(chunk) * task.images_per_step
        warm, t_chunk = True, now
        _check_finite(task, members, chunk, len(history), epoch, steps)
        history.extend(chunk)
        progress.update(epoch, len(history), len(chunk), {
            label: "/".join(f"{v:.4f}" for v in np.atleast_1d(
                np.mean([np.asarray(h[key], np.float64) for h in history], axis=0)))
            for label, key in task.shown})
        clock.add("checks", time.perf_counter() - now)
      with clock.timed("checks"):  # once an epoch, before anything validates or saves it
        _check_weights(task, members, state, len(history), epoch, steps)
      t_train = time.perf_counter() - t0

      if task.refresh_stats is not None:
        with clock.timed("bn_stats"):
          state = jax.block_until_ready(task.refresh_stats(state))
          _check_stats(task, members, state, epoch)
      val_probs = None
      with clock.timed("validation"):
        if dataset.val is not None:
          val_probs = np.asarray(predict(task.eval_fn, state, dataset.val, eval_size))
          if not task.stacked:
            val_probs = val_probs[None]
          val_results = [val_metrics(m.config, dataset.val.labels, val_probs[i], m.ckpts.metric)
                         for i, m in enumerate(members)]
      step_values = np.atleast_1d(np.asarray(jax.device_get(state.step)))
      spent = clock.close()  # this epoch's window ends with its metrics line
      records, saves = [], []
      for i, m in enumerate(members):
        m.meta["train_seconds"] += t_train
        m.meta["timed_images"] += epoch_images
        m.meta["timed_seconds"] += epoch_timed
        record = {"epoch": epoch, "step": int(step_values[i if task.stacked else 0])}
        for key in history[0]:
          values = [np.asarray(h[key], np.float64) for h in history]
          record[f"train_{key}"] = float(np.mean([v[i] if task.stacked else v for v in values]))
        if task.learning_rate is not None:
          record["learning_rate"] = float(task.learning_rate(record["step"]))
        record["epoch_seconds"] = t_train
        record["train_images_per_second"] = (epoch_images / epoch_timed if epoch_timed
                                             else None)
        if task.stacked:
          record["stacked_seeds"] = n
        record.update(spent)
        m.meta["epoch_time"] = epoch_time.accumulate(m.meta.get("epoch_time"), spent)
        ckpt_metrics = None
        if val_probs is not None:
          val_record, ckpt_metrics = val_results[i]
          record.update(val_record)
          value = ckpt_metrics[m.ckpts.metric]
          if best[i] is None or value > best[i]:
            best[i], since_best[i] = value, 0
          else:
            since_best[i] += 1
        with clock.timed("metrics"):
          m.run.append_metrics(record)
          if m.events is not None:
            m.events.scalars(epoch, record)
        meta = {k: m.meta[k] for k in ("train_seconds", "timed_images", "timed_seconds",
                                       "epoch_time")}
        meta.update(epoch=epoch, best_value=best[i], epochs_since_best=since_best[i])
        m.meta.update(meta)
        records.append(record)
        saves.append((m, meta, ckpt_metrics))
      # One decision for all members (stacked seeds must resume from the same epoch): write at
      # the last epoch, when stopping, or checkpoint_interval_seconds after the last save. A
      # new best in between is copied and written at the next save, before that epoch's own.
      stopping = bool(patience and val_probs is not None and min(since_best) >= patience)
      with clock.timed("checkpoint"):
        if (epoch == config.num_epochs or stopping
            or time.perf_counter() - last_save >= config.get("checkpoint_interval_seconds", 0)):
          for i, (m, meta, ckpt_metrics) in enumerate(saves):
            if m.events is not None:  # what a resume keeps of TensorBoard is on disk with it
              m.events.flush()
            if m.pending is not None and since_best[i] != 0:  # not superseded by this epoch
              _save(m, *m.pending)
            m.pending = None
            _save(m, epoch, unstack(state, i) if task.stacked else state, meta, ckpt_metrics)
          last_save = time.perf_counter()
        elif val_probs is not None:
          for i, (m, meta, ckpt_metrics) in enumerate(saves):
            if since_best[i] == 0:  # the next step donates `state`: keep a copy
              held = unstack(state, i) if task.stacked else _copy(state)  # unstack copies
              m.pending = (epoch, held, dict(meta), ckpt_metrics)
      with clock.timed("epoch_end"):
        if task.on_epoch_end is not None:
          task.on_epoch_end(epoch, state)
      with clock.timed("log"):
        progress.end_epoch()
        _log_epoch(task, config, epoch, records, t_train, progress)
      if stopping:
        log.info("early stopping after epoch %d: the validation %s has not improved for %d "
                 "epochs", epoch, config.checkpoint_metric, patience)
        for m in members:
          m.meta["stopped_early"] = epoch
        break
    with clock.timed("checkpoint"):
      for m in members:
        _wait(m)
    tail = {**clock.close(), "epochs": 0}  # the last epoch's save, end-of-epoch work and log
    for m in members:
      if m.meta.get("epoch_time"):
        m.meta["epoch_time"] = epoch_time.accumulate(m.meta["epoch_time"], tail)
  finally:  # an error or Ctrl-C never abandons a checkpoint half-written, nor an unsaved best
    progress.close()
    profiler.stop()  # a window reaching past the run's last step
    _save_pending(members)
    for m in members:
      _wait(m)
  return state


@jax.jit
def _copy(tree):
  """A copy of every array of `tree` (one program, not one per shape)."""
  return jax.tree.map(jnp.copy, tree)


def _save_pending(members: Sequence[Member]) -> None:
  """Writes the best epochs still held in memory when a run stops between saves (an error or
  Ctrl-C); a failure to write them is logged, not raised over the error that stopped the run."""
  for m in members:
    p, m.pending = m.pending, None
    if p is None:
      continue
    try:
      _save(m, *p)
      log.info("saved the best epoch %d, held since the last checkpoint, in %s", p[0],
               m.ckpts.path(p[0]))
    except Exception as e:  # noqa: BLE001 - the error that stopped the run comes first
      log.error("could not save the best epoch %d held in memory: %s", p[0], e)


def _save(member: Member, epoch: int, state, meta, metrics) -> None:
  try:
    member.ckpts.save(epoch, state, meta, metrics)
  except Exception as e:  # orbax wraps OSErrors of its writer threads
    full = disk_full(e)
    if full is None:
      raise
    raise WorkdirError(f"cannot write checkpoint {member.ckpts.path(epoch)}: "
                       f"{full.strerror}") from None


def _wait(member: Member) -> None:
  if member.ckpts is None:
    return
  try:
    member.ckpts.manager.wait_until_finished()
  except Exception as e:
    full = disk_full(e)
    if full is None:
      raise
    raise WorkdirError(f"cannot write checkpoints in {member.ckpts.directory}: "
                       f"{full.strerror}") from None


def _log_epoch(task: Task, config, epoch: int, records: list[dict], t_train: float,
               progress: Progress) -> None:
  def joined(key, fmt="{:.4f}"):
    values = [r.get(key) for r in records]
    return "/".join("n/a" if v is None else fmt.format(v) for v in values)

  parts = [f"{label} {joined('train_' + key)}" for label, key in task.shown]
  if "val_accuracy" in records[0]:
    parts.append(f"val acc {joined('val_accuracy')} auc {joined('val_auc')}")
  ips = records[0]["train_images_per_second"]
  eta = progress.eta(epoch + 1)  # from the start of the next epoch
  outside = (f", {epoch_time.describe(records[0])}" if "overhead_seconds" in records[0]
             else "")
  log.info("epoch %d/%d: %s (%.1fs%s%s%s)", epoch, config.num_epochs, ", ".join(parts),
           t_train, f", {ips * len(records):.0f} img/s" if ips else "", outside,
           f", run ETA {duration(eta)}" if eta is not None and epoch < config.num_epochs
           else "")


def finish_member(member: Member, state, dataset, eval_fn, *, extra=None) -> dict[str, Any]:
  """Tests the chosen checkpoint of one member and writes its results (closes checkpoints)."""
  config = member.config
  state, checkpoint = restore_for_test(config, dataset, member.ckpts, state)
  eval_size = eval_batch(dataset, config.eval_batch_size)
  probs = predict(eval_fn, state, dataset.test, eval_size)
  if not np.isfinite(probs).all():  # a NaN checkpoint written before weights were checked
    raise NonFiniteLossError(
        f"the tested checkpoint {member.ckpts.path(checkpoint['epoch'])} gives non-finite "
        "test probabilities (a diverged model); pass --overwrite to train again with a lower "
        "learning rate")
  val_probs = (predict(eval_fn, state, dataset.val, eval_size)
               if dataset.val is not None else None)
  meta = member.meta
  ips = meta["timed_images"] / meta["timed_seconds"] if meta["timed_seconds"] else None
  extra = dict(extra or {})
  if member.events is not None:
    member.events.image(checkpoint["epoch"], "test/confusion_matrix", confusion_matrix_image(
        metrics_lib.confusion_matrix(dataset.test.labels, probs >= 0.5),
        f"test, epoch {checkpoint['epoch']}"))
  if meta.get("stopped_early"):
    extra["stopped_early_at_epoch"] = meta["stopped_early"]
  if meta.get("epoch_time"):  # where the epochs' wall time went (medjax.train.epoch_time)
    extra["epoch_time"] = meta["epoch_time"]
  compiled = compile_time.summary()
  if compiled is not None:  # this run's compilation (a resumed run: since it resumed)
    extra["compile_time"] = compiled
    log.info("%s", compile_time.describe(compiled))
  return write_results(config, member.run.path, dataset, probs,
                       train_seconds=meta["train_seconds"], images_per_second=ips,
                       checkpoint=checkpoint, extra=extra, val_probs=val_probs)
