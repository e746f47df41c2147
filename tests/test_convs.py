"""medjax.benchmarks.convs: its shapes are the stem and 3x3 convolutions ResNet-50 really has,
and a run times each of them (jax only here: PyTorch is not a test dependency)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_gemm import traced_conv_shapes

from medjax.benchmarks import convs


@pytest.mark.parametrize("image_size", [50, 128])
def test_the_shapes_are_resnet50s_spatial_convolutions(image_size):
  shapes = convs.spatial_shapes(image_size, 20)
  assert shapes == traced_conv_shapes(image_size, 20, pointwise=False)
  assert sum(shapes.values()) == 17  # the stem and one 3x3 per bottleneck


def test_a_run_times_every_shape_and_sums_a_step(capsys):
  result = convs.main(["--image_size=32", "--batch_size=1", "--repeats=1", "--windows=1",
                       "--notorch"])
  rows = result["shapes"]
  assert {(r["batch"], r["side"], r["in"], r["out"], r["kernel"], r["stride"])
          for r in rows} == set(convs.spatial_shapes(32, 1))
  for row in rows:
    assert all(row[f"{impl}_{kind}"] > 0 for impl in convs.IMPLS for kind in convs.KINDS)
  stem = next(r for r in rows if r["in"] == 1)
  for impl in convs.IMPLS:  # the stem's input gradient is not part of a step
    assert result["totals_ms"][impl]["input_grad"] == pytest.approx(
        1e3 * sum(r[f"{impl}_input_grad"] * r["count"] for r in rows if r is not stem))
    assert result["totals_ms"][impl]["kernel_grad"] == pytest.approx(
        1e3 * sum(r[f"{impl}_kernel_grad"] * r["count"] for r in rows))
  assert "kernel grads" in capsys.readouterr().out


@pytest.mark.parametrize("impl", convs.IMPLS)
def test_the_timed_functions_are_the_convolution_and_its_gradients(impl):
  fns = convs._jax_fns(impl, 8, 16, 3, 2)
  rng = np.random.default_rng(0)
  w = jnp.asarray(rng.standard_normal((3, 3, 8, 16), np.float32))
  x = jnp.asarray(rng.standard_normal((2, 9, 9, 8), np.float32))
  g = jnp.asarray(rng.standard_normal((2, 5, 5, 16), np.float32))

  def conv(w, x):
    return jax.lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  y, vjp = jax.vjp(conv, w, x)
  dw, dx = vjp(g)
  np.testing.assert_allclose(fns["forward"](w, x, g), y, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(fns["input_grad"](w, x, g), dx, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(fns["kernel_grad"](w, x, g), dw, rtol=1e-5, atol=1e-4)
