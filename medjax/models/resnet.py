"""ResNet-50 in two variants: torchvision's (the default) and Keras's, the paper's.

"torchvision" (v1.5): stride on the 3x3 of each bottleneck, explicit torchvision padding (3 for
the 7x7 stem, 1 for 3x3 convs and the stem max-pool), no conv biases, BatchNorm epsilon 1e-5;
25,557,032 parameters at 3 channels / 1000 classes.

"keras" (`tf.keras.applications.ResNet50`, which the paper used): a bias on every convolution,
stride on the first 1x1 of a block, BatchNorm epsilon 1.001e-5 and momentum 0.99, Keras's
initializers (Glorot uniform, zero biases); 25,636,712 parameters at 3 channels / 1000 classes.
Its layers carry Keras's names (`conv1_conv`, `conv2_block1_0_conv`, ... `conv5_block3_3_bn`;
Keras's `predictions` is `logits`), so weights map one to one (`medjax.models.convert`).
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


KERAS_EPSILON = 1.001e-5
KERAS_MOMENTUM = 0.99
VARIANTS = ("torchvision", "keras")


class KerasBlock(nn.Module):
  """Keras's bottleneck (`block1` of keras.applications.resnet): the stride on the first 1x1
  and on the projection shortcut ("_0_"), which only the first block of a stage has."""
  filters: int
  strides: int = 1
  conv_shortcut: bool = False
  dtype: Any = jnp.float32
  conv_impl: str = "auto"

  @nn.compact
  def __call__(self, x, *, train: bool):
    conv = functools.partial(Conv, use_bias=True, dtype=self.dtype, impl=self.conv_impl,
                             kernel_init=nn.initializers.glorot_uniform())
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=KERAS_MOMENTUM, epsilon=KERAS_EPSILON, dtype=self.dtype,
                             param_dtype=jnp.float32)
    s = (self.strides, self.strides)
    shortcut = x
    if self.conv_shortcut:
      shortcut = norm(name="0_bn")(conv(4 * self.filters, (1, 1), s, "VALID", name="0_conv")(x))
    y = nn.relu(norm(name="1_bn")(conv(self.filters, (1, 1), s, "VALID", name="1_conv")(x)))
    y = nn.relu(norm(name="2_bn")(conv(self.filters, (3, 3), (1, 1), ((1, 1), (1, 1)),
                                       name="2_conv")(y)))
    y = norm(name="3_bn")(conv(4 * self.filters, (1, 1), padding="VALID", name="3_conv")(y))
    return nn.relu(shortcut + y)


class ResNet(nn.Module):
  """Returns float32 logits [batch, num_classes] for NHWC input of any size >= 32.

  `variant`: "torchvision" or "keras" (module docstring)."""
  stage_sizes: Sequence[int]
  num_classes: int = 2
  num_filters: int = 64
  dtype: Any = jnp.float32
  conv_impl: str = "auto"
  variant: str = "torchvision"

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    x = x.astype(self.dtype)
    if self.variant == "keras":
      return self._keras(x, train)
    if self.variant != "torchvision":
      raise ValueError(f"unknown ResNet variant {self.variant!r}; expected one of {VARIANTS}")
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

  def _keras(self, x, train: bool):
    x = Conv(self.num_filters, (7, 7), (2, 2), ((3, 3), (3, 3)), use_bias=True,
             dtype=self.dtype, impl=self.conv_impl,
             kernel_init=nn.initializers.glorot_uniform(), name="conv1_conv")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=KERAS_MOMENTUM,
                     epsilon=KERAS_EPSILON, dtype=self.dtype, param_dtype=jnp.float32,
                     name="conv1_bn")(x)
    # Keras zero-pads before its max-pool: the same as -inf padding after a ReLU.
    x = max_pool(nn.relu(x), 3, 2, ((1, 1), (1, 1)))
    for i, n_blocks in enumerate(self.stage_sizes):
      for j in range(n_blocks):
        x = KerasBlock(self.num_filters * 2**i, strides=2 if i > 0 and j == 0 else 1,
                       conv_shortcut=j == 0, dtype=self.dtype, conv_impl=self.conv_impl,
                       name=f"conv{i + 2}_block{j + 1}")(x, train=train)
    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(self.num_classes, dtype=self.dtype, kernel_init=nn.initializers.glorot_uniform(),
                 name="logits")(x)
    return x.astype(jnp.float32)


ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3))
ResNetTiny = functools.partial(ResNet, stage_sizes=(1, 1, 1, 1), num_filters=8)
KerasResNet50 = functools.partial(ResNet50, variant="keras")
KerasResNetTiny = functools.partial(ResNetTiny, variant="keras")
