"""Compilation is counted where it happens: per run, per function, and out of an epoch's parts."""

import time

import jax
import jax.numpy as jnp

from medjax.train import compile_time, epoch_time


def _fresh_function(tag: float):
  """A jitted function no cache (in-process or persistent) has seen: a new constant each time."""
  def medjax_test_kernel(x):
    return jnp.tanh(x @ x.T + tag).sum()
  return jax.jit(medjax_test_kernel)


def test_a_run_counts_its_own_compilation_by_function():
  compile_time.begin_run()
  assert compile_time.summary()["compilations"] == 0
  before = compile_time.total()
  f = _fresh_function(time.time())
  f(jnp.ones((8, 8))).block_until_ready()
  s = compile_time.summary()
  assert compile_time.total() > before
  assert s["compilations"] >= 1 and s["seconds"] > 0
  assert s["seconds"] >= s["stages"]["xla"] > 0 and s["stages"]["trace"] > 0
  names = dict(s["slowest"])
  assert "medjax_test_kernel" in names  # traced and compiled under one name
  assert "compilation in this run" in compile_time.describe(s)
  f(jnp.ones((8, 8))).block_until_ready()  # already compiled: nothing more to count
  assert compile_time.summary()["compilations"] == s["compilations"]
  compile_time.begin_run()  # the next run starts from zero
  assert compile_time.summary()["seconds"] == 0 and compile_time.summary()["slowest"] == []


def test_an_epoch_books_compilation_apart_from_the_part_it_happened_in():
  clock = epoch_time.EpochClock()
  f = _fresh_function(time.time() + 1)
  with clock.timed("validation"):
    f(jnp.ones((8, 8))).block_until_ready()  # compiles
  with clock.timed("checks"):
    f(jnp.ones((8, 8))).block_until_ready()  # compiled already
  w = clock.close()
  assert w["overhead"]["compile"] > 0
  assert w["overhead"]["compile"] > w["overhead"]["validation"]  # the compile, not the run
  first = w["overhead"]["compile"] + w["overhead"]["validation"]
  assert w["overhead"]["checks"] < first
  # add() never books more compilation than the time it was given
  clock.add("steps", 0.5, compiled=2.0)
  w = clock.close()
  assert w["step_seconds"] == 0 and w["overhead"]["compile"] == 0.5


def test_the_train_state_is_built_by_one_jitted_function_with_the_eager_values():
  import numpy as np
  import optax
  from medjax.models import create_model
  from medjax.train.state import create_train_state, init_variables
  model, tx, shape = create_model("resnet", size="tiny", num_classes=2), optax.adam(1e-3), (
      37, 41, 1)  # a shape no other test compiles: init_state is compiled here
  compile_time.begin_run()
  state = create_train_state(model, tx, jax.random.key(7), shape)
  assert "init_state" in dict(compile_time.summary()["slowest"])
  params, batch_stats = init_variables(model, jax.random.key(7), shape)  # the eager reference
  reference = {"params": params, "batch_stats": batch_stats, "opt_state": tx.init(params)}
  built = {"params": state.params, "batch_stats": state.batch_stats,
           "opt_state": state.opt_state}
  assert jax.tree.structure(built) == jax.tree.structure(reference)
  for a, b in zip(jax.tree.leaves(built), jax.tree.leaves(reference)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # bit for bit


def test_the_cache_threshold_comes_from_the_environment_and_bad_values_are_errors(monkeypatch):
  import pytest

  from medjax import platform
  from medjax.errors import ConfigError
  try:
    monkeypatch.setenv("MEDJAX_JAX_CACHE_MIN_SECONDS", "0.25")
    platform.enable_compilation_cache()
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.25
    for bad in ("fast", "-1", "nan"):
      monkeypatch.setenv("MEDJAX_JAX_CACHE_MIN_SECONDS", bad)
      with pytest.raises(ConfigError, match="MEDJAX_JAX_CACHE_MIN_SECONDS"):
        platform.enable_compilation_cache()
    monkeypatch.delenv("MEDJAX_JAX_CACHE_MIN_SECONDS")
    platform.enable_compilation_cache()
    assert (jax.config.jax_persistent_cache_min_compile_time_secs
            == platform.CACHE_MIN_COMPILE_SECONDS)
  finally:
    monkeypatch.delenv("MEDJAX_JAX_CACHE_MIN_SECONDS", raising=False)
    platform.enable_compilation_cache()
