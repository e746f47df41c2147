"""BatchNorm statistics re-estimated with the current weights ("precise BN").

BatchNorm normalises a training batch by its own statistics, and keeps for inference an
exponential moving average of them (momentum 0.9 in medjax's ResNet-50). That average mixes
statistics of many past weights: after a few hundred steps at a large learning rate it no longer
describes the network as it is, and a model that fits its training images can sit at chance in
inference mode (the embedded hips at 256 px, `results/synthetic_cpu/README.md`). Re-estimating
the statistics as the mean over a few training batches, under the current weights, removes that
gap without changing a single weight (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm", sec.
3; Detectron2's PreciseBN).

    refresh = Refresher(model, train_split, batch_size=20, num_batches=8, seed=0)
    state = refresh(state)   # state.batch_stats replaced; params, opt_state, step untouched
    stats = refresh.estimate(params, batch_stats)   # the same, for a restored run's variables

Each batch's statistics are those BatchNorm itself computes in training mode (same reduction,
same variance formula): the model runs with zeroed running statistics, so the update it returns
is (1 - momentum) * batch statistic, divided back by (1 - momentum) read from each BatchNorm
module. The estimate is the plain mean over batches of each batch's mean and (biased) variance,
as the moving average estimates it. Batches are drawn from the training images without
augmentation, the same images at every epoch (seeded), in `batch_size` (the batch size of
training: the statistic BatchNorm normalises with at training time).
"""

from __future__ import annotations

import logging
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from medjax.data import Split
from medjax.train.supervised import to_float

log = logging.getLogger(__name__)


def momenta(model, variables, image) -> dict[tuple[str, ...], float]:
  """{module path: momentum} of every BatchNorm of `model`, read by tracing one call."""
  found: dict[tuple[str, ...], float] = {}

  def record(next_fun, args, kwargs, context):
    if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
      found[tuple(context.module.path)] = float(context.module.momentum)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    jax.eval_shape(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]),
                   variables, image)
  return found


def _by_path(tree, momentum: dict[tuple[str, ...], float]):
  """1 - momentum of the BatchNorm owning each leaf of a batch_stats tree."""
  def one(path, leaf):
    keys = tuple(getattr(k, "key", str(k)) for k in path[:-1])  # drop "mean" / "var"
    if keys not in momentum:
      raise ValueError(f"batch_stats entry {'/'.join(keys)} has no BatchNorm module")
    return jnp.full(leaf.shape, 1.0 - momentum[keys], leaf.dtype)
  return jax.tree_util.tree_map_with_path(one, tree)


def batch_statistics(model, params, batch_stats, images, weight):
  """Mean over batches of BatchNorm's per-batch statistics.

  images [B, N, H, W, C] (uint8 or float in [0, 1]); weight: 1 - momentum, shaped like
  batch_stats. Returns a tree like batch_stats."""
  zeros = jax.tree.map(jnp.zeros_like, batch_stats)

  def one(total, x):
    _, updates = model.apply({"params": params, "batch_stats": zeros}, to_float(x), train=True,
                             mutable=["batch_stats"])
    stats = jax.tree.map(lambda u, w: u / w, updates["batch_stats"], weight)
    return jax.tree.map(jnp.add, total, stats), None

  total, _ = jax.lax.scan(one, zeros, images)
  return jax.tree.map(lambda t: t / images.shape[0], total)


class Refresher:
  """Replaces a train state's BatchNorm statistics by their estimate under its current weights.

  `stacked`: the state holds several models on a leading axis (`medjax.train.seeds`)."""

  def __init__(self, model, split: Split, *, batch_size: int, num_batches: int, seed: int,
               stacked: bool = False):
    available = len(split) // batch_size
    if num_batches < 1:
      raise ValueError(f"bn_stats_batches must be >= 1 to re-estimate BatchNorm statistics, "
                       f"got {num_batches}")
    if available < 1:
      raise ValueError(f"bn_stats_batches: {len(split)} training images make no batch of "
                       f"{batch_size}")
    if num_batches > available:
      log.info("bn_stats_batches: %d requested, the %d training images make %d batches of %d: "
               "using %d", num_batches, len(split), available, batch_size, available)
      num_batches = available
    order = np.random.default_rng(seed).permutation(len(split))[:num_batches * batch_size]
    self.images = np.asarray(split.images[np.sort(order)]).reshape(
        (num_batches, batch_size) + split.images.shape[1:])
    self.num_batches, self.batch_size = num_batches, batch_size
    self.model, self.stacked = model, stacked
    self._weight = self._device_images = None
    fn = lambda params, bs, images, weight: batch_statistics(model, params, bs, images, weight)
    if stacked:
      fn = jax.vmap(fn, in_axes=(0, 0, None, None))
    self._estimate = jax.jit(fn)

  def describe(self) -> str:
    return (f"BatchNorm statistics re-estimated before each validation from {self.num_batches} "
            f"training batches of {self.batch_size}")

  def estimate(self, params, batch_stats):
    """The re-estimated statistics under `params` (a tree like `batch_stats`)."""
    if not jax.tree.leaves(batch_stats):
      raise ValueError("bn_stats_batches: the model has no BatchNorm statistics to re-estimate")
    if self._weight is None:  # once: the momenta and the batches on the device
      one = lambda t: jax.tree.map(lambda a: a[0], t) if self.stacked else t
      self._device_images = jnp.asarray(self.images)
      found = momenta(self.model, {"params": one(params), "batch_stats": one(batch_stats)},
                      to_float(self._device_images[0]))
      self._weight = _by_path(one(batch_stats), found)
    return self._estimate(params, batch_stats, self._device_images, self._weight)

  def __call__(self, state):
    """`state` with its BatchNorm statistics re-estimated; nothing else changes."""
    return state.replace(batch_stats=self.estimate(state.params, state.batch_stats))


def from_config(config, model, split: Split, *, stacked: bool = False) -> Refresher | None:
  """The Refresher of `config.bn_stats_batches` (None when it is 0: the moving averages)."""
  if not config.get("bn_stats_batches"):
    return None
  refresher = Refresher(model, split, batch_size=config.batch_size,
                        num_batches=config.bn_stats_batches, seed=config.seed, stacked=stacked)
  log.info("%s", refresher.describe())
  return refresher
