"""ResNet-50 with the torchvision topology (v1.5: stride on the 3x3 of each bottleneck).

Explicit torchvision padding (3 for the 7x7 stem, 1 for 3x3 convs and the stem max-pool), no
conv biases; with 3 channels and 1000 classes it has torchvision's 25,557,032 parameters.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax.numpy as jnp
from flax import linen as nn

from medjax.models.layers import Conv, max_pool


class Bottleneck(nn.Module):
  width: int
  strides: int = 1
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = functools.partial(Conv, dtype=self.dtype, impl=self.conv_impl)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype, param_dtype=jnp.float32)
    s = (self.strides, self.strides)
    y = nn.relu(norm()(conv(self.width, (1, 1), padding="VALID")(x)))
    y = nn.relu(norm()(conv(self.width, (3, 3), s, ((1, 1), (1, 1)))(y)))
    y = norm()(conv(self.width * 4, (1, 1), padding="VALID")(y))
    if x.shape[-1] != self.width * 4 or self.strides != 1:
      x = norm(name="proj_norm")(
          conv(self.width * 4, (1, 1), s, "VALID", name="proj_conv")(x))
    return nn.relu(x + y)


class ResNet(nn.Module):
  """Returns float32 logits [batch, num_classes] for NHWC input of any size >= 32."""
  stage_sizes: Sequence[int]
  num_classes: int = 2
  num_filters: int = 64
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    x = x.astype(self.dtype)
    x = Conv(self.num_filters, (7, 7), (2, 2), ((3, 3), (3, 3)), dtype=self.dtype,
             impl=self.conv_impl, name="stem_conv")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     dtype=self.dtype, param_dtype=jnp.float32, name="stem_norm")(x)
    x = max_pool(nn.relu(x), 3, 2, ((1, 1), (1, 1)))
    for i, n_blocks in enumerate(self.stage_sizes):
      for j in range(n_blocks):
        x = Bottleneck(self.num_filters * 2**i, strides=2 if i > 0 and j == 0 else 1,
                       dtype=self.dtype, conv_impl=self.conv_impl)(x, train=train)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="logits")(x)
    return x.astype(jnp.float32)


ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3))
ResNetTiny = functools.partial(ResNet, stage_sizes=(1, 1, 1, 1), num_filters=8)
