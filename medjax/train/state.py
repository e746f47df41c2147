"""The train state: a plain pytree, so it can be jitted, donated, vmapped and checkpointed."""

from __future__ import annotations

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def seed_rngs(seed: int):
  """(init_rng, train_rng) of a seed. Every trainer, and each model of stacked seeds, splits its
  seed this way, so a model gets the same init and step randomness however it is trained."""
  init_rng, train_rng = jax.random.split(jax.random.key(seed))
  return init_rng, train_rng


def init_variables(model, rng, image_shape: tuple[int, int, int]):
  """Model variables for NHWC input of `image_shape`; params and batch_stats in float32."""
  # Jitted: one compilation instead of hundreds of eager ops, each dispatched on its own.
  init = jax.jit(functools.partial(model.init, train=False))
  variables = init(rng, jnp.zeros((1, *image_shape), jnp.float32))
  return variables["params"], variables.get("batch_stats", {})


def create_train_state(model, tx: optax.GradientTransformation, rng,
                       image_shape: tuple[int, int, int]) -> TrainState:
  """The model's variables and optimizer state, built in one jitted function (`init_state`):
  the optimizer's zeros built eagerly would compile one small program per parameter shape in
  every process (each under the persistent cache's threshold, so never cached: seconds for
  ResNet-50), while one jitted init is compiled once and cached. Same values bit for bit."""
  def init_state(rng):
    params, batch_stats = init_variables(model, rng, image_shape)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats,
                      opt_state=tx.init(params))
  return jax.jit(init_state)(rng)


def count_params(tree) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(tree))
