"""Flax linen models. They take NHWC float input and return float32 logits."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from medjax.models.cnn import CNN, CNNTiny
from medjax.models.rbm import DBN, RBM, DBNTiny
from medjax.models.resnet import KerasResNet50, KerasResNetTiny, ResNet, ResNet50, ResNetTiny
from medjax.models.sgan import Discriminator, DiscriminatorTiny, Generator, GeneratorTiny

_MODELS = {
    ("cnn", "full"): CNN,
    ("cnn", "tiny"): CNNTiny,
    ("resnet", "full"): ResNet50,
    ("resnet", "tiny"): ResNetTiny,
    ("dbn", "full"): DBN,
    ("dbn", "tiny"): DBNTiny,
}

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def create_model(name: str, *, size: str = "full", num_classes: int = 2,
                 dtype: str | Any = "float32", resnet_variant: str = "torchvision"):
  """Builds a classifier by name ('cnn', 'resnet') and size ('full', 'tiny'); a ResNet in
  torchvision's or Keras's variant (`medjax.models.resnet`)."""
  if (name, size) not in _MODELS:
    known = sorted({n for n, _ in _MODELS})
    raise ValueError(f"unknown model {name!r} (size {size!r}); known models: {known}, "
                     "sizes: 'full', 'tiny'")
  if isinstance(dtype, str):
    if dtype not in DTYPES:
      raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPES)}")
    dtype = DTYPES[dtype]
  if name == "resnet":
    return _MODELS[name, size](num_classes=num_classes, dtype=dtype, variant=resnet_variant)
  return _MODELS[name, size](num_classes=num_classes, dtype=dtype)


__all__ = ["CNN", "CNNTiny", "DBN", "DBNTiny", "Discriminator", "DiscriminatorTiny", "Generator",
           "GeneratorTiny", "KerasResNet50", "KerasResNetTiny", "RBM", "ResNet", "ResNet50", "ResNetTiny",
           "create_model", "DTYPES"]
