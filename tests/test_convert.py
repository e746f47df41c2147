"""Keras's and torchvision's ResNet-50 weights load into medjax and give their outputs.

Keras (TensorFlow backend) builds `keras.applications.ResNet50(weights=None)` at 32x32 with
random weights and BatchNorm statistics; the test saves them in both of Keras's layouts, loads
them and compares every block's output, the logits and one BatchNorm update in float32.
torchvision's test (every stage's output, the logits and the BatchNorm statistics in eval mode)
needs torch and torchvision and is skipped without them.
"""

import functools
import sys

import numpy as np
import pytest

from medjax.errors import ConfigError, DataError
from medjax.models import KerasResNet50, ResNet50, convert
from medjax.train.state import count_params
from medjax.train.transfer import Pretrained, fit_variables

SIZE = 32  # the smallest input keras.applications.ResNet50 accepts
TOL = 1e-4


@pytest.fixture(scope="module")
def keras():
  pytest.importorskip("tensorflow")
  pytest.importorskip("h5py")
  from medjax.data.pipeline import tensorflow
  tensorflow()  # TensorFlow off the GPU, which belongs to JAX
  import keras
  if keras.backend.backend() != "tensorflow":
    pytest.skip("Keras runs on another backend")
  return keras


def _randomize_norms(keras, model, seed=0):
  """BatchNorm statistics and affine parameters far from their init, so that loading them
  matters (a fresh model has mean 0, variance 1)."""
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      n = layer.get_weights()[0].shape
      layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n),
                         rng.normal(0, 0.2, n), rng.uniform(0.5, 2.0, n)])


def _save_applications_h5(model, path):
  """The legacy layout exactly as keras-applications' resnet50_weights_tf_dim_ordering_tf_kernels
  files have it: every layer in layer_names, Keras 2 weight names ('conv1_conv/kernel:0')."""
  import h5py
  names = {"Conv2D": ("kernel", "bias"), "Dense": ("kernel", "bias"),
           "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance")}
  with h5py.File(path, "w") as f:
    f.attrs["layer_names"] = [l.name.encode() for l in model.layers]
    f.attrs["backend"] = b"tensorflow"
    f.attrs["keras_version"] = b"2.2.4"
    for layer in model.layers:
      group = f.create_group(layer.name)
      weights = layer.get_weights()
      wnames = [f"{layer.name}/{w}:0" for w in names.get(type(layer).__name__, ())]
      assert len(wnames) == len(weights), layer.name
      group.attrs["weight_names"] = [w.encode() for w in wnames]
      for w, value in zip(wnames, weights):
        group.create_dataset(w, data=value)


@pytest.fixture(scope="module")
def keras_files(keras, tmp_path_factory):
  """A random Keras ResNet-50 (2 classes, logits) and its weights in the three layouts."""
  from keras.src.legacy.saving import legacy_h5_format
  import h5py
  keras.utils.set_random_seed(0)
  model = keras.applications.ResNet50(weights=None, input_shape=(SIZE, SIZE, 3), classes=2,
                                      classifier_activation=None)
  _randomize_norms(keras, model)
  root = tmp_path_factory.mktemp("keras")
  files = {"keras3": str(root / "resnet50.weights.h5"), "legacy": str(root / "legacy.h5"),
           "applications": str(root / "resnet50_weights_tf_dim_ordering_tf_kernels.h5")}
  model.save_weights(files["keras3"])
  with h5py.File(files["legacy"], "w") as f:  # Keras 3's writer of the legacy layout
    legacy_h5_format.save_weights_to_hdf5_group(f, model)
  _save_applications_h5(model, files["applications"])
  return model, files


def _images(n=4, channels=3, seed=1):
  return np.random.default_rng(seed).uniform(0, 1, (n, SIZE, SIZE, channels)).astype(np.float32)


def _block_outputs(keras, model, x):
  """{block name: output} of every `conv<s>_block<b>_out` layer, and the logits."""
  names = [l.name for l in model.layers if l.name.endswith("_out")]
  probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names] + [model.output])
  outputs = [np.asarray(o) for o in probe([x], training=False)]
  return dict(zip([n[:-len("_out")] for n in names] + ["logits"], outputs))


def _medjax_block_outputs(variables, x, num_classes=2):
  model = KerasResNet50(num_classes=num_classes)
  logits, state = model.apply(variables, x, train=False, capture_intermediates=True)
  out = {name: np.asarray(v["__call__"][0]) for name, v in state["intermediates"].items()
         if name.startswith("conv") and "_block" in name}
  out["logits"] = np.asarray(logits)
  return out


@pytest.mark.slow  # TensorFlow + Keras build a ResNet-50
def test_keras_variant_has_keras_parameter_count_layer_for_layer(keras):
  import jax
  import jax.numpy as jnp
  reference = keras.applications.ResNet50(weights=None, input_shape=(SIZE, SIZE, 3))
  variables = jax.eval_shape(lambda: KerasResNet50(num_classes=1000).init(
      jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)), train=False))
  assert count_params(variables) == reference.count_params() == 25_636_712
  # Every weighted Keras layer is a medjax layer of the same shapes, and nothing else is.
  expected = convert.keras_resnet_variables(
      {l.name: dict(zip(("gamma", "beta", "moving_mean", "moving_variance")
                        if isinstance(l, keras.layers.BatchNormalization) else
                        ("kernel", "bias"), l.get_weights()))
       for l in reference.layers if l.get_weights()}, "reference")
  shapes = lambda tree: jax.tree.map(lambda v: tuple(v.shape), tree)
  assert shapes(expected) == shapes(variables)
  # The torchvision variant, the default, keeps torchvision's count.
  tv = jax.eval_shape(lambda: ResNet50(num_classes=1000).init(
      jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)), train=False))
  assert count_params(tv["params"]) == 25_557_032


@pytest.mark.slow  # TensorFlow + Keras build a ResNet-50
@pytest.mark.parametrize("layout", ["keras3", "legacy", "applications"])
def test_keras_weights_give_keras_outputs(keras, keras_files, layout):
  model, files = keras_files
  variables = convert.keras_resnet_variables(convert.read_keras_h5(files[layout]), layout)
  x = _images()
  want = _block_outputs(keras, model, x)
  got = _medjax_block_outputs(variables, x)
  assert set(got) == set(want)  # every block, layer for layer
  for name in want:
    np.testing.assert_allclose(got[name], want[name], atol=TOL, rtol=TOL, err_msg=name)
  # The BatchNorm statistics are Keras's, and one training-mode update moves them the same way.
  bn = model.get_layer("conv3_block2_2_bn")
  np.testing.assert_array_equal(variables["batch_stats"]["conv3_block2"]["2_bn"]["var"],
                                bn.moving_variance.numpy())
  model(x, training=True)
  _, updates = KerasResNet50(num_classes=2).apply(variables, x, train=True,
                                                  mutable=["batch_stats"])
  for name, stat in (("moving_mean", "mean"), ("moving_variance", "var")):
    np.testing.assert_allclose(updates["batch_stats"]["conv3_block2"]["2_bn"][stat],
                               getattr(bn, name).numpy(), atol=TOL, rtol=TOL)
  model.load_weights(files["keras3"])  # undo the update for the other layouts


@pytest.mark.slow  # TensorFlow + Keras build a ResNet-50
def test_keras_notop_weights_get_a_new_head(keras, tmp_path):
  import jax
  import jax.numpy as jnp
  keras.utils.set_random_seed(1)
  notop = keras.applications.ResNet50(weights=None, include_top=False,
                                      input_shape=(SIZE, SIZE, 3))
  _randomize_norms(keras, notop, seed=1)
  path = str(tmp_path / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")
  _save_applications_h5(notop, path)
  source = Pretrained(convert.keras_resnet_variables(convert.read_keras_h5(path), path),
                      source=path, kind="keras")
  target = KerasResNet50(num_classes=2).init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3)))
  variables, summary = fit_variables(source, target)
  assert "has no logits layer" in summary["new_head"]
  np.testing.assert_array_equal(variables["params"]["logits"]["kernel"],
                                target["params"]["logits"]["kernel"])
  x = _images()
  want = np.asarray(notop(x, training=False))
  got = _medjax_block_outputs(variables, x)["conv5_block3"]
  np.testing.assert_allclose(got, want, atol=TOL, rtol=TOL)


@pytest.mark.slow  # TensorFlow + Keras build a ResNet-50
def test_a_keras_file_that_is_not_a_resnet50_names_the_layer(keras, tmp_path):
  inputs = keras.Input((8, 8, 3))
  outputs = keras.layers.Conv2D(4, 3, name="my_conv")(inputs)
  path = str(tmp_path / "other.weights.h5")
  keras.Model(inputs, outputs).save_weights(path)
  with pytest.raises(DataError, match="layer my_conv .* not a layer of Keras's ResNet-50"):
    convert.read_keras_h5(path)
  not_h5 = tmp_path / "x.h5"
  not_h5.write_text("no")
  with pytest.raises(DataError, match="not an HDF5 file"):
    convert.read_keras_h5(str(not_h5))


def _torchvision():
  """torchvision, or a skip without torch or torchvision.

  PyPI's torchvision wheels are CUDA builds: beside a CPU-only torch their C++ ops do not load,
  and `import torchvision` then stops at registering a fake kernel for the missing
  `torchvision::nms` op (pytorch/vision#9085). ResNet-50 is plain torch.nn and uses none of
  those ops, so the import is retried with the registrations of torchvision's own ops skipped
  (everything else registers as usual)."""
  torch = pytest.importorskip("torch")
  try:
    import torchvision
    return torch, torchvision
  except ImportError:
    pytest.skip("torchvision is not installed")
  except RuntimeError as e:
    if "torchvision::" not in str(e):
      raise
  for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
    del sys.modules[name]  # the half-imported package
  register_fake = torch.library.register_fake

  def skip_torchvision_ops(op, *args, **kwargs):
    if isinstance(op, str) and op.startswith("torchvision::"):
      return lambda fn=None, **_: fn if fn is not None else (lambda f: f)
    return register_fake(op, *args, **kwargs)

  torch.library.register_fake = skip_torchvision_ops
  try:
    import torchvision
  finally:
    torch.library.register_fake = register_fake
  return torch, torchvision


TORCH_STAGES = {"layer1": "Bottleneck_2", "layer2": "Bottleneck_6", "layer3": "Bottleneck_12",
                "layer4": "Bottleneck_15"}  # torchvision's stages -> their last medjax block


@pytest.mark.slow  # torch builds a ResNet-50
def test_torchvision_weights_give_torchvision_outputs(tmp_path):
  import jax
  import jax.numpy as jnp
  torch, torchvision = _torchvision()
  torch.manual_seed(0)
  reference = torchvision.models.resnet50(weights=None, num_classes=2)
  for module in reference.modules():
    if isinstance(module, torch.nn.BatchNorm2d):
      with torch.no_grad():
        module.running_mean.normal_(0, 0.2)
        module.running_var.uniform_(0.5, 2.0)
        module.weight.uniform_(0.5, 1.5)
        module.bias.normal_(0, 0.2)
  reference.eval()
  path = str(tmp_path / "resnet50.pth")
  torch.save(reference.state_dict(), path)
  variables = convert.torchvision_resnet_variables(convert.read_torch_state_dict(path), path)
  # The BatchNorm statistics are torchvision's, and eval mode does not move them.
  stats = variables["batch_stats"]
  for module, layer in ((reference.bn1, ("stem_norm",)),
                        (reference.layer2[1].bn2, ("Bottleneck_4", "BatchNorm_1")),
                        (reference.layer3[0].downsample[1], ("Bottleneck_7", "proj_norm"))):
    leaf = functools.reduce(lambda tree, key: tree[key], layer, stats)
    np.testing.assert_array_equal(leaf["mean"], module.running_mean.numpy(), err_msg=layer)
    np.testing.assert_array_equal(leaf["var"], module.running_var.numpy(), err_msg=layer)
  x = _images(4, seed=2)
  want = {}
  hooks = [getattr(reference, name).register_forward_hook(
      lambda _, __, out, name=name: want.__setitem__(name, out.numpy().transpose(0, 2, 3, 1)))
           for name in TORCH_STAGES]
  with torch.no_grad():
    want["logits"] = reference(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
  for hook in hooks:
    hook.remove()
  model = ResNet50(num_classes=2)
  logits, state = model.apply(variables, x, train=False, capture_intermediates=True,
                              mutable=["batch_stats", "intermediates"])
  got = {name: np.asarray(state["intermediates"][block]["__call__"][0])
         for name, block in TORCH_STAGES.items()}
  got["logits"] = np.asarray(logits)
  assert got["logits"].shape == (4, 2)
  for name in want:  # every stage, then the logits
    np.testing.assert_allclose(got[name], want[name], atol=TOL, rtol=TOL, err_msg=name)
  assert jax.tree.all(jax.tree.map(np.array_equal, state["batch_stats"], stats))
  # What init_from does with it for medjax's one-channel images: the RGB kernels summed, a grey
  # image gives torchvision's logits of the same image as three equal channels.
  grey_model = ResNet50(num_classes=2)
  target = grey_model.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 1)), train=False)
  grey, summary = fit_variables(Pretrained(variables, source=path, kind="torchvision"), target)
  assert summary["adapted_channels"] == ["stem_conv: 3 -> 1 input channels"]
  assert summary["new_head"] is None
  x1 = x[..., :1]
  with torch.no_grad():
    want_grey = reference(torch.from_numpy(np.repeat(x1, 3, -1).transpose(0, 3, 1, 2))).numpy()
  np.testing.assert_allclose(np.asarray(grey_model.apply(grey, x1, train=False)), want_grey,
                             atol=TOL, rtol=TOL)


def test_reading_a_pth_without_torch_names_the_extra(tmp_path, monkeypatch):
  import builtins
  real_import = builtins.__import__

  def no_torch(name, *args, **kwargs):
    if name == "torch":
      raise ImportError("No module named 'torch'")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_torch)
  with pytest.raises(ConfigError, match=r"needs torch: pip install 'medjax\[torch\]'"):
    convert.read_torch_state_dict(str(tmp_path / "resnet50.pth"))
