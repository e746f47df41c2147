"""Layers shared by the convolutional models.

They exist because of measured XLA:CPU slow spots (medjax/benchmarks/RESULTS.md): a 3x3
convolution on a tiny feature map (ResNet-50 stage 5 is 2x2 at 50x50 input), 1x1 convolutions
(slower through the convolution path than as the matmul they are), the gradient of
`lax.reduce_window` max-pooling (select_and_scatter), convolutions with a single output channel
(the SGAN generator's last layer), the kernel gradient of convolutions and the input gradient of
strided ones. The replacements compute the same function with the same parameters, so
checkpoints do not depend on which path ran.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from medjax import platform

Padding = Sequence[tuple[int, int]]

# Output maps with at most this many pixels use the im2col path on CPU.
IM2COL_MAX_OUTPUT_PIXELS = 16
# 1x1 convolutions as a plain matmul on CPU (faster ResNet-50 steps: medjax/benchmarks/RESULTS.md).
ONE_BY_ONE_AS_MATMUL = True
# On CPU, the kernel gradient of the remaining XLA convolutions as matmuls ("lax_matmul_grad"):
# XLA:CPU's own is often 2x slower than the forward (ResNet-50's 3x3 convs on 16x16 maps) ...
MATMUL_KERNEL_GRAD = True
# ... for convolutions with at least this many output channels (with fewer, each tap's matmul
# would re-read a slice of the input for a few multiply-adds: 4x slower for the 7x7 -> 1).
MATMUL_GRAD_MIN_FEATURES = 32
# Strided convolutions with output maps of at most this many pixels (the SGAN discriminator's
# 13x13 and 7x7) use im2col on CPU: its input gradient avoids XLA:CPU's lhs-dilated convolution.
IM2COL_STRIDED_MAX_OUTPUT_PIXELS = 169
# Inputs with at most this many kh * kw * in values per pixel take the kernel gradient as one
# im2col matmul (1-channel stems); wider inputs as one matmul per tap.
IM2COL_GRAD_MAX_DEPTH = 64
# Stride-1 convolutions with kh * kw * out <= in channels (the SGAN generator's 7x7, 128 -> 1)
# as one matmul + a sum of shifted slices on CPU ("shift_add"; that layer's forward and
# gradients 2.5-3x faster than XLA:CPU's convolution with one output channel).
SHIFT_ADD = True


def _pad_and_out_size(size: int, k: int, s: int, pad: tuple[int, int]) -> int:
  return (size + pad[0] + pad[1] - k) // s + 1


def same_padding(size: int, k: int, s: int) -> tuple[int, int]:
  """TensorFlow/Flax 'SAME' padding (the extra pixel goes at the end)."""
  out = -(-size // s)
  total = max((out - 1) * s + k - size, 0)
  return total // 2, total - total // 2


def _resolve_padding(x_shape, kernel_size, strides, padding) -> list[tuple[int, int]]:
  if padding == "SAME":
    return [same_padding(n, k, s) for n, k, s in zip(x_shape[1:3], kernel_size, strides)]
  if padding == "VALID":
    return [(0, 0), (0, 0)]
  return [tuple(p) for p in padding]


def _matmul(x, w):
  """x [..., k] @ w [k, m] as one 2-D matmul: the leading dimensions flattened first, so that
  XLA:CPU keeps the gradients' layouts (a 4-D operand made it write each BatchNorm gradient
  transposed for the kernel gradient's dot: medjax/benchmarks/RESULTS.md). Same values."""
  return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])


def _shifted_windows(x, kernel_size, strides, pads, pad_value):
  """The kh*kw strided slices of padded `x`, one per kernel offset, in (dy, dx) order."""
  x = jnp.pad(x, [(0, 0), *pads, (0, 0)], constant_values=pad_value)
  (kh, kw), (sh, sw) = kernel_size, strides
  oh = (x.shape[1] - kh) // sh + 1
  ow = (x.shape[2] - kw) // sw + 1
  return [
      x[:, dy:dy + (oh - 1) * sh + 1:sh, dx:dx + (ow - 1) * sw + 1:sw, :]
      for dy in range(kh) for dx in range(kw)
  ]


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _shift_sum(z, kernel_size, pads):
  """y[o] = sum over taps t = (dy, dx) of zp[o + t, t]: z [n, h, w, kh * kw, c] -> y [n, oh,
  ow, c], zp = z spatially padded by `pads`. Its VJP (below) stacks shifted slices of the
  padded cotangent; autodiff's would sum kh * kw full-size zero-padded copies."""
  return _shift_sum_fwd(z, kernel_size, pads)[0]


def _shift_sum_fwd(z, kernel_size, pads):
  kh, kw = kernel_size
  zp = jnp.pad(z, [(0, 0), *pads, (0, 0), (0, 0)])
  oh, ow = zp.shape[1] - kh + 1, zp.shape[2] - kw + 1
  y = functools.reduce(jnp.add, [zp[:, dy:dy + oh, dx:dx + ow, dy * kw + dx]
                                 for dy in range(kh) for dx in range(kw)])
  return y, z.shape


def _shift_sum_bwd(kernel_size, pads, z_shape, g):
  (kh, kw), (_, h, w, _, _) = kernel_size, z_shape
  (top, _), (left, _) = pads
  # dz[i, t] = g[i + pad - t] where that lies inside g: slices of g padded by k - 1 and more.
  gp = jnp.pad(g, [(0, 0), (kh - 1, kh - 1 + h), (kw - 1, kw - 1 + w), (0, 0)])
  rows = [top + kh - 1 - dy for dy in range(kh)]
  cols = [left + kw - 1 - dx for dx in range(kw)]
  return (jnp.stack([gp[:, r:r + h, c:c + w] for r in rows for c in cols], 3),)


_shift_sum.defvjp(_shift_sum_fwd, _shift_sum_bwd)


def shift_add_conv(x, kernel, pads):
  """Stride-1 NHWC convolution as x @ kernel (every tap's outputs as channels of one matmul)
  followed by the sum of each tap's slice, shifted into place."""
  kh, kw, cin, cout = kernel.shape
  n, h, w, _ = x.shape
  z = _matmul(x, kernel.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout))
  pads = tuple(tuple(int(v) for v in p) for p in pads)
  return _shift_sum(z.reshape(n, h, w, kh * kw, cout), (kh, kw), pads)


def _lax_conv(x, kernel, strides, pads):
  return jax.lax.conv_general_dilated(x, kernel, strides, pads,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def lax_matmul_grad_conv(x, kernel, strides, pads):
  """`conv_general_dilated` (NHWC, HWIO) whose kernel gradient is computed by matmuls: for each
  tap, the shifted (strided) slice of the padded input times the output cotangent, or one
  im2col matmul when the input is shallow. Values and both gradients are the convolution's."""
  return _lax_conv(x, kernel, strides, pads)


def _lax_matmul_grad_fwd(x, kernel, strides, pads):
  return _lax_conv(x, kernel, strides, pads), (x, kernel)


def _lax_matmul_grad_bwd(strides, pads, residuals, g):
  x, kernel = residuals
  kh, kw, cin, cout = kernel.shape
  input_grad = jax.linear_transpose(lambda x: _lax_conv(x, kernel, strides, pads), x)
  windows = _shifted_windows(x, (kh, kw), strides, pads, 0)
  g2 = g.reshape(-1, cout)
  if kh * kw * cin <= IM2COL_GRAD_MAX_DEPTH:
    cols = jnp.concatenate(windows, -1).reshape(-1, kh * kw * cin)
    dk = cols.T @ g2
  else:
    dk = jnp.stack([w.reshape(-1, cin).T @ g2 for w in windows])
  return input_grad(g)[0], dk.reshape(kernel.shape).astype(kernel.dtype)


lax_matmul_grad_conv.defvjp(_lax_matmul_grad_fwd, _lax_matmul_grad_bwd)


def max_pool(x, window: int = 3, stride: int = 2, padding: Any = "SAME"):
  """Max pooling as elementwise maxima of strided slices, rows first, then columns.

  Same values as `nn.max_pool`; the gradient differs only at exact ties (split instead of
  routed to one element). On XLA:CPU much faster to differentiate than reduce_window, and the
  separable form (3 + 3 slices, the second pass on a map already halved) is faster again than 9
  slices of the full map (CNN train steps: medjax/benchmarks/RESULTS.md).
  """
  kernel, strides = (window, window), (stride, stride)
  (ph, pw) = _resolve_padding(x.shape, kernel, strides, padding)
  x = jnp.pad(x, [(0, 0), ph, pw, (0, 0)], constant_values=-jnp.inf)
  oh = (x.shape[1] - window) // stride + 1
  ow = (x.shape[2] - window) // stride + 1
  rows = functools.reduce(jnp.maximum, [x[:, d:d + (oh - 1) * stride + 1:stride]
                                        for d in range(window)])
  return functools.reduce(jnp.maximum, [rows[:, :, d:d + (ow - 1) * stride + 1:stride]
                                        for d in range(window)])


class Conv(nn.Module):
  """2-D convolution, NHWC, kernel (kh, kw, in, out) like `nn.Conv`, no bias by default.

  `impl`: "lax" (one `conv_general_dilated`), "im2col" (shifted slices + one matmul), "matmul"
  (1x1 only: strided slice + matmul), "shift_add" (stride 1 only: one matmul to kh * kw * out
  channels, then shifted slices summed), "lax_matmul_grad" (lax, the kernel gradient by
  matmuls) or "auto": on CPU matmul for 1x1, im2col for output maps of at most
  IM2COL_MAX_OUTPUT_PIXELS pixels (IM2COL_STRIDED_MAX_OUTPUT_PIXELS when strided), shift_add
  for stride-1 convolutions with kh * kw * out <= in channels, lax for stride-1 convolutions on
  output maps of at least `platform.xla_kernel_grad_min_output_pixels()` (by CPU vendor),
  lax_matmul_grad for the others with at least MATMUL_GRAD_MIN_FEATURES outputs, else lax; lax
  on accelerators.
  """
  features: int
  kernel_size: tuple[int, int] = (3, 3)
  strides: tuple[int, int] = (1, 1)
  padding: Any = "SAME"
  use_bias: bool = False
  dtype: Any = jnp.float32
  kernel_init: Any = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
  impl: str = "auto"

  @nn.compact
  def __call__(self, x):
    kh, kw = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features),
                        jnp.float32)
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    pads = _resolve_padding(x.shape, self.kernel_size, self.strides, self.padding)
    out_pixels = (_pad_and_out_size(x.shape[1], kh, self.strides[0], pads[0]) *
                  _pad_and_out_size(x.shape[2], kw, self.strides[1], pads[1]))
    impl = self.impl
    if impl == "auto":
      cpu = platform.cpu_layers()
      pointwise = (kh, kw) == (1, 1) and all(p == (0, 0) for p in pads)
      strided = tuple(self.strides) != (1, 1)
      small = (kh, kw) != (1, 1) and (
          out_pixels <= IM2COL_MAX_OUTPUT_PIXELS or
          strided and out_pixels <= IM2COL_STRIDED_MAX_OUTPUT_PIXELS)
      few_outputs = (not strided and (kh, kw) != (1, 1) and
                     kh * kw * self.features <= x.shape[-1])
      xla_min_pixels = platform.xla_kernel_grad_min_output_pixels() if cpu else None
      xla_kernel_grad = xla_min_pixels is not None and out_pixels >= xla_min_pixels
      impl = ("matmul" if cpu and pointwise and ONE_BY_ONE_AS_MATMUL else
              "im2col" if cpu and small else
              "shift_add" if cpu and few_outputs and SHIFT_ADD else
              "lax" if cpu and not strided and xla_kernel_grad else
              "lax_matmul_grad" if (cpu and MATMUL_KERNEL_GRAD and
                                    self.features >= MATMUL_GRAD_MIN_FEATURES) else "lax")
    if impl == "matmul":
      if (kh, kw) != (1, 1) or any(p != (0, 0) for p in pads):
        raise ValueError("impl='matmul' is for unpadded 1x1 convolutions")
      sh, sw = self.strides
      y = _matmul(x[:, ::sh, ::sw, :], kernel.reshape(-1, self.features))
    elif impl == "im2col":
      cols = jnp.concatenate(_shifted_windows(x, self.kernel_size, self.strides, pads, 0), -1)
      y = _matmul(cols, kernel.reshape(-1, self.features))
    elif impl == "shift_add":
      if tuple(self.strides) != (1, 1):
        raise ValueError("impl='shift_add' is for stride-1 convolutions")
      y = shift_add_conv(x, kernel, pads)
    elif impl == "lax_matmul_grad":
      pads = tuple(tuple(int(v) for v in p) for p in pads)
      y = lax_matmul_grad_conv(x, kernel, tuple(self.strides), pads)
    elif impl == "lax":
      y = _lax_conv(x, kernel, self.strides, pads)
    else:
      raise ValueError(f"unknown conv impl {impl!r}; expected 'auto', 'lax', 'im2col', "
                       "'matmul', 'shift_add' or 'lax_matmul_grad'")
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32
                         ).astype(self.dtype)
    return y
