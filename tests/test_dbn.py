import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings, strategies as st

from experiments import luna_dbn
from medjax import config as config_lib
from medjax import runner
from medjax.models import DBN, DBNTiny, create_model
from medjax.models.rbm import dbn_params_from_stack, init_rbm
from medjax.train import dbn as dbn_lib
from medjax.train import rbm as rbm_lib
from medjax.train import supervised
from medjax.train.state import create_train_state, init_variables


@settings(max_examples=10, deadline=None)
@given(batch=st.integers(1, 6), height=st.integers(1, 130), width=st.integers(1, 130),
       channels=st.integers(1, 4), classes=st.integers(2, 6))
def test_output_shape_any_input(batch, height, width, channels, classes):
  model = DBN(num_classes=classes)
  x = jax.ShapeDtypeStruct((batch, height, width, channels), jnp.float32)
  variables = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), x)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, train=True), variables, x)
  assert out.shape == (batch, classes) and out.dtype == jnp.float32
  params = variables["params"]
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  assert params["hidden_0"]["kernel"].shape == (height * width * channels, 1500)
  assert [params[f"hidden_{i}"]["kernel"].shape[1] for i in range(4)] == [1500, 1000, 500, 200]


def test_registry_and_bfloat16_compute():
  assert isinstance(create_model("dbn"), DBN)
  tiny = create_model("dbn", size="tiny", dtype="bfloat16")
  assert tuple(tiny.hidden) == (32, 16) and tiny.dtype == jnp.bfloat16
  x = jax.random.uniform(jax.random.key(0), (3, 20, 20, 1))
  variables = jax.jit(DBNTiny().init)(jax.random.key(1), x)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  ref = jax.jit(DBNTiny().apply)(variables, x)
  out = jax.jit(tiny.apply)(variables, x)
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, ref, atol=0.05, rtol=0.05)


@pytest.mark.slow
def test_stack_conversion_reproduces_rbm_hidden_probabilities():
  model = DBN(hidden=(12, 6))
  x = jax.random.uniform(jax.random.key(0), (4, 5, 5, 2))
  v = x.reshape(4, -1)
  shift, scale = jnp.mean(v, 0), 1.0 / (jnp.std(v, 0) + 0.1)
  stack = [init_rbm(jax.random.key(1), 50, 12, gaussian=True, scale=0.3),
           init_rbm(jax.random.key(2), 12, 6, scale=0.3)]
  params, _ = init_variables(model, jax.random.key(3), (5, 5, 2))
  params = dbn_params_from_stack(stack, params, shift=shift, scale=scale)
  apply = jax.jit(functools.partial(model.apply, capture_intermediates=True))
  _, inter = apply({"params": params}, x)
  h = stack[1].hidden_probs(stack[0].hidden_probs((v - shift) * scale))
  # hidden_1 (a Dense) returns the pre-activation of the second sigmoid layer.
  top = inter["intermediates"]["hidden_1"]["__call__"][0]
  np.testing.assert_allclose(jax.nn.sigmoid(top), h, rtol=1e-5, atol=1e-6)
  with pytest.raises(ValueError, match="expects"):
    dbn_params_from_stack(stack[::-1], params)


def test_fine_tuning_leaves_the_input_transform_fixed():
  model, tx = DBNTiny(), optax.adam(1e-2)
  state = create_train_state(model, tx, jax.random.key(0), (8, 8, 1))
  params = dict(state.params, shift=jnp.full((64,), 0.5), scale=jnp.full((64,), 2.0))
  state = state.replace(params=params, opt_state=tx.init(params))
  step = jax.jit(functools.partial(supervised.train_step, model=model, tx=tx))
  rng = np.random.default_rng(0)
  batch = {"image": rng.integers(0, 255, (8, 8, 8, 1)).astype(np.uint8),
           "label": rng.integers(0, 2, 8).astype(np.int32)}
  new, _ = step(state, batch, jax.random.key(1))
  np.testing.assert_array_equal(new.params["shift"], params["shift"])
  np.testing.assert_array_equal(new.params["scale"], params["scale"])
  assert not np.allclose(new.params["hidden_0"]["kernel"], params["hidden_0"]["kernel"])


def test_input_transform_and_tiny_sizes():
  x = np.random.default_rng(0).random((50, 6)).astype(np.float32)
  x[:, 0] = 0.3  # a constant pixel
  shift, scale = dbn_lib.input_transform(x, gaussian=True)
  z = (x - shift) * scale
  np.testing.assert_allclose(z.mean(0), 0, atol=1e-4)
  np.testing.assert_allclose(z[:, 1:].std(0), 1, rtol=1e-4)
  assert np.isfinite(scale).all()
  shift, scale = dbn_lib.input_transform(x, gaussian=False)
  assert (shift == 0).all() and (scale == 1).all()
  config = config_lib.resolve(dict_config(smoke=True))
  assert dbn_lib.layer_sizes(config) == ((32, 16), 1)
  assert dbn_lib.layer_sizes(config_lib.resolve(dict_config())) == ((1500, 1000, 500, 200), 10)


def dict_config(**overrides):
  config = luna_dbn.get_config()
  for k, v in overrides.items():
    config[k] = v
  return config


@pytest.mark.slow
def test_smoke_run_writes_results_and_reuses_the_pretrained_stack(tmp_path, monkeypatch):
  config = luna_dbn.get_config()
  config.smoke = True
  workdir = str(tmp_path / "run")
  results = runner.run(config, workdir)
  with open(os.path.join(workdir, "results.json")) as f:
    on_disk = json.load(f)
  assert on_disk == json.loads(json.dumps(results))
  assert on_disk["experiment"] == "luna_dbn" and on_disk["model"] == "dbn"
  test = on_disk["test"]
  (tn, fp), (fn, tp) = test["confusion_matrix"]
  assert tn + fp + fn + tp == on_disk["n_test"]
  assert test["accuracy"] == pytest.approx((tn + tp) / on_disk["n_test"])
  assert [l["n_hidden"] for l in on_disk["pretrain"]["layers"]] == [32, 16]
  pretrain = os.path.join(workdir, "pretrain")
  assert sorted(os.listdir(pretrain)) == ["input.npz", "layer_0.npz", "layer_1.npz",
                                          "metrics.jsonl"]
  records = [json.loads(l) for l in open(os.path.join(pretrain, "metrics.jsonl"))]
  assert [(r["layer"], r["epoch"]) for r in records] == [(0, 1), (1, 1)]
  assert all(np.isfinite(r["recon_error"]) for r in records)
  with np.load(os.path.join(pretrain, "layer_0.npz")) as f:
    assert f["w"].shape == (50 * 50, 32) and bool(f["gaussian"])

  def no_training(*args, **kwargs):
    raise AssertionError("the finished pretraining should have been reused")

  monkeypatch.setattr(rbm_lib, "train_epoch", no_training)
  again = runner.run(config, workdir)
  assert again["test"] == results["test"]
  assert again["pretrain"] == results["pretrain"]


def test_diverging_pretraining_stops_naming_layer_and_epoch():
  from medjax.train import dbn
  from medjax.train.driver import NonFiniteLossError
  fine = {"recon_error": 0.9, "free_energy": -12.0}
  dbn.check_pretraining(fine, baseline=1.0, name="RBM 1/4", epoch=3, field="dbn.x")
  with pytest.raises(NonFiniteLossError, match=r"RBM 1/4 .*diverged at epoch 3: reconstruction "
                     r"error 5\.8e\+18.*lower dbn\.gaussian_learning_rate"):
    dbn.check_pretraining({"recon_error": 5.8e18, "free_energy": 1.0}, baseline=1.0,
                          name="RBM 1/4 (2500 -> 1500)", epoch=3,
                          field="dbn.gaussian_learning_rate")
  with pytest.raises(NonFiniteLossError, match="non-finite free_energy at epoch 2"):
    dbn.check_pretraining({"recon_error": 0.5, "free_energy": float("nan")}, baseline=1.0,
                          name="RBM 2/4", epoch=2, field="dbn.pretrain_learning_rate")


@pytest.mark.slow
def test_a_diverging_learning_rate_stops_the_run_before_results(tmp_path):
  from medjax.train.driver import NonFiniteLossError
  config = luna_dbn.get_config()
  config.smoke = True
  config.dbn.gaussian_learning_rate = 1e4
  with pytest.raises(NonFiniteLossError, match=r"pretrain RBM 1/2 .* at epoch 1"):
    runner.run(config, str(tmp_path / "run"))
  assert not (tmp_path / "run" / "results.json").exists()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing_key", "nan"])
def test_a_damaged_pretrained_layer_file_is_one_error_naming_it(tmp_path, damage):
  from medjax.errors import WorkdirError
  from medjax.train import dbn
  path = tmp_path / "layer_0.npz"
  arrays = {"w": np.ones((4, 3), np.float32), "b_visible": np.zeros(4, np.float32),
            "b_hidden": np.zeros(3, np.float32), "gaussian": False, "seconds": 1.0}
  if damage == "missing_key":
    del arrays["b_hidden"]
  if damage == "nan":
    arrays["w"][0, 0] = np.nan
  np.savez(path, **arrays)
  if damage == "garbage":
    path.write_bytes(b"\x00garbage")
  if damage == "truncated":
    path.write_bytes(path.read_bytes()[:100])
  with pytest.raises(WorkdirError, match=f"{path}: damaged pretrained layer") as err:
    dbn._load_layer(str(path), 4, 3, gaussian=False)
  assert "delete it" in str(err.value)
