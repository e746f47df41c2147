"""Pure train and eval steps for softmax classifiers (CNN, ResNet-50, fine-tuned DBN).

Bind the static parts with functools.partial, then jit:
    step = jax.jit(functools.partial(train_step, model=model, tx=tx), donate_argnums=0)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from medjax.train.augment import augment_batch
from medjax.train.state import TrainState


def to_float(images):
  """uint8 0..255 -> float32 0..1 on device (batches travel as uint8: 4x fewer bytes)."""
  if images.dtype == jnp.uint8:
    return images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32)


def cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32),
                                                         labels).mean()


def train_step(state: TrainState, batch: dict[str, Any], rng, *, model, tx,
               augment: dict[str, Any] | None = None,
               norm_train: bool = True) -> tuple[TrainState, dict[str, Any]]:
  """One Adam step on a batch {"image": [N,H,W,C], "label": [N]}; returns (state, metrics).

  `norm_train=False` runs BatchNorm in inference mode (running statistics, not updated): a
  frozen backbone, as Keras freezes one (medjax's classifiers have no dropout)."""
  step_rng = jax.random.fold_in(rng, state.step)
  aug_rng, dropout_rng = jax.random.split(step_rng)
  images = to_float(batch["image"])
  if augment:
    images = augment_batch(images, aug_rng, **augment)

  def loss_fn(params):
    logits, updates = model.apply(
        {"params": params, "batch_stats": state.batch_stats}, images, train=norm_train,
        mutable=["batch_stats"], rngs={"dropout": dropout_rng})
    return cross_entropy(logits, batch["label"]), (logits, updates)

  (loss, (logits, updates)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  param_updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, param_updates)
  metrics = {
      "loss": loss,
      "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"]),
      "grad_norm": optax.tree.norm(grads),
      "param_norm": optax.tree.norm(params),
  }
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            batch_stats=updates.get("batch_stats", state.batch_stats))
  return new_state, metrics


def eval_step(state: TrainState, batch: dict[str, Any], *, model):
  """Class probabilities [N, K] in inference mode; state is not modified."""
  logits = model.apply({"params": state.params, "batch_stats": state.batch_stats},
                       to_float(batch["image"]), train=False)
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
