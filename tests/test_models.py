import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from hypothesis import given, settings, strategies as st

from medjax.models import CNN, CNNTiny, KerasResNet50, ResNet50, ResNetTiny, create_model
from medjax.models.layers import Conv, max_pool
from medjax.train.state import count_params


def _output_shape(model, batch, size, channels):
  x = jax.ShapeDtypeStruct((batch, size, size, channels), jnp.float32)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(x.shape), train=False))
  return variables, jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)


@settings(max_examples=12, deadline=None)
@given(batch=st.integers(1, 9), size=st.integers(32, 260), channels=st.integers(1, 4),
       classes=st.integers(2, 10), which=st.sampled_from(["cnn", "resnet"]))
@pytest.mark.slow
def test_output_shape_any_input(batch, size, channels, classes, which):
  model = (CNN if which == "cnn" else ResNet50)(num_classes=classes)
  variables, out = _output_shape(model, batch, size, channels)
  assert out.shape == (batch, classes)
  assert out.dtype == jnp.float32
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))


def test_resnet50_has_torchvision_parameter_count():
  variables, _ = _output_shape(ResNet50(num_classes=1000), 1, 224, 3)
  assert count_params(variables["params"]) == 25_557_032


def test_keras_resnet50_has_keras_parameter_count():
  # Keras counts BatchNorm's moving statistics among its weights; tests/test_convert.py checks
  # the layers one by one against keras.applications.ResNet50.
  variables, _ = _output_shape(KerasResNet50(num_classes=1000), 1, 32, 3)
  assert count_params(variables) == 25_636_712
  assert variables["params"]["conv2_block1"]["1_conv"]["bias"].shape == (64,)


def test_cnn_survives_eight_stride_two_reductions_at_50px():
  variables, out = _output_shape(CNN(), 2, 50, 1)
  # 50 -> 25 -> 13 -> 7 -> 4 -> 2 -> 1 -> 1 -> 1: the flatten feeds 256 features to the Dense.
  assert variables["params"]["dense"]["kernel"].shape == (256, 256)
  assert out.shape == (2, 2)


@pytest.mark.slow
@pytest.mark.parametrize("model_fn", [CNNTiny, ResNetTiny])
def test_bfloat16_computes_in_bf16_with_float32_params(model_fn):
  model = model_fn(dtype=jnp.bfloat16)
  x = jnp.ones((2, 40, 40, 1))
  variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  out, state = jax.jit(functools.partial(model.apply, train=True, mutable=["batch_stats"]))(
      variables, x)
  assert out.dtype == jnp.float32
  assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(state))
  ref = jax.jit(functools.partial(model_fn().apply, train=False))(variables, x)
  bf16 = jax.jit(functools.partial(model.apply, train=False))(variables, x)
  np.testing.assert_allclose(bf16, ref, atol=0.1, rtol=0.1)


@settings(max_examples=15, deadline=None)
@given(size=st.integers(2, 9), stride=st.sampled_from([1, 2]), k=st.sampled_from([1, 3]),
       padding=st.sampled_from(["SAME", "VALID", ((1, 1), (1, 1))]))
@pytest.mark.slow
def test_im2col_conv_matches_lax_conv(size, stride, k, padding):
  if padding == "VALID" and size < k:
    return
  x = jax.random.normal(jax.random.key(1), (2, size, size, 5))
  conv = functools.partial(Conv, 7, (k, k), (stride, stride), padding)
  params = conv(impl="lax").init(jax.random.key(2), x)
  ref = conv(impl="lax").apply(params, x)
  out = conv(impl="im2col").apply(params, x)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
  flax_ref = nn.Conv(7, (k, k), (stride, stride), padding, use_bias=False).apply(params, x)
  np.testing.assert_allclose(out, flax_ref, rtol=1e-5, atol=1e-5)


@settings(max_examples=10, deadline=None)
@given(size=st.integers(1, 12), stride=st.sampled_from([1, 2, 3]),
       padding=st.sampled_from(["SAME", "VALID"]))
@pytest.mark.slow
def test_pointwise_conv_as_matmul_matches_lax_values_and_gradients(size, stride, padding):
  x = jax.random.normal(jax.random.key(1), (2, size, size + 1, 5))
  conv = functools.partial(Conv, 7, (1, 1), (stride, stride), padding)
  params = conv(impl="lax").init(jax.random.key(2), x)

  def loss(impl):
    return lambda p, x: jnp.sum(jnp.sin(conv(impl=impl).apply(p, x)))

  np.testing.assert_allclose(conv(impl="matmul").apply(params, x),
                             conv(impl="lax").apply(params, x), rtol=1e-5, atol=1e-5)
  grads = [jax.grad(loss(impl), argnums=(0, 1))(params, x) for impl in ("matmul", "lax")]
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), *grads)
  with pytest.raises(ValueError, match="unpadded 1x1"):
    Conv(7, (3, 3), impl="matmul").apply(
        Conv(7, (3, 3)).init(jax.random.key(0), x), x)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's layout choice")
def test_a_resnet_train_step_keeps_the_gradients_in_the_forward_layout():
  # With 4-D operands to the 1x1 convolutions' matmuls XLA:CPU wrote each BatchNorm gradient
  # transposed ([channels, batch, h, w]) for the kernel gradient's dot: 558 of 1807 thread-ms
  # of a ResNet-50 step at 128 px (medjax/benchmarks/RESULTS.md). The layers flatten to 2-D
  # matmuls, so no BatchNorm gradient of the compiled step is transposed.
  import optax
  from medjax.benchmarks import op_profile
  from medjax.train import supervised
  from medjax.train.state import create_train_state
  model = create_model("resnet", size="tiny", num_classes=2)
  tx = optax.adam(1e-4)
  state = create_train_state(model, tx, jax.random.key(0), (32, 32, 1))
  step = functools.partial(supervised.train_step, model=model, tx=tx, augment=None)
  batch = {"image": jnp.zeros((6, 32, 32, 1), jnp.uint8), "label": jnp.zeros((6,), jnp.int32)}
  ops = op_profile.parse_hlo(
      jax.jit(step).lower(state, batch, jax.random.key(1)).compile().as_text())
  transposes = [o["op_name"] for name, o in ops.items()
                if name != "_computations" and o["opcode"] == "transpose"]
  assert not [t for t in transposes if "transpose(jvp(ResNet))" in t and re.search(
      r"/(BatchNorm_\d+|\w*_norm)/[^/]*$", t)]


@settings(max_examples=12, deadline=None)
@given(size=st.integers(1, 12), stride=st.sampled_from([1, 2, 3]),
       padding=st.sampled_from(["SAME", "VALID", ((1, 1), (1, 1))]))
@pytest.mark.slow
def test_max_pool_matches_flax_values_and_gradients(size, stride, padding):
  # Distinct values, so there are no ties and the gradients must agree exactly.
  x = jax.random.permutation(jax.random.key(0), jnp.arange(2 * size * size * 3.0)).reshape(
      2, size, size, 3)
  ref_fn = lambda x: nn.max_pool(x, (3, 3), (stride, stride), padding)
  ours_fn = lambda x: max_pool(x, 3, stride, padding)
  np.testing.assert_array_equal(ours_fn(x), ref_fn(x))
  w = jax.random.normal(jax.random.key(3), ref_fn(x).shape)
  g_ref = jax.jit(jax.grad(lambda x: jnp.sum(ref_fn(x) * w)))(x)
  g_ours = jax.jit(jax.grad(lambda x: jnp.sum(ours_fn(x) * w)))(x)
  # Overlapping windows (stride 1) sum their gradients in another order: float32 rounding only.
  np.testing.assert_allclose(g_ours, g_ref, rtol=1e-6, atol=1e-6)


def test_create_model_rejects_unknown_names():
  with pytest.raises(ValueError, match="unknown model 'dbnx'"):
    create_model("dbnx")
  with pytest.raises(ValueError, match="unknown dtype"):
    create_model("cnn", dtype="float16")
