"""The paper's DBN: greedy layer-wise RBM pretraining, then supervised fine-tuning.

train_and_evaluate(config, workdir, dataset) pretrains one RBM per hidden layer by contrastive
divergence (layer i on the hidden probabilities of layer i - 1), checkpoints each finished layer
in workdir/pretrain/, turns the stack into a `DBN` classifier (sigmoid layers + a softmax layer)
and fine-tunes all of it with the shared supervised loop (Adam, batch 20, checkpoints,
results.json). A re-run reuses the finished layers and resumes fine-tuning.

With `init` (config.init_from: a finished DBN run's workdir) there is no pretraining: the
source's tested checkpoint holds its pretrained-then-fine-tuned stack, input standardisation
(`shift`, `scale`, from the source's training images) and softmax layer, and they replace the
whole classifier, so a stack pretrained here would be overwritten before its first step. The run
fine-tunes them with the shared loop (`freeze_backbone` trains the softmax layer only,
`backbone_learning_rate` the hidden layers at their own rate), writes no pretrain/ directory,
and results.json has `"pretrain": null` beside the `init_from` summary.

    workdir/pretrain/input.npz        per-pixel shift and scale of the first layer's input
    workdir/pretrain/layer_<i>.npz    RBM i (w, b_visible, b_hidden) and its training time
    workdir/pretrain/metrics.jsonl    one line per layer and epoch (reconstruction error, ...)
"""

from __future__ import annotations

import functools
import logging
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from medjax.data import Dataset
from medjax.data.base import save_npz_atomic
from medjax.errors import WorkdirError
from medjax.models import DTYPES
from medjax.models.rbm import DBN, RBM, dbn_params_from_stack, init_rbm
from medjax.rundir import RunDir
from medjax.train import loop
from medjax.train import rbm as rbm_lib
from medjax.train.driver import NonFiniteLossError
from medjax.train.profile import named
from medjax.train.state import init_variables, seed_rngs

log = logging.getLogger(__name__)


def layer_sizes(config) -> tuple[tuple[int, ...], int]:
  """(hidden sizes, pretraining epochs), shrunk for tiny / smoke runs."""
  if config.model_size == "tiny":
    return tuple(config.dbn.tiny_hidden), min(config.dbn.pretrain_epochs, 1)
  return tuple(config.dbn.hidden), config.dbn.pretrain_epochs


def create_classifier(config) -> DBN:
  """The DBN classifier of `config`: `layer_sizes`' hidden layers, a softmax layer on top."""
  return DBN(num_classes=2, hidden=layer_sizes(config)[0], dtype=DTYPES[config.dtype])


def flat_pixels(images) -> np.ndarray:
  """[N, H, W, C] uint8 (0..255) or float in [0, 1] -> float32 [N, H*W*C] in [0, 1]."""
  x = np.asarray(images).reshape(len(images), -1)
  return x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)


def input_transform(x: np.ndarray, gaussian: bool) -> tuple[np.ndarray, np.ndarray]:
  """Per-pixel (shift, scale) with (x - shift) * scale the first layer's input."""
  if not gaussian:
    return np.zeros(x.shape[1], np.float32), np.ones(x.shape[1], np.float32)
  std = np.maximum(x.std(axis=0), 1e-2)  # constant pixels stay ~0, not divided by ~0
  return x.mean(axis=0).astype(np.float32), (1.0 / std).astype(np.float32)


def _load_layer(path: str, n_visible: int, n_hidden: int, gaussian: bool):
  """(RBM, seconds) of a finished layer, None when there is none of this shape and kind; a
  damaged file (cut short, a missing array, NaN weights) is one WorkdirError naming it."""
  if not os.path.exists(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as f:
      if f["w"].shape != (n_visible, n_hidden) or bool(f["gaussian"]) != gaussian:
        return None
      arrays = [np.asarray(f[k]) for k in ("w", "b_visible", "b_hidden")]
      seconds = float(f["seconds"])
  except Exception as e:  # zipfile, numpy and KeyError say it in their own words
    raise WorkdirError(f"{path}: damaged pretrained layer ({type(e).__name__}: {e}); delete "
                       "it to pretrain that layer again") from None
  if not all(np.isfinite(a).all() for a in arrays):
    raise WorkdirError(f"{path}: damaged pretrained layer (non-finite weights); delete it to "
                       "pretrain that layer again")
  return RBM(*(jnp.asarray(a) for a in arrays), gaussian=gaussian), seconds


DIVERGED = 100.0  # reconstruction error / the data's variance above which pretraining diverged


def check_pretraining(record: dict[str, float], baseline: float, *, name: str, epoch: int,
                      field: str) -> None:
  """Stops a pretraining layer whose monitor values are non-finite, or whose reconstruction
  error exceeds DIVERGED times the data's variance (a diverging learning rate reaches 1e18
  while staying finite), as the supervised loop stops a non-finite loss."""
  bad = [k for k, v in record.items() if not np.isfinite(v)]
  if bad:
    raise NonFiniteLossError(f"pretrain {name}: non-finite {', '.join(bad)} at epoch {epoch} "
                             f"({record}); lower {field}")
  error = record["recon_error"]
  if error > DIVERGED * max(baseline, 1e-6):
    raise NonFiniteLossError(
        f"pretrain {name}: diverged at epoch {epoch}: reconstruction error {error:.3g}, "
        f"{error / max(baseline, 1e-6):.3g}x the data's variance {baseline:.3g}; lower {field}")


def pretrain(config, run: RunDir, dataset: Dataset) -> tuple[list[RBM], np.ndarray,
                                                               np.ndarray, dict[str, Any]]:
  """Greedy CD pretraining; returns (stack, shift, scale, summary). Reuses finished layers."""
  c = config.dbn
  hidden, epochs = layer_sizes(config)
  directory = run.file("pretrain")
  os.makedirs(directory, exist_ok=True)

  x = flat_pixels(dataset.train.images)
  input_path = os.path.join(directory, "input.npz")
  shift, scale = input_transform(x, c.gaussian_visible)
  save_npz_atomic(input_path, {"shift": shift, "scale": scale})
  data = jnp.asarray((x - shift) * scale)
  rng = np.random.default_rng([config.seed, 0xDB7])
  n_mon = min(c.monitor_examples, len(x))
  train_mon = jnp.asarray(data[np.sort(rng.permutation(len(x))[:n_mon])])
  heldout = None
  if dataset.val is not None:
    heldout = jnp.asarray((flat_pixels(dataset.val.images[:c.monitor_examples]) - shift) * scale)

  epoch_fn = jax.jit(functools.partial(
      rbm_lib.train_epoch, batch_size=c.pretrain_batch_size, k=c.cd_k,
      persistent=c.persistent), donate_argnums=0)
  monitor_fn = jax.jit(rbm_lib.monitor)
  propagate = jax.jit(named(lambda rbm, v: rbm.hidden_probs(v), "rbm_hidden_probs"))
  base_key = jax.random.key(config.seed)

  stack, summary = [], {"layers": [], "seconds": 0.0}
  retrained = False  # layers above a retrained one are retrained too
  for i, n_hidden in enumerate(hidden):
    gaussian = c.gaussian_visible and i == 0
    n_visible = data.shape[1]
    path = os.path.join(directory, f"layer_{i}.npz")
    name = f"RBM {i + 1}/{len(hidden)} ({n_visible} -> {n_hidden}, " \
           f"{'gaussian' if gaussian else 'bernoulli'} visible)"
    loaded = None if retrained else _load_layer(path, n_visible, n_hidden, gaussian)
    if loaded is not None:
      rbm, seconds = loaded
      log.info("pretrain %s: reusing %s", name, path)
    else:
      retrained = True
      t0 = time.perf_counter()
      key = jax.random.fold_in(base_key, i)
      # The reconstruction error of predicting every unit's mean: an RBM far above it diverged.
      baseline = float(jnp.mean(jnp.var(train_mon, axis=0)))
      rbm = init_rbm(key, n_visible, n_hidden, gaussian=gaussian,
                     visible_mean=None if gaussian else jnp.mean(data, axis=0))
      state = rbm_lib.init_train_state(rbm, c.pretrain_batch_size)
      lr = c.gaussian_learning_rate if gaussian else c.pretrain_learning_rate
      pending = 0.0
      for epoch in range(1, epochs + 1):
        t_epoch = time.perf_counter()
        momentum = c.initial_momentum if epoch <= c.momentum_switch_epoch else c.momentum
        state = jax.block_until_ready(epoch_fn(
            state, data, jax.random.fold_in(key, epoch),
            rbm_lib.hyperparams(lr, momentum, c.weight_decay)))
        step_seconds = time.perf_counter() - t_epoch
        record = {k: float(v) for k, v in
                  monitor_fn(state.params, train_mon, heldout).items()}
        check_pretraining(record, baseline, name=name, epoch=epoch,
                          field=f"dbn.{'gaussian' if gaussian else 'pretrain'}_learning_rate")
        # the epoch's own wall time and the part outside its CD updates (the monitor, this
        # line and the previous epoch's log line), as the driver reports for fine-tuning
        now = time.perf_counter()
        record.update(layer=i, epoch=epoch, seconds=now - t_epoch, step_seconds=step_seconds,
                      overhead_seconds=now - t_epoch - step_seconds + pending)
        run.append_metrics(record, "pretrain/metrics.jsonl")
        t_log = now
        gap = record.get("free_energy_gap")
        log.info("pretrain %s: epoch %d/%d, recon error %.4f%s (%.1fs, outside the CD updates "
                 "%.1f%%)", name, epoch, epochs, record["recon_error"],
                 f", held-out {record['heldout_recon_error']:.4f}, free-energy gap {gap:.2f}"
                 if gap is not None else "", record["seconds"],
                 100 * record["overhead_seconds"] / record["seconds"])
        pending = time.perf_counter() - t_log  # counted in the next epoch's line
      rbm = state.params
      seconds = time.perf_counter() - t0
      save_npz_atomic(path, {"w": np.asarray(rbm.w), "b_visible": np.asarray(rbm.b_visible),
                             "b_hidden": np.asarray(rbm.b_hidden), "gaussian": gaussian,
                             "seconds": seconds})
    stack.append(rbm)
    summary["layers"].append({"n_visible": n_visible, "n_hidden": n_hidden,
                              "gaussian": gaussian, "seconds": round(seconds, 2)})
    summary["seconds"] += seconds
    if i + 1 < len(hidden):
      data = propagate(rbm, data)
      train_mon = propagate(rbm, train_mon)
      heldout = None if heldout is None else propagate(rbm, heldout)
  summary["seconds"] = round(summary["seconds"], 2)
  summary["epochs"] = epochs
  return stack, shift, scale, summary


def train_and_evaluate(config, workdir: str, dataset: Dataset, *, overwrite: bool = False,
                       init=None) -> dict[str, Any]:
  """Pretrains (or reuses) the RBM stack, fine-tunes the DBN, writes results.json. With `init`
  (a `medjax.train.transfer.Pretrained` of a DBN run), fine-tunes its weights without
  pretraining (module docstring)."""
  with RunDir.open(config, workdir, dataset, overwrite=overwrite) as run:
    model = create_classifier(config)
    if init is not None:
      log.info("pretrain: skipped, the DBN starts from %s", init.source)
      return loop.train_supervised(config, run, dataset, model=model, init=init,
                                   extra_results={"pretrain": None})
    stack, shift, scale, summary = pretrain(config, run, dataset)
    init_rng, _ = seed_rngs(config.seed)
    params, _ = init_variables(model, init_rng, dataset.image_shape)
    params = dbn_params_from_stack(stack, params, shift=shift, scale=scale)
    return loop.train_supervised(config, run, dataset, model=model, initial_params=params,
                                 extra_results={"pretrain": summary})
