# monkeypatch: lax_matmul_grad_conv computes its forward by im2col and keeps the columns for dk
import jax, jax.numpy as jnp
from medjax.models import layers as L
def fwd(x, kernel, strides, pads):
  kh, kw, cin, cout = kernel.shape
  cols = jnp.concatenate(L._shifted_windows(x, (kh, kw), strides, pads, 0), -1)
  y = L._matmul(cols, kernel.reshape(-1, cout))
  return y, (x, kernel, cols)
def bwd(strides, pads, res, g):
  x, kernel, cols = res
  kh, kw, cin, cout = kernel.shape
  input_grad = jax.linear_transpose(lambda x: L._lax_conv(x, kernel, strides, pads), x)
  dk = cols.reshape(-1, kh * kw * cin).T @ g.reshape(-1, cout)
  return input_grad(g)[0], dk.reshape(kernel.shape)
L.lax_matmul_grad_conv.defvjp(fwd, bwd)
