"""Layers shared by the convolutional models.

Both exist because of measured XLA:CPU slow spots (see DESIGN.md): a 3x3 convolution on a tiny
feature map (ResNet-50 stage 5 is 2x2 at 50x50 input), 1x1 convolutions (slower through the
convolution path than as the matmul they are) and the gradient of `lax.reduce_window`
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
# 1x1 convolutions as a plain matmul on CPU (ResNet-50 step, batch 20 / 50x50: 0.41 -> 0.33 s).
ONE_BY_ONE_AS_MATMUL = True


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
  """Max pooling as elementwise maxima of strided slices, rows first, then columns.

  Same values as `nn.max_pool`; the gradient differs only at exact ties (split instead of
  routed to one element). On XLA:CPU about 6x faster to differentiate than reduce_window, and
  the separable form (3 + 3 slices, the second pass on a map already halved) is another 2x
  faster than 9 slices of the full map (CNN train step, batch 20 at 256x256: 224 -> 144 ms).
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
  (1x1 only: strided slice + matmul) or "auto" (on CPU: matmul for 1x1, im2col for output maps
  of at most IM2COL_MAX_OUTPUT_PIXELS pixels; lax otherwise and on accelerators).
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
      cpu = jax.default_backend() == "cpu"
      pointwise = (kh, kw) == (1, 1) and all(p == (0, 0) for p in pads)
      small = out_pixels <= IM2COL_MAX_OUTPUT_PIXELS and (kh, kw) != (1, 1)
      impl = ("matmul" if cpu and pointwise and ONE_BY_ONE_AS_MATMUL else
              "im2col" if cpu and small else "lax")
    if impl == "matmul":
      if (kh, kw) != (1, 1) or any(p != (0, 0) for p in pads):
        raise ValueError("impl='matmul' is for unpadded 1x1 convolutions")
      sh, sw = self.strides
      y = x[:, ::sh, ::sw, :] @ kernel.reshape(-1, self.features)
    elif impl == "im2col":
      cols = jnp.concatenate(_shifted_windows(x, self.kernel_size, self.strides, pads, 0), -1)
      y = cols @ kernel.reshape(-1, self.features)
    elif impl == "lax":
      y = jax.lax.conv_general_dilated(
          x, kernel, self.strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    else:
      raise ValueError(f"unknown conv impl {impl!r}; expected 'auto', 'lax', 'im2col' or "
                       "'matmul'")
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32
                         ).astype(self.dtype)
    return y
