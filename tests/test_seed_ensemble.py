import json
import os

import numpy as np
import pytest

from medjax import rundir
from medjax.analysis import seed_ensemble
from medjax.analysis.restore import RestoredEnsemble, restore
from medjax.config import MODELS
from medjax.data import load_dataset
from medjax.errors import DataError


def _seed_run(path, seed, names, labels, probs):
  os.makedirs(path)
  rundir.write_predictions(os.path.join(path, "predictions.csv"), names, labels, probs)
  with open(os.path.join(path, "results.json"), "w") as f:
    json.dump({"experiment": "luna_cnn", "model": "cnn", "dataset": "luna", "synthetic": True,
               "seed": seed, "epochs": 3, "n_train": 100, "train_seconds": 1.5,
               "test": {"accuracy": 0.5}}, f)


def test_ensemble_predictions_are_exactly_the_mean_of_the_seeds(tmp_path):
  rng = np.random.default_rng(0)
  names = [f"img{i}" for i in range(50)]
  labels = (rng.uniform(size=50) < 0.3).astype(int)
  dirs = []
  for seed in range(3):
    d = str(tmp_path / f"seed{seed}")
    _seed_run(d, seed, names, labels, np.clip(labels * 0.6 + rng.uniform(0, 0.4, 50), 0, 1))
    dirs.append(d)
  results = seed_ensemble.write_seed_ensemble(dirs, str(tmp_path / "ensemble"))
  members = [rundir.read_predictions(os.path.join(d, "predictions.csv"))[2] for d in dirs]
  got_names, got_labels, got = rundir.read_predictions(
      str(tmp_path / "ensemble" / "predictions.csv"))
  assert got_names == names and list(got_labels) == list(labels)
  np.testing.assert_array_equal(got, np.mean(members, axis=0))  # exactly, every digit
  assert results["seeds"] == [0, 1, 2] and results["ensemble"] is True
  for key in ("accuracy", "accuracy_ci95", "auc", "sensitivity", "specificity",
              "confusion_matrix", "ece"):
    assert key in results["test"]
  on_disk = json.loads((tmp_path / "ensemble" / "results.json").read_text())
  assert on_disk["test"]["accuracy"] == results["test"]["accuracy"]


@pytest.mark.parametrize("names", [["a,b.png", 'q"uote.png', "new\nline.png", "plain.png"]])
def test_ensemble_of_images_whose_names_hold_commas_quotes_or_newlines(tmp_path, names):
  labels = np.array([0, 1, 0, 1])
  dirs = [str(tmp_path / f"seed{s}") for s in (0, 1)]
  for s, d in enumerate(dirs):
    _seed_run(d, s, names, labels, np.array([0.1, 0.9, 0.3, 0.7]) + s / 100)
  seed_ensemble.write_seed_ensemble(dirs, str(tmp_path / "ensemble"))
  got_names, got_labels, _ = rundir.read_predictions(str(tmp_path / "ensemble" /
                                                         "predictions.csv"))
  assert got_names == names and got_labels.tolist() == labels.tolist()


def test_a_member_whose_results_are_damaged_or_diverged_is_refused_naming_it(tmp_path):
  from medjax.errors import WorkdirError
  dirs = [str(tmp_path / f"seed{s}") for s in (0, 1)]
  for s, d in enumerate(dirs):
    _seed_run(d, s, ["a", "b"], [0, 1], [0.2, 0.8])
  results = os.path.join(dirs[1], "results.json")
  with open(results, "w") as f:
    f.write('{"seed": 1, "test": {"accuracy": NaN}}')
  with pytest.raises(WorkdirError, match=f"{results}: test.accuracy = nan"):
    seed_ensemble.write_seed_ensemble(dirs, str(tmp_path / "ensemble"))
  with open(results, "w") as f:
    f.write('{"seed": 1, "te')
  with pytest.raises(WorkdirError, match=f"{results}: damaged"):
    seed_ensemble.write_seed_ensemble(dirs, str(tmp_path / "ensemble"))


def test_seeds_tested_on_different_examples_are_refused(tmp_path):
  _seed_run(str(tmp_path / "a"), 0, ["x", "y"], [0, 1], [0.1, 0.9])
  _seed_run(str(tmp_path / "b"), 1, ["x", "z"], [0, 1], [0.2, 0.8])
  with pytest.raises(DataError, match="other examples"):
    seed_ensemble.write_seed_ensemble([str(tmp_path / "a"), str(tmp_path / "b")],
                                      str(tmp_path / "ens"))


@pytest.mark.slow  # an end-to-end training run per model
@pytest.mark.parametrize("model", MODELS)
def test_an_ensemble_of_each_model_restores_its_members(finished_ensemble, model):
  workdir = finished_ensemble(model)
  run = restore(workdir)
  assert isinstance(run, RestoredEnsemble) and len(run.members) == 2
  assert [m.config.model for m in run.members] == [model, model]
  assert run.config.experiment == f"luna_{model}" and run.synthetic
  names, _, probs = rundir.read_predictions(os.path.join(workdir, "predictions.csv"))
  test = load_dataset(run.config.dataset, run.config.data, run.config.data.seed).test
  assert [str(n) for n in test.names] == names
  np.testing.assert_allclose(run.predict(test.images), probs, atol=1e-5)
