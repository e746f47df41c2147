"""Contrastive-divergence training of one RBM: CD-k and persistent CD (PCD).

CD is not the gradient of any loss, so there is no autograd or optax here. The update follows
Hinton's practical guide (UTML TR 2010-003): positive statistics from p(h | v_data), a Gibbs
chain (a `lax.scan`) for the negative ones, reconstructions as probabilities (sampled in PCD,
whose fantasy particles must be a real Markov chain), then

    velocity = momentum * velocity + lr * (<v h>_data - <v h>_model - weight_decay * W)
    W = W + velocity          (biases the same way, without weight decay)

with the statistics averaged over the minibatch. `train_epoch` scans a whole shuffled epoch on
device; `cd_step` is the one-minibatch update.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp

from medjax.models.rbm import RBM


@flax.struct.dataclass
class RBMTrainState:
  """`chain`: the persistent hidden states of PCD [batch, H] (zeros and unused for CD)."""
  step: jax.Array
  params: RBM
  velocity: RBM
  chain: jax.Array


def init_train_state(params: RBM, batch_size: int) -> RBMTrainState:
  return RBMTrainState(step=jnp.zeros((), jnp.int32), params=params,
                       velocity=jax.tree.map(jnp.zeros_like, params),
                       chain=jnp.zeros((batch_size, params.n_hidden), jnp.float32))


def hyperparams(learning_rate: float, momentum: float, weight_decay: float) -> dict[str, Any]:
  """Traced (not static) step arguments: changing them does not recompile."""
  return {"learning_rate": jnp.float32(learning_rate), "momentum": jnp.float32(momentum),
          "weight_decay": jnp.float32(weight_decay)}


def gibbs_chain(params: RBM, h, rng, k: int, *, sample_visible: bool):
  """k steps h -> v -> h from the hidden states `h`; returns (v_k, p(h | v_k), h_k sampled)."""
  def body(carry, key):
    h, _, _ = carry
    k_v, k_h = jax.random.split(key)
    v = params.sample_visible(k_v, h) if sample_visible else params.visible_mean(h)
    p_h = params.hidden_probs(v)
    return (jax.random.bernoulli(k_h, p_h).astype(h.dtype), v, p_h), None

  v0 = jnp.zeros((h.shape[0], params.n_visible), h.dtype)
  (h, v, p_h), _ = jax.lax.scan(body, (h, v0, jnp.zeros_like(h)), jax.random.split(rng, k))
  return v, p_h, h


def cd_step(state: RBMTrainState, v_data, rng, hparams: dict[str, Any], *, k: int = 1,
            persistent: bool = False, sample_visible: bool | None = None) -> RBMTrainState:
  """One CD-k (or PCD-k) update on a minibatch v_data [B, V]."""
  if sample_visible is None:
    sample_visible = persistent
  params = state.params
  k_h0, k_chain = jax.random.split(jax.random.fold_in(rng, state.step))
  p_h0 = params.hidden_probs(v_data)
  start = state.chain if persistent else jax.random.bernoulli(k_h0, p_h0).astype(p_h0.dtype)
  v_k, p_hk, h_k = gibbs_chain(params, start, k_chain, k, sample_visible=sample_visible)

  n = v_data.shape[0]
  # <v h>_data - <v h>_model as one [V, 2B] @ [2B, H] matmul (one pass over W instead of two).
  grad_w = jnp.concatenate([v_data, v_k]).T @ jnp.concatenate([p_h0, -p_hk]) / n
  grads = RBM(grad_w - hparams["weight_decay"] * params.w,
              jnp.mean(v_data - v_k, axis=0), jnp.mean(p_h0 - p_hk, axis=0),
              gaussian=params.gaussian)
  velocity = jax.tree.map(lambda m, g: hparams["momentum"] * m + hparams["learning_rate"] * g,
                          state.velocity, grads)
  params = jax.tree.map(jnp.add, params, velocity)
  chain = h_k if persistent else state.chain
  return state.replace(step=state.step + 1, params=params, velocity=velocity, chain=chain)


def train_epoch(state: RBMTrainState, data, rng, hparams: dict[str, Any], *, batch_size: int,
                k: int = 1, persistent: bool = False,
                sample_visible: bool | None = None) -> RBMTrainState:
  """One shuffled pass over data [N, V] (on device) as a `lax.scan` of `cd_step`s.

  The last N mod batch_size examples of the permutation are skipped (fixed shapes).
  Jit with batch_size, k, persistent, sample_visible static and donate the state.
  """
  n_batches = data.shape[0] // batch_size
  order = jax.random.permutation(jax.random.fold_in(rng, state.step), data.shape[0])
  order = order[:n_batches * batch_size].reshape(n_batches, batch_size)

  def body(state, idx):
    return cd_step(state, data[idx], rng, hparams, k=k, persistent=persistent,
                   sample_visible=sample_visible), None

  state, _ = jax.lax.scan(body, state, order)
  return state


def reconstruction_error(params: RBM, v):
  """Mean squared error of the mean-field reconstruction E[v | p(h | v)], per example."""
  return jnp.mean((v - params.visible_mean(params.hidden_probs(v))) ** 2, axis=-1)


def pseudo_log_likelihood(params: RBM, v, units=None):
  """log PL of binary rows v [N, V] (Bernoulli RBM only), per example.

  units=None: exact, sum_i log p(v_i | v_-i) over every visible unit (V free energies per row).
  units [N]: scikit-learn's `score_samples` estimator, V * log p(v_u | v_-u) for one unit u
  per row.
  """
  if params.gaussian:
    raise ValueError("the pseudo-likelihood is defined here for binary visible units only")
  n_vis = params.n_visible
  fe = params.free_energy(v)
  if units is not None:
    rows = jnp.arange(v.shape[0])
    flipped = v.at[rows, units].set(1 - v[rows, units])
    return -n_vis * jax.nn.softplus(-(params.free_energy(flipped) - fe))

  def one(args):
    x, logits, fe_x = args
    sign = 1 - 2 * x  # flipping unit i adds sign_i * (b_i, W_i.) to the energies
    flip_logits = logits[None, :] + sign[:, None] * params.w
    fe_flip = -(x @ params.b_visible + sign * params.b_visible) - jnp.sum(
        jax.nn.softplus(flip_logits), axis=-1)
    return -jnp.sum(jax.nn.softplus(fe_x - fe_flip))

  return jax.lax.map(one, (v, params.hidden_logits(v), fe))


def monitor(params: RBM, train_v, heldout_v=None) -> dict[str, Any]:
  """Per-epoch health numbers on fixed subsets: reconstruction error (train, held-out) and the
  free-energy gap mean F(held-out) - mean F(train) (Hinton's guide, section 6: a growing gap
  means overfitting)."""
  out = {"recon_error": jnp.mean(reconstruction_error(params, train_v)),
         "free_energy": jnp.mean(params.free_energy(train_v))}
  if heldout_v is not None:
    out["heldout_recon_error"] = jnp.mean(reconstruction_error(params, heldout_v))
    out["free_energy_gap"] = jnp.mean(params.free_energy(heldout_v)) - out["free_energy"]
  return out
