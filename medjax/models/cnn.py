"""The paper's 6-layer CNN: 4 x [conv 3x3/2 -> ReLU -> max-pool 3x3/2], Dense 256, Dense K."""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax.numpy as jnp
from flax import linen as nn

from medjax.models.layers import Conv, max_pool


class CNN(nn.Module):
  """SAME padding throughout, so a 50x50 input survives the eight stride-2 reductions.

  Returns float32 logits of shape [batch, num_classes].
  """
  num_classes: int = 2
  features: Sequence[int] = (32, 64, 128, 256)
  dense: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    del train  # no BatchNorm or dropout in the paper's CNN
    x = x.astype(self.dtype)
    for i, f in enumerate(self.features):
      x = Conv(f, (3, 3), (2, 2), "SAME", use_bias=True, dtype=self.dtype,
               kernel_init=nn.initializers.lecun_normal(), name=f"conv{i}")(x)
      x = max_pool(nn.relu(x), 3, 2, "SAME")
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(self.dense, dtype=self.dtype, name="dense")(x))
    x = nn.Dense(self.num_classes, dtype=self.dtype, name="logits")(x)
    return x.astype(jnp.float32)


CNNTiny = functools.partial(CNN, features=(8, 8, 16, 16), dense=16)
