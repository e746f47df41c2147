"""Many models trained in one step: `jax.vmap` over stacked train states (seeds or folds).

At the paper's batch 20 a single ResNet-50 leaves most of a GPU idle; stacking N models turns N
small steps into one larger one. Each model has its own init, data order and step randomness.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from medjax.train.state import TrainState, create_train_state, seed_rngs


def create_train_states(model, tx, seeds, image_shape) -> TrainState:
  """One TrainState whose leaves have a leading axis of len(seeds)."""
  keys = jnp.stack([seed_rngs(s)[0] for s in seeds])
  init = jax.vmap(lambda k: create_train_state(model, tx, k, image_shape))
  return jax.jit(init)(keys)


def stacked_step(step):
  """vmap of `step(state, batch, rng)` over states, batches [N, B, ...] and rngs [N]."""
  return jax.vmap(step, in_axes=(0, 0, 0))


def unstack(tree, i: int):
  """The i-th model of a stacked pytree."""
  return jax.tree.map(lambda x: x[i], tree)


def step_rngs(seeds):
  """The per-model training rngs (`seed_rngs(seed)[1]`, as a single run's)."""
  return jnp.stack([seed_rngs(s)[1] for s in seeds])


def gather_batches(images, labels, idx):
  """Per-model batches from one resident split: idx [N, B] -> {"image": [N, B, ...], ...}."""
  return {"image": images[idx], "label": labels[idx]}
