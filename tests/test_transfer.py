"""Starting from other weights: fitting them to a model (channels, head, mismatches named by
layer), the fine-tuning optimizer, and runs started from another run (`config.init_from`)."""

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import hip128_crop_cnn, luna_resnet, luna_sgan
from medjax import config as config_lib
from medjax import runner
from medjax.analysis import pretrained
from medjax.analysis.restore import restore
from medjax.errors import ConfigError
from medjax.models import KerasResNetTiny, ResNetTiny
from medjax.train import optim, supervised
from medjax.train.state import create_train_state
from medjax.train.transfer import Pretrained, fit_variables

SIZE = 32


def _init(model, channels, seed=0):
  return model.init(jax.random.key(seed), jnp.zeros((1, SIZE, SIZE, channels)), train=False)


def _randomize_stats(variables, seed=0):
  """BatchNorm statistics away from (0, 1), so that loading them shows in the outputs."""
  rng = np.random.default_rng(seed)
  stats = jax.tree.map(lambda v: rng.uniform(0.5, 1.5, v.shape).astype(np.float32),
                       variables["batch_stats"])
  return {"params": variables["params"], "batch_stats": stats}


@pytest.mark.parametrize("model_fn", [KerasResNetTiny, ResNetTiny], ids=["keras", "torchvision"])
def test_rgb_weights_summed_to_one_channel_see_a_grey_image_as_rgb(model_fn):
  model = model_fn(num_classes=2)
  rgb = _randomize_stats(_init(model, 3))
  grey, summary = fit_variables(Pretrained(rgb, "rgb weights", "run"), _init(model, 1, seed=1))
  assert len(summary["adapted_channels"]) == 1 and "3 -> 1" in summary["adapted_channels"][0]
  assert summary["new_head"] is None  # same class count: the head is the source's
  x = np.random.default_rng(0).uniform(0, 1, (3, SIZE, SIZE, 1)).astype(np.float32)
  np.testing.assert_allclose(model.apply(grey, x), model.apply(rgb, np.repeat(x, 3, -1)),
                             atol=1e-5, rtol=1e-5)
  # ... and back: one channel repeated (divided by 3) sees an RGB image of equal channels as grey.
  again, _ = fit_variables(Pretrained(grey, "grey weights", "run"), _init(model, 3))
  np.testing.assert_allclose(model.apply(again, np.repeat(x, 3, -1)), model.apply(grey, x),
                             atol=1e-5, rtol=1e-5)


def test_another_class_count_gets_the_models_own_head():
  source = _init(KerasResNetTiny(num_classes=5), 1)
  target = _init(KerasResNetTiny(num_classes=2), 1, seed=1)
  fitted, summary = fit_variables(Pretrained(source, "five-class weights", "keras"), target)
  assert summary["new_head"] == "five-class weights has 5 classes, the model 2"
  assert jax.tree.all(jax.tree.map(np.array_equal, fitted["params"]["logits"],
                                   target["params"]["logits"]))
  np.testing.assert_array_equal(fitted["params"]["conv1_conv"]["kernel"],
                                source["params"]["conv1_conv"]["kernel"])


def test_a_mismatch_is_a_config_error_naming_the_layer():
  keras = Pretrained(_init(KerasResNetTiny(), 1), "keras.h5", "keras")
  with pytest.raises(ConfigError, match=r"keras.h5 has no layer Bottleneck_0/BatchNorm_0 of "
                                        r"the model \(and \d+ more\)"):
    fit_variables(keras, _init(ResNetTiny(), 1))
  wide = Pretrained(_init(KerasResNetTiny(num_filters=16), 1), "wide.h5", "keras")
  with pytest.raises(ConfigError, match=r"wide.h5: layer conv1_bn has bias of shape \(16,\), "
                                        r"the model's is \(8,\)"):
    fit_variables(wide, _init(KerasResNetTiny(), 1))
  deeper = Pretrained(_init(KerasResNetTiny(stage_sizes=(2, 1, 1, 1)), 1), "deep.h5", "keras")
  with pytest.raises(ConfigError, match="deep.h5 has layer conv2_block2/1_bn, which the model "
                                        "does not have"):
    fit_variables(deeper, _init(KerasResNetTiny(), 1))


def _fine_tune_config(**fields):
  config = config_lib.base_config("luna", "resnet")
  config.init_from = "somewhere"
  config.num_epochs = 1
  for key, value in fields.items():
    config[key] = value
  return config


def _steps(config, n=2):
  model = ResNetTiny(num_classes=2)
  tx, _ = optim.adam(config, 10)
  state = create_train_state(model, tx, jax.random.key(0), (SIZE, SIZE, 1))
  step = jax.jit(functools.partial(supervised.train_step, model=model, tx=tx,
                                   norm_train=not config.freeze_backbone))
  rng = np.random.default_rng(0)
  before = state
  for _ in range(n):
    batch = {"image": rng.integers(0, 256, (4, SIZE, SIZE, 1), dtype=np.uint8),
             "label": np.array([0, 1, 0, 1], np.int32)}
    state, _ = step(state, batch, jax.random.key(1))
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), before.params, state.params)
  stats_changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), before.batch_stats,
                               state.batch_stats)
  return changed, stats_changed


def test_a_frozen_backbone_trains_the_head_only():
  changed, stats_changed = _steps(_fine_tune_config(freeze_backbone=True))
  head = changed.pop("logits")
  assert all(jax.tree.leaves(head))
  assert not any(jax.tree.leaves(changed)) and not any(jax.tree.leaves(stats_changed))
  changed, stats_changed = _steps(_fine_tune_config(backbone_learning_rate=1e-5))
  assert all(jax.tree.leaves(changed)) and all(jax.tree.leaves(stats_changed))


def test_fine_tuning_fields_are_checked():
  with pytest.raises(ConfigError, match="freeze_backbone=True fine-tunes pretrained weights: "
                                        "set init_from too"):
    config = luna_resnet.get_config()
    config.freeze_backbone = True
    config_lib.resolve(config)
  with pytest.raises(ConfigError, match="drop backbone_learning_rate"):
    config_lib.resolve(_fine_tune_config(freeze_backbone=True, backbone_learning_rate=1e-5))
  for name, value in (("freeze_backbone", True), ("backbone_learning_rate", 1e-5)):
    with pytest.raises(ConfigError, match=f"{name}={value} fine-tunes with the supervised "
                                          "optimizer of cnn, resnet, dbn runs; the sgan has "
                                          "optimizers of its own"):
      config = luna_sgan.get_config()
      config.init_from = "runs/x"
      config[name] = value
      config_lib.resolve(config)
  with pytest.raises(ConfigError, match="resnet_variant must be one of"):
    config_lib.resolve(_fine_tune_config(resnet_variant="timm"))


@pytest.mark.parametrize("path, message", [
    ("w.h5", r"w.h5 is a Keras ResNet-50 weights file: set --config.resnet_variant=keras"),
    ("w.pth", r"w.pth is a torchvision ResNet-50 state_dict: it needs model_size='full'"),
    ("w.npz", r"init_from=w.npz: no such file or directory"),
])
def test_a_weights_file_for_another_model_is_refused_before_reading_it(path, message):
  config = config_lib.resolve(_fine_tune_config(init_from=path, model_size="tiny"))
  with pytest.raises(ConfigError, match=message):
    pretrained.load(config)


@pytest.mark.slow  # two smoke runs
def test_a_hip_run_starts_from_a_luna_run(finished_run, tmp_path):
  luna = finished_run("cnn")
  config = hip128_crop_cnn.get_config()
  config.smoke = True
  config.init_from = luna
  config.freeze_backbone = True
  results = runner.run(config, str(tmp_path / "hip"))
  summary = results["init_from"]
  assert summary["kind"] == "run" and summary["from"].startswith(f"run {luna} (epoch ")
  assert summary["new_head"] is None and summary["adapted_channels"] == []
  source, hip = restore(luna), restore(str(tmp_path / "hip"))
  for layer in ("conv0", "conv3", "dense"):  # the frozen backbone is the LUNA16 run's
    np.testing.assert_array_equal(hip.variables["params"][layer]["kernel"],
                                  source.variables["params"][layer]["kernel"])
  assert not np.array_equal(hip.variables["params"]["logits"]["kernel"],
                            source.variables["params"]["logits"]["kernel"])
  with open(os.path.join(tmp_path, "hip", "config.json")) as f:
    assert json.load(f)["init_from"] == luna
  # A run of another model is refused, naming what differs, before a workdir exists.
  config = luna_resnet.get_config()
  config.smoke = True
  config.init_from = luna
  with pytest.raises(ConfigError, match=r"is a run of another model: model='cnn' \(this run: "
                                        r"'resnet'\)"):
    runner.run(config, str(tmp_path / "resnet"))
  assert not os.path.exists(tmp_path / "resnet")
