import re, time, functools, jax, jax.numpy as jnp, numpy as np
from jax import lax
from flax import linen as nn

@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def bn_act(x, scale, bias, residual, eps, relu):
  return _fwd(x, scale, bias, residual, eps, relu)[0]
def _stats(x):
  axes = tuple(range(x.ndim - 1))
  mu = x.mean(axes); mu2 = lax.square(x).mean(axes)
  return mu, jnp.maximum(0.0, mu2 - lax.square(mu))
def _fwd(x, scale, bias, residual, eps, relu):
  mu, var = _stats(x)
  r = lax.rsqrt(var + eps)
  y = (x - mu) * (r * scale) + bias
  if residual is not None: y = y + residual
  if relu: y = jnp.maximum(y, 0)
  return y, (x, y, scale, mu, r, residual is None)
def _bwd(eps, relu, res, g):
  x, y, scale, mu, r, nores = res
  axes = tuple(range(x.ndim - 1)); n = x.size // x.shape[-1]
  dy = jnp.where(y > 0, g, 0) if relu else g
  xhat = (x - mu) * r
  db = dy.sum(axes); ds = (dy * xhat).sum(axes)
  dx = (scale * r) * (dy - db / n - xhat * (ds / n))
  return dx, ds, db, (None if nores else dy)
bn_act.defvjp(_fwd, _bwd)

class BN(nn.BatchNorm):
  relu: bool = False
  @nn.compact
  def __call__(self, x, residual=None):
    C = x.shape[-1]
    ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), (C,))
    ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), (C,))
    scale = self.param("scale", self.scale_init, (C,), self.param_dtype)
    bias = self.param("bias", self.bias_init, (C,), self.param_dtype)
    mu, var = _stats(lax.stop_gradient(x))
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mu
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return bn_act(x, scale, bias, residual, self.epsilon, self.relu)

