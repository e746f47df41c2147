"""Several seeds trained in one vmapped step give each seed's single run, workdir for workdir."""

import csv
import json
import os
import shutil

import numpy as np
import pytest

from experiments import luna_cnn
from medjax import config as config_lib
from medjax import rundir, runner
from medjax.data import load_dataset
from medjax.train.registry import model_spec
from medjax.train.seeds import config_for_seed, train_seeds


pytestmark = pytest.mark.slow  # end-to-end training runs


def _probabilities(path):
  with open(path) as f:
    return np.array([float(row["prob_positive"]) for row in csv.DictReader(f)])


def _losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line)["train_loss"] for line in f]


def _config(**overrides):
  config = luna_cnn.get_config()
  config.smoke = True
  config.num_epochs = 2
  config.log_every = 4
  config.data.seed = 0
  config.data.max_train = 100
  config.data.max_test = 60
  for k, v in overrides.items():
    config[k] = v
  return config_lib.resolve(config)


@pytest.fixture(scope="module")
def single_runs(tmp_path_factory):
  """Seeds 0 and 1 of the tiny CNN, each trained alone on the split of data seed 0."""
  config = _config()
  dataset = load_dataset(config.dataset, config.data, config.data.seed)
  root = tmp_path_factory.mktemp("single")
  out = {}
  for seed in (0, 1):
    workdir = str(root / f"seed{seed}")
    c = config_for_seed(config, seed)
    out[seed] = (model_spec(c.model).train(c, workdir, dataset), workdir)
  return dataset, out


@pytest.mark.parametrize("device_resident", [False, True])
def test_stacked_seeds_train_what_each_seed_trains_alone(single_runs, tmp_path,
                                                         device_resident):
  _, single = single_runs
  config = _config(device_resident=device_resident)
  workdirs = [rundir.seed_workdir(str(tmp_path), s) for s in (0, 1)]
  results = runner.run_seeds(config, [0, 1], workdirs, stack=True)
  for seed, r, workdir in zip((0, 1), results, workdirs):
    alone, alone_dir = single[seed]
    assert r["seed"] == seed and r["stacked_seeds"] == [0, 1]
    with open(os.path.join(workdir, "config.json")) as f:
      assert json.load(f)["seed"] == seed
    np.testing.assert_allclose(_losses(workdir), _losses(alone_dir), rtol=1e-4)
    np.testing.assert_allclose(_probabilities(os.path.join(workdir, "predictions.csv")),
                               _probabilities(os.path.join(alone_dir, "predictions.csv")),
                               atol=1e-4)
    assert r["test"]["confusion_matrix"] == alone["test"]["confusion_matrix"]
    assert r["checkpoint"] == alone["checkpoint"]
  # The two seeds are different models.
  assert not np.allclose(_losses(workdirs[0]), _losses(workdirs[1]))
  if not device_resident:
    # The same seeds again: both restore their last epoch and nothing is retrained.
    again = runner.run_seeds(config, [0, 1], workdirs, stack=True)
    for a, b, workdir in zip(results, again, workdirs):
      assert a["test"] == b["test"] and len(_losses(workdir)) == 2


def test_seeds_at_different_epochs_resume_one_by_one(single_runs, tmp_path):
  dataset, single = single_runs
  workdirs = [str(tmp_path / "seed0"), str(tmp_path / "seed1")]
  # Seed 0 finished alone; seed 1 has not started: not in step, so each resumes on its own.
  shutil.copytree(single[0][1], workdirs[0])
  results = train_seeds(_config(), [0, 1], workdirs, dataset)
  for seed, r in zip((0, 1), results):
    assert "stacked_seeds" not in r
    assert r["test"]["confusion_matrix"] == single[seed][0]["test"]["confusion_matrix"]
  assert len(_losses(workdirs[0])) == 2  # seed 0 was not trained again


def test_bad_requests_are_refused(tmp_path):
  config = _config()
  with pytest.raises(ValueError, match="one workdir per distinct seed"):
    train_seeds(config, [0, 0], [str(tmp_path / "a"), str(tmp_path / "b")], None)
  dbn = config_lib.base_config("luna", "dbn")
  dbn.smoke = True
  with pytest.raises(ValueError, match="seeds of 'dbn' cannot train in one vmapped step"):
    train_seeds(config_lib.resolve(dbn), [0, 1], [str(tmp_path / "a"), str(tmp_path / "b")],
                None)


def test_seeds_run_one_by_one_on_cpu_by_default(single_runs, tmp_path):
  _, single = single_runs
  from medjax import platform
  assert not platform.stack_seeds_default()  # the test machine is a CPU
  workdirs = [rundir.seed_workdir(str(tmp_path), s) for s in (0, 1)]
  for seed, r in zip((0, 1), runner.run_seeds(_config(), [0, 1], workdirs)):
    assert "stacked_seeds" not in r
    assert r["test"]["confusion_matrix"] == single[seed][0]["test"]["confusion_matrix"]
