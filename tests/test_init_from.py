"""Every model starts from a finished run of its own (`config.init_from`): the DBN from a DBN
run without pretraining, the SGAN from an SGAN run with its discriminator and generator; a run
of another model or architecture is refused, naming what differs.

The sources are the session's 1-epoch luna smoke runs (`finished_run` in conftest.py); each test
checks the state a run starts from against the source's tested checkpoint, taken where
`medjax.train.transfer` hands it to the trainer, before the first step.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import luna_dbn, luna_sgan
from medjax import runner
from medjax.analysis.restore import restore
from medjax.errors import ConfigError
from medjax.models import DBNTiny, DiscriminatorTiny, GeneratorTiny
from medjax.train import rbm as rbm_lib
from medjax.train import sgan, transfer
from medjax.train.transfer import Pretrained, fit_variables


def _smoke(experiment, **fields):
  config = experiment.get_config()
  config.smoke = True
  for name, value in fields.items():
    config[name] = value
  return config


def _started(monkeypatch, name: str) -> list:
  """The states `transfer.<name>` returns to the trainer (host copies: training donates them)."""
  states, real = [], getattr(transfer, name)

  def spy(*args, **kwargs):
    state, summary = real(*args, **kwargs)
    states.append(jax.device_get(state))
    return state, summary

  monkeypatch.setattr(transfer, name, spy)
  return states


def _assert_same(got, want):
  """The same parameter paths, every array exactly equal."""
  got, want = (jax.tree_util.tree_leaves_with_path(t) for t in (got, want))
  assert [path for path, _ in got] == [path for path, _ in want]
  for (path, a), (_, b) in zip(got, want):
    np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


@pytest.mark.slow  # two smoke runs
def test_a_dbn_run_starts_from_a_dbn_runs_weights_without_pretraining(finished_run, tmp_path,
                                                                      monkeypatch):
  source = finished_run("dbn")
  started = _started(monkeypatch, "initialize")

  def no_pretraining(*args, **kwargs):
    raise AssertionError("a DBN started from a DBN run should not pretrain")

  monkeypatch.setattr(rbm_lib, "train_epoch", no_pretraining)
  workdir = str(tmp_path / "dbn")
  results = runner.run(_smoke(luna_dbn, init_from=source, freeze_backbone=True), workdir)
  summary = results["init_from"]
  assert summary["kind"] == "run" and summary["from"].startswith(f"run {source} (epoch ")
  assert summary["new_head"] is None and summary["adapted_channels"] == []
  assert results["pretrain"] is None and not os.path.exists(os.path.join(workdir, "pretrain"))
  # The first step starts from the source's tested checkpoint: every layer, the input
  # standardisation and the softmax layer, with a fresh optimizer.
  want = restore(source).variables["params"]
  (state,) = started
  _assert_same(state.params, want)
  assert int(state.step) == 0
  # The frozen hidden layers are still the source's after training; the softmax layer trained.
  trained = restore(workdir).variables["params"]
  for layer in ("shift", "scale", "hidden_0", "hidden_1"):
    _assert_same(trained[layer], want[layer])
  assert not np.array_equal(trained["logits"]["kernel"], want["logits"]["kernel"])


@pytest.mark.slow  # two smoke runs
def test_an_sgan_run_starts_from_an_sgan_runs_discriminator_and_generator(finished_run,
                                                                          tmp_path, monkeypatch):
  source = finished_run("sgan")
  started = _started(monkeypatch, "initialize_sgan")
  workdir = str(tmp_path / "sgan")
  results = runner.run(_smoke(luna_sgan, init_from=source), workdir)
  summary = results["init_from"]
  assert summary["kind"] == "run" and summary["from"].startswith(f"run {source} (epoch ")
  assert summary["networks"] == ["discriminator", "generator"]
  assert summary["new_head"] is None and summary["adapted_channels"] == []
  want = restore(source, keep_state=True).state
  (state,) = started
  _assert_same(state.d_params, want.d_params)
  _assert_same(state.g_params, want.g_params)
  assert int(state.step) == 0
  assert not any(np.any(leaf) for leaf in jax.tree.leaves((state.d_opt_state, state.g_opt_state))
                 if np.ndim(leaf) > 0)  # fresh Adam moments
  trained = restore(workdir, keep_state=True).state
  assert not np.array_equal(trained.g_params["seed"]["kernel"], want.g_params["seed"]["kernel"])


@pytest.mark.slow  # the source runs
@pytest.mark.parametrize("model, experiment, other", [("dbn", luna_dbn, "sgan"),
                                                       ("sgan", luna_sgan, "dbn")])
def test_a_run_of_another_model_is_refused_before_a_workdir_exists(finished_run, tmp_path, model,
                                                                   experiment, other):
  workdir = tmp_path / model
  with pytest.raises(ConfigError, match=rf"is a run of another model: model='{other}' "
                                        rf"\(this run: '{model}'\)"):
    runner.run(_smoke(experiment, init_from=finished_run(other)), str(workdir))
  assert not workdir.exists()


@pytest.mark.slow  # the source runs
def test_a_run_of_another_architecture_names_the_field(finished_run, tmp_path):
  config = _smoke(luna_dbn, init_from=finished_run("dbn"))
  config.dbn.tiny_hidden = (16, 8)
  with pytest.raises(ConfigError, match=r"model: dbn.tiny_hidden=\(32, 16\) \(this run: "
                                        r"\(16, 8\)\)"):
    runner.run(config, str(tmp_path / "dbn"))
  config = _smoke(luna_sgan, init_from=finished_run("sgan"))
  config.sgan.features, config.sgan.latent_dim = 4, 10
  with pytest.raises(ConfigError, match=r"model: sgan.features=8 \(this run: 4\), "
                                        r"sgan.latent_dim=100 \(this run: 10\)"):
    runner.run(config, str(tmp_path / "sgan"))
  assert not os.listdir(tmp_path)


def _sgan_state(size, seed=0):
  """A tiny SGAN's state for `size` x `size` images."""
  tx = optax.adam(1e-3)
  return sgan.create_state(GeneratorTiny(image_shape=(size, size, 1)), DiscriminatorTiny(), tx,
                           tx, jax.random.key(seed), (size, size, 1), 100)


def test_an_sgan_of_another_image_size_names_the_layer():
  """The discriminator's head reads its flattened maps: the same two classes on another image
  size are another model's weights, not a head to replace; the generator's seed layer likewise."""
  small, large = _sgan_state(50), _sgan_state(64, seed=1)
  tx = optax.adam(1e-3)
  with pytest.raises(ConfigError, match=r"run x: layer logits has kernel of shape \(392, 2\), "
                                        r"the model's is \(512, 2\)"):
    transfer.initialize_sgan(large, tx, tx, Pretrained(
        {"params": small.d_params}, "run x", "run", generator={"params": small.g_params}))
  with pytest.raises(ConfigError, match=r"run x, generator: layer seed has bias of shape "
                                        r"\(1352,\), the model's is \(2048,\)"):
    transfer.initialize_sgan(large, tx, tx, Pretrained(
        {"params": large.d_params}, "run x", "run", generator={"params": small.g_params}))
  with pytest.raises(ConfigError, match="w.pth has no generator: an SGAN starts from a finished "
                                        "SGAN run's workdir"):
    transfer.initialize_sgan(large, tx, tx, Pretrained({"params": large.d_params}, "w.pth",
                                                       "run"))


def test_a_dbn_of_another_image_size_names_the_layer_or_the_input_transform():
  small = DBNTiny().init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
  large = DBNTiny().init(jax.random.key(0), jnp.zeros((1, 10, 10, 1)))
  with pytest.raises(ConfigError, match=r"run x: layer hidden_0 has kernel of shape \(64, 32\), "
                                        r"the model's is \(100, 32\)"):
    fit_variables(Pretrained(small, "run x", "run"), large)
  # The per-pixel standardisation is a parameter of the model itself, named as such.
  with pytest.raises(ConfigError, match=r"run x: shift has shape \(64,\), the model's is "
                                        r"\(100,\)"):
    fit_variables(Pretrained({"params": {"shift": small["params"]["shift"]}}, "run x", "run"),
                  {"params": {"shift": large["params"]["shift"]}})
