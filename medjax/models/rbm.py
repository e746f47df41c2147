"""Restricted Boltzmann machines (parameters and energy) and the DBN classifier built from them.

Conventions: visible vectors are rows, v [N, V]; hidden h [N, H]; `w` is [V, H] (the transpose of
scikit-learn's `components_`), so p(h = 1 | v) = sigmoid(v @ w + b_hidden).

Bernoulli-Bernoulli:  E(v, h) = -v.b_v - h.b_h - v.W.h
Gaussian-Bernoulli:   E(v, h) = |v - b_v|^2 / 2 - h.b_h - v.W.h   (unit variance: standardize v)
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax
import jax
import jax.numpy as jnp
from flax import linen as nn


@flax.struct.dataclass
class RBM:
  """Parameters of one RBM; `gaussian` (static) makes the visible units unit-variance Gaussian."""
  w: jax.Array
  b_visible: jax.Array
  b_hidden: jax.Array
  gaussian: bool = flax.struct.field(pytree_node=False, default=False)

  @property
  def n_visible(self) -> int:
    return self.w.shape[0]

  @property
  def n_hidden(self) -> int:
    return self.w.shape[1]

  def hidden_logits(self, v):
    return v @ self.w + self.b_hidden

  def hidden_probs(self, v):
    """p(h_j = 1 | v) = sigmoid(b_h + v W)."""
    return jax.nn.sigmoid(self.hidden_logits(v))

  def visible_mean(self, h):
    """E[v | h]: sigmoid(b_v + W h) (Bernoulli) or b_v + W h (Gaussian, unit variance)."""
    x = h @ self.w.T + self.b_visible
    return x if self.gaussian else jax.nn.sigmoid(x)

  def sample_visible(self, rng, h):
    mean = self.visible_mean(h)
    if self.gaussian:
      return mean + jax.random.normal(rng, mean.shape, mean.dtype)
    return jax.random.bernoulli(rng, mean).astype(mean.dtype)

  def free_energy(self, v):
    """F(v) = -log sum_h exp(-E(v, h)), per row: [N]."""
    hidden_term = jnp.sum(jax.nn.softplus(self.hidden_logits(v)), axis=-1)
    if self.gaussian:
      return 0.5 * jnp.sum((v - self.b_visible) ** 2, axis=-1) - hidden_term
    return -v @ self.b_visible - hidden_term

  def energy(self, v, h):
    """E(v, h), per row."""
    coupling = jnp.sum((v @ self.w) * h, axis=-1) + h @ self.b_hidden
    if self.gaussian:
      return 0.5 * jnp.sum((v - self.b_visible) ** 2, axis=-1) - coupling
    return -v @ self.b_visible - coupling


def init_rbm(rng, n_visible: int, n_hidden: int, *, gaussian: bool = False,
             visible_mean=None, scale: float = 0.01) -> RBM:
  """Weights N(0, scale^2), hidden biases 0 (Hinton's practical guide, section 8).

  Visible biases: log(p / (1 - p)) of the data mean `visible_mean` (Bernoulli), the data mean
  itself (Gaussian), or 0 when not given.
  """
  w = scale * jax.random.normal(rng, (n_visible, n_hidden), jnp.float32)
  b_visible = jnp.zeros((n_visible,), jnp.float32)
  if visible_mean is not None:
    p = jnp.asarray(visible_mean, jnp.float32)
    b_visible = p if gaussian else jnp.log(jnp.clip(p, 1e-3, 1 - 1e-3)) - jnp.log1p(
        -jnp.clip(p, 1e-3, 1 - 1e-3))
  return RBM(w, b_visible, jnp.zeros((n_hidden,), jnp.float32), gaussian=gaussian)


class DBN(nn.Module):
  """Flatten -> fixed input transform -> sigmoid Dense layers -> Dense(num_classes) logits.

  The hidden layers are the RBM stack's p(h | v) maps. `input/shift` and `input/scale` hold the
  per-pixel standardization of the Gaussian first layer (0 and 1 when it is Bernoulli): they are
  params so they travel with checkpoints and `initial_params`, but behind `stop_gradient`, so
  Adam never moves them. Returns float32 logits [batch, num_classes] for any NHWC input.
  """
  num_classes: int = 2
  hidden: Sequence[int] = (1500, 1000, 500, 200)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    del train  # no dropout or BatchNorm: the paper's DBN is a plain sigmoid stack
    x = x.reshape(x.shape[0], -1).astype(jnp.float32)
    n = x.shape[-1]
    shift = self.param("shift", nn.initializers.zeros, (n,), jnp.float32)
    scale = self.param("scale", nn.initializers.ones, (n,), jnp.float32)
    x = ((x - jax.lax.stop_gradient(shift)) * jax.lax.stop_gradient(scale)).astype(self.dtype)
    for i, features in enumerate(self.hidden):
      x = nn.sigmoid(nn.Dense(features, dtype=self.dtype, name=f"hidden_{i}")(x))
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="logits")(x)
    return x.astype(jnp.float32)


DBNTiny = functools.partial(DBN, hidden=(32, 16))


def dbn_params_from_stack(stack: Sequence[RBM], params: dict, *, shift=None, scale=None) -> dict:
  """`params` of a DBN (e.g. from `model.init`) with the hidden layers taken from `stack`."""
  params = dict(params)
  for i, rbm in enumerate(stack):
    expected = params[f"hidden_{i}"]["kernel"].shape
    if rbm.w.shape != expected:
      raise ValueError(f"RBM {i} has weights {rbm.w.shape}, the DBN layer expects {expected}")
    params[f"hidden_{i}"] = {"kernel": jnp.asarray(rbm.w, jnp.float32),
                             "bias": jnp.asarray(rbm.b_hidden, jnp.float32)}
  if shift is not None:
    params["shift"] = jnp.asarray(shift, jnp.float32).reshape(params["shift"].shape)
  if scale is not None:
    params["scale"] = jnp.asarray(scale, jnp.float32).reshape(params["scale"].shape)
  return params
