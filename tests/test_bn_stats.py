"""Precise BN (`medjax.train.bn_stats`): the estimate is BatchNorm's own batch statistics,
averaged; inference with it reproduces training mode on that batch; a run saves it."""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from medjax import config as config_lib
from medjax.data import Split
from medjax.errors import ConfigError
from medjax.models import create_model
from medjax.train import bn_stats
from medjax.train.state import create_train_state


class TwoNorms(nn.Module):
  """Two BatchNorms of different momenta around a convolution, as in a ResNet block."""

  @nn.compact
  def __call__(self, x, *, train: bool = False):
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="first")(x)
    x = nn.Conv(3, (3, 3))(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.99, name="second")(x)
    return x.mean((1, 2))


def _split(n=24, size=8, channels=2, seed=0):
  rng = np.random.default_rng(seed)
  images = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
  return Split(images=images, labels=np.arange(n) % 2, names=np.arange(n).astype(str))


def _state(model, shape, seed=0):
  import optax
  return create_train_state(model, optax.adam(1e-3), jax.random.key(seed), shape)


def test_estimate_is_the_mean_of_each_batchs_statistics():
  split = _split()
  model = TwoNorms()
  state = _state(model, split.images.shape[1:])
  # Running statistics far from the data: the estimate must not depend on them.
  state = state.replace(batch_stats=jax.tree.map(lambda a: a + 7.0, state.batch_stats))
  refresh = bn_stats.Refresher(model, split, batch_size=6, num_batches=3, seed=1)
  got = refresh(state).batch_stats
  # Reference for the first BatchNorm: its input is the image itself.
  batches = refresh.images.astype(np.float64) / 255.0
  mean = batches.mean(axis=(1, 2, 3)).mean(0)
  var = batches.var(axis=(1, 2, 3)).mean(0)
  np.testing.assert_allclose(got["first"]["mean"], mean, rtol=1e-5)
  np.testing.assert_allclose(got["first"]["var"], var, rtol=1e-4)
  # The second (momentum 0.99): the convolution's output under each batch's own normalisation.
  ref_means, ref_vars = [], []
  for b in batches:
    x = (b - b.mean((0, 1, 2))) / np.sqrt(b.var((0, 1, 2)) + 1e-5)
    x = x * np.asarray(state.params["first"]["scale"]) + np.asarray(state.params["first"]["bias"])
    y = np.asarray(nn.Conv(3, (3, 3)).apply({"params": state.params["Conv_0"]},
                                            jnp.asarray(x, jnp.float32)), np.float64)
    ref_means.append(y.mean((0, 1, 2)))
    ref_vars.append(y.var((0, 1, 2)))
  np.testing.assert_allclose(got["second"]["mean"], np.mean(ref_means, 0), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(got["second"]["var"], np.mean(ref_vars, 0), rtol=1e-3)
  # Nothing else in the state changes.
  new = refresh(state)
  assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), new.params,
                                          state.params)))
  assert int(new.step) == int(state.step)


def test_resnet_inference_after_one_batch_equals_training_mode_on_it():
  """With the statistics of batch X, inference on X computes what training mode computes on X:
  the stale moving averages, however far off, no longer matter."""
  split = _split(n=8, size=32, channels=1)
  model = create_model("resnet", size="tiny")
  state = _state(model, split.images.shape[1:])
  state = state.replace(batch_stats=jax.tree.map(lambda a: a * 3.0 + 0.5, state.batch_stats))
  refresh = bn_stats.Refresher(model, split, batch_size=8, num_batches=1, seed=0)
  x = jnp.asarray(refresh.images[0], jnp.float32) / 255.0
  train_logits, _ = model.apply({"params": state.params, "batch_stats": state.batch_stats}, x,
                                train=True, mutable=["batch_stats"])
  stale = model.apply({"params": state.params, "batch_stats": state.batch_stats}, x)
  new = refresh(state)
  fresh = model.apply({"params": new.params, "batch_stats": new.batch_stats}, x)
  np.testing.assert_allclose(fresh, train_logits, rtol=1e-3, atol=1e-4)
  assert not np.allclose(stale, train_logits, rtol=1e-3, atol=1e-4)


def test_stacked_states_are_refreshed_one_model_each():
  split = _split(n=12, size=32, channels=1)
  model = create_model("resnet", size="tiny")
  states = [_state(model, split.images.shape[1:], seed=s) for s in (0, 1)]
  stacked = jax.tree.map(lambda *a: jnp.stack(a), *states)
  one = bn_stats.Refresher(model, split, batch_size=4, num_batches=2, seed=3)
  both = bn_stats.Refresher(model, split, batch_size=4, num_batches=2, seed=3, stacked=True)
  got = both(stacked).batch_stats
  for i, s in enumerate(states):
    want = one(s).batch_stats
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g[i], w, rtol=1e-4, atol=1e-5),
                 got, want)


def test_batches_beyond_the_training_set_are_capped_and_said(caplog):
  split = _split(n=10)
  with caplog.at_level("INFO"):
    refresh = bn_stats.Refresher(TwoNorms(), split, batch_size=4, num_batches=9, seed=0)
  assert refresh.num_batches == 2 and "using 2" in caplog.text
  with pytest.raises(ValueError, match="no batch"):
    bn_stats.Refresher(TwoNorms(), _split(n=3), batch_size=4, num_batches=1, seed=0)


def test_a_model_without_batchnorm_is_refused():
  split = _split(n=8, size=50, channels=1)
  model = create_model("cnn", size="tiny")
  refresh = bn_stats.Refresher(model, split, batch_size=4, num_batches=1, seed=0)
  with pytest.raises(ValueError, match="no BatchNorm"):
    refresh(_state(model, split.images.shape[1:]))


@pytest.mark.parametrize("fields, match", [
    ({"bn_stats_batches": -1}, "bn_stats_batches must be an int >= 0"),
    ({"bn_stats_batches": True}, "bn_stats_batches must be an int >= 0, got True"),
    ({"bn_stats_batches": 2, "model": "cnn"}, "the cnn has no BatchNorm"),
    ({"bn_stats_batches": 2, "freeze_backbone": True, "init_from": "/x"}, "freeze_backbone"),
])
def test_config_refuses_what_cannot_work(fields, match):
  import importlib
  model = fields.pop("model", "resnet")
  config = importlib.import_module(f"experiments.luna_{model}").get_config()
  for k, v in fields.items():
    config[k] = v
  with pytest.raises(ConfigError, match=match):
    config_lib.resolve(config)


def test_a_run_validates_and_saves_the_reestimated_statistics(tmp_path):
  import importlib
  from medjax import runner
  from medjax.analysis.restore import restore
  config = importlib.import_module("experiments.luna_resnet").get_config()
  config.smoke = True
  config.num_epochs = 1
  config.bn_stats_batches = 2
  runner.run(config, str(tmp_path))
  record = json.loads(open(os.path.join(tmp_path, "metrics.jsonl")).readline())
  assert record["overhead"]["bn_stats"] > 0
  run = restore(str(tmp_path))
  data = runner.load_data(run.config)
  refresh = bn_stats.Refresher(run.model, data.train, batch_size=run.config.batch_size,
                               num_batches=2, seed=run.config.seed)

  want = refresh.estimate(run.variables["params"], run.variables["batch_stats"])
  jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6),
               run.variables["batch_stats"], want)


def test_non_finite_statistics_stop_the_run_before_validation(tmp_path, monkeypatch):
  """Statistics that overflow are never validated or saved: the run stops naming them."""
  import importlib
  from medjax import runner
  from medjax.train.driver import NonFiniteLossError
  real = bn_stats.Refresher.__call__

  def overflowing(self, state):
    state = real(self, state)
    return state.replace(batch_stats=jax.tree.map(lambda a: a * jnp.inf, state.batch_stats))
  monkeypatch.setattr(bn_stats.Refresher, "__call__", overflowing)
  config = importlib.import_module("experiments.luna_resnet").get_config()
  config.smoke = True
  config.num_epochs = 1
  config.bn_stats_batches = 1
  with pytest.raises(NonFiniteLossError, match="non-finite BatchNorm statistics re-estimated "
                                               "after epoch 1"):
    runner.run(config, str(tmp_path))
  assert not os.path.exists(os.path.join(tmp_path, "results.json"))
  assert not os.path.exists(os.path.join(tmp_path, "metrics.jsonl")) or not open(
      os.path.join(tmp_path, "metrics.jsonl")).read().strip()
