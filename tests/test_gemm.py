"""medjax.benchmarks.gemm: its shapes are the 1x1 convolutions ResNet-50 really has, and a run
times each of them (jax only here: PyTorch is not a test dependency)."""

import jax
import jax.numpy as jnp
import pytest
from flax import linen as nn

from medjax.benchmarks import gemm
from medjax.models import create_model
from medjax.models.layers import Conv


def traced_conv_shapes(image_size, batch_size, pointwise):
  """{key: count} of the Conv calls of a ResNet-50 forward (1x1 ones if `pointwise`, else the
  others), read by tracing it. 1x1 key: (P, in, out), P the output pixels of the batch; others:
  (batch, input side, in, out, kernel, stride)."""
  found = {}

  def record(next_fun, args, kwargs, context):
    module = context.module
    if isinstance(module, Conv) and (tuple(module.kernel_size) == (1, 1)) == pointwise:
      x, s = args[0], module.strides[0]
      if pointwise:
        key = (x.shape[0] * (-(-x.shape[1] // s)) * (-(-x.shape[2] // s)), x.shape[-1],
               module.features)
      else:
        key = (x.shape[0], x.shape[1], x.shape[-1], module.features, module.kernel_size[0], s)
      found[key] = found.get(key, 0) + 1
    return next_fun(*args, **kwargs)

  model = create_model("resnet", num_classes=2)
  x = jnp.zeros((batch_size, image_size, image_size, 1))
  with nn.intercept_methods(record):
    jax.eval_shape(lambda x: model.init(jax.random.key(0), x), x)
  return found


@pytest.mark.parametrize("image_size", [50, 128])
def test_the_shapes_are_resnet50s_pointwise_convolutions(image_size):
  shapes = gemm.pointwise_shapes(image_size, 20)
  assert shapes == traced_conv_shapes(image_size, 20, pointwise=True)
  assert sum(shapes.values()) == 36  # 16 bottlenecks x 2, and 4 projections


def test_a_run_times_every_shape_and_the_copy(capsys):
  result = gemm.main(["--image_size=32", "--batch_size=1", "--repeats=1", "--windows=1",
                      "--copy_mib=1", "--notorch"])
  assert {(r["p"], r["in"], r["out"]) for r in result["shapes"]} == set(
      gemm.pointwise_shapes(32, 1))
  for row in result["shapes"]:
    assert all(row[f"jax_{kind}"] > 0 for kind in gemm.KINDS)
  assert result["copy"]["jax_gbps"] > 0
  out = capsys.readouterr().out
  assert "kernel grad matmuls" in out and "GB/s" in out
