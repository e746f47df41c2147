"""The paper's semi-supervised GAN (Odena 2016; Salimans et al. 2016): generator and discriminator.

Image range: the generator ends in tanh, so generated images lie in [-1, 1]. Real images reach
the discriminator in the same range: uint8 0..255 -> [0, 1] (as for the other models) -> 2x - 1
(`to_tanh_range`). Classification at test time goes through the same mapping.

Output size: two stride-2 transposed convolutions grow the seed 4x, so the seed is
ceil(size / 4) per side and the 4 * ceil(size / 4) output is centre-cropped to the target size
(50 -> seed 13 -> 52 -> crop 1 pixel per side; 128 and 256 need no crop). Cropping keeps every
output pixel a plain convolution output (no resampling blur), and wastes at most 3 rows/columns.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from medjax import platform
from medjax.models.layers import Conv


def to_tanh_range(images):
  """uint8 0..255 or float [0, 1] images -> float32 in [-1, 1], the generator's range."""
  if images.dtype == jnp.uint8:
    images = images.astype(jnp.float32) / 255.0
  return images.astype(jnp.float32) * 2.0 - 1.0


def real_fake_logit(logits):
  """The unsupervised head's logit: log Z with Z = sum(exp(logits)).

  D(x) = Z / (Z + 1) = sigmoid(log Z): with this logit every GAN loss is a softplus, finite for
  any finite logits (the naive Z overflows float32 beyond logits of about 88).
  """
  return jax.nn.logsumexp(logits.astype(jnp.float32), axis=-1)


def real_probability(logits):
  """D(x) = Z / (Z + 1), Z = sum(exp(logits)), computed as sigmoid(logsumexp(logits))."""
  return jax.nn.sigmoid(real_fake_logit(logits))


def center_crop(x, height: int, width: int):
  """Crops NHWC `x` to [height, width] around its centre (the extra pixel goes at the end)."""
  top = (x.shape[1] - height) // 2
  left = (x.shape[2] - width) // 2
  return x[:, top:top + height, left:left + width, :]


# Transposed conv 4x4 / stride 2 / SAME as four sub-pixel convolutions: output row 2m + p reads
# padded input rows m + r with kernel row k for (r, k) in _PHASE_TAPS[p] (same for columns).
_PHASE_TAPS = (((0, 0), (1, 2)), ((1, 1), (2, 3)))
_NHWC = ("NHWC", "HWIO", "NHWC")


def _phase_taps(py: int, px: int):
  return [(ry, rx, ky, kx) for ry, ky in _PHASE_TAPS[py] for rx, kx in _PHASE_TAPS[px]]


def _conv_transpose_4x4(x, kernel):
  """The transposed convolution's output: each of the 2 x 2 output phases is a 2x2 convolution
  of the padded input (one matmul of four shifted slices), the four interleaved."""
  n, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  rows = []
  for py in range(2):
    cols = []
    for px in range(2):
      taps = _phase_taps(py, px)
      patches = jnp.concatenate([xp[:, ry:ry + h, rx:rx + w] for ry, rx, _, _ in taps], -1)
      cols.append(patches @ jnp.concatenate([kernel[ky, kx] for _, _, ky, kx in taps], 0))
    rows.append(jnp.stack(cols, 3))                 # [n, h, w, px, f]
  y = jnp.stack(rows, 2)                             # [n, h, py, w, px, f]
  return y.reshape(n, 2 * h, 2 * w, kernel.shape[-1])


@jax.custom_vjp
def conv_transpose_4x4(x, kernel):
  """`_conv_transpose_4x4` with gradients that XLA:CPU computes faster than autodiff's: the
  input gradient as one stride-2 convolution of the cotangent, the kernel gradient as one
  matmul per tap."""
  return _conv_transpose_4x4(x, kernel)


def _conv_transpose_4x4_fwd(x, kernel):
  return _conv_transpose_4x4(x, kernel), (x, kernel)


def _conv_transpose_4x4_bwd(residuals, g):
  x, kernel = residuals
  _, h, w, cin = x.shape
  # Per axis y[2m] = x[m - 1] k[0] + x[m] k[2] and y[2m + 1] = x[m] k[1] + x[m + 1] k[3], so
  # dx[m] = sum_s g[2m + s - 1] k[3 - s]: a stride-2 convolution with the flipped kernel.
  dx = jax.lax.conv_general_dilated(g, kernel[::-1, ::-1].transpose(0, 1, 3, 2), (2, 2),
                                    ((1, 1), (1, 1)), dimension_numbers=_NHWC)
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  dk = [[None] * 4 for _ in range(4)]
  for py in range(2):
    for px in range(2):
      g_phase = g[:, py::2, px::2].reshape(-1, g.shape[-1])
      for ry, rx, ky, kx in _phase_taps(py, px):
        dk[ky][kx] = xp[:, ry:ry + h, rx:rx + w].reshape(-1, cin).T @ g_phase
  return dx, jnp.stack([jnp.stack(row) for row in dk]).astype(kernel.dtype)


conv_transpose_4x4.defvjp(_conv_transpose_4x4_fwd, _conv_transpose_4x4_bwd)


class ConvTranspose4x4(nn.Module):
  """`nn.ConvTranspose(features, (4, 4), (2, 2), "SAME")` (same params, same output), computed
  as four 2x2 convolutions on the undilated input whose outputs are interleaved.

  XLA:CPU differentiates the dilated convolution behind nn.ConvTranspose orders of magnitude
  more slowly; this form also does 4x fewer multiplications (it skips the dilation's zeros).
  On CPU the gradients are `conv_transpose_4x4`'s, faster there than autodiff's (see
  medjax/benchmarks/RESULTS.md).
  """
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (4, 4, x.shape[-1], self.features), jnp.float32).astype(self.dtype)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    x = x.astype(self.dtype)
    fn = conv_transpose_4x4 if platform.cpu_layers() else _conv_transpose_4x4
    return fn(x, kernel) + bias.astype(self.dtype)


class Generator(nn.Module):
  """z [N, latent] -> images [N, H, W, C] in [-1, 1] (float32).

  Dense -> reshape to a ceil(H/4) x ceil(W/4) seed -> 2 x [ConvTranspose 4x4/2 -> LeakyReLU 0.2]
  -> Conv 7x7 -> tanh -> centre crop to (H, W).
  """
  image_shape: Sequence[int] = (50, 50, 1)
  features: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, z, *, train: bool = False):
    del train  # no BatchNorm or dropout in the paper's generator
    height, width, channels = self.image_shape
    sh, sw = math.ceil(height / 4), math.ceil(width / 4)
    x = nn.Dense(sh * sw * self.features, dtype=self.dtype, name="seed")(z.astype(self.dtype))
    x = nn.leaky_relu(x, 0.2).reshape(z.shape[0], sh, sw, self.features)
    for i in range(2):
      x = ConvTranspose4x4(self.features, dtype=self.dtype, name=f"up{i}")(x)
      x = nn.leaky_relu(x, 0.2)
    x = Conv(channels, (7, 7), padding="SAME", use_bias=True, dtype=self.dtype,
             kernel_init=nn.initializers.lecun_normal(), name="out")(x)
    return center_crop(jnp.tanh(x.astype(jnp.float32)), height, width)


class Discriminator(nn.Module):
  """Images in [-1, 1] -> float32 logits [N, K] of the K real classes.

  3 x [Conv 3x3/2 -> LeakyReLU 0.2] -> flatten -> dropout -> Dense(K). The supervised head C is
  softmax(logits); the unsupervised head D is `real_probability(logits)` (the implicit K+1-th
  "fake" class has logit 0). `return_features=True` also returns the flattened trunk features
  (for the generator's feature-matching loss).
  """
  num_classes: int = 2
  features: int = 128
  dropout_rate: float = 0.4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False, return_features: bool = False):
    x = x.astype(self.dtype)
    for i in range(3):
      x = Conv(self.features, (3, 3), (2, 2), "SAME", use_bias=True, dtype=self.dtype,
               kernel_init=nn.initializers.lecun_normal(), name=f"conv{i}")(x)
      x = nn.leaky_relu(x, 0.2)
    features = x.reshape(x.shape[0], -1)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(features)
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name="logits")(x).astype(jnp.float32)
    if return_features:
      return logits, features.astype(jnp.float32)
    return logits


GeneratorTiny = functools.partial(Generator, features=8)
DiscriminatorTiny = functools.partial(Discriminator, features=8)
