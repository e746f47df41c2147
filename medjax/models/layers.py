"""Layers shared by the convolutional models.

Both exist because of two measured XLA:CPU slow spots (see DESIGN.md): a 3x3 convolution on a
tiny feature map (ResNet-50 stage 5 is 2x2 at 50x50 input) and the gradient of `lax.reduce_window`
max-pooling (select_and_scatter). The replacements compute the same function with the same
parameters, so checkpoints do not depend on which path ran.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

Padding = Sequence[tuple[int, int]]

# Output maps with at most this many pixels use the im2col path on CPU.
IM2COL_MAX_OUTPUT_PIXELS = 16


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


def max_pool(x, window: int = 3, stride: int = 2, padding: Any = "SAME"):
  """Max pooling as an elementwise max over strided slices.

  Same values as `nn.max_pool`; the gradient differs only at exact ties (split instead of
  routed to one element). About 6x faster to differentiate on XLA:CPU than reduce_window.
  """
  kernel, strides = (window, window), (stride, stride)
  pads = _resolve_padding(x.shape, kernel, strides, padding)
  return functools.reduce(jnp.maximum, _shifted_windows(x, kernel, strides, pads, -jnp.inf))


class Conv(nn.Module):
  """2-D convolution, NHWC, kernel (kh, kw, in, out) like `nn.Conv`, no bias by default.

  `impl`: "lax" (one `conv_general_dilated`), "im2col" (shifted slices + one matmul) or "auto"
  (im2col on CPU for output maps of at most IM2COL_MAX_OUTPUT_PIXELS pixels, lax otherwise).
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
      small = out_pixels <= IM2COL_MAX_OUTPUT_PIXELS and (kh, kw) != (1, 1)
      impl = "im2col" if small and jax.default_backend() == "cpu" else "lax"
    if impl == "im2col":
      cols = jnp.concatenate(_shifted_windows(x, self.kernel_size, self.strides, pads, 0), -1)
      y = cols @ kernel.reshape(-1, self.features)
    elif impl == "lax":
      y = jax.lax.conv_general_dilated(
          x, kernel, self.strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    else:
      raise ValueError(f"unknown conv impl {impl!r}; expected 'auto', 'lax' or 'im2col'")
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32
                         ).astype(self.dtype)
    return y
