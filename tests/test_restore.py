import csv
import json
import os
import shutil

import numpy as np
import pytest

from medjax.analysis.restore import load_config, restore
from medjax.config import MODELS
from medjax.data import load_dataset
from medjax.errors import WorkdirError

pytestmark = pytest.mark.slow  # end-to-end training runs


@pytest.fixture
def cnn_run(finished_run):
  return finished_run("cnn")


@pytest.mark.parametrize("model", MODELS)
def test_restore_reproduces_the_run_predictions(finished_run, model):
  workdir = finished_run(model)
  run = restore(workdir)
  with open(os.path.join(workdir, "results.json")) as f:
    assert run.epoch == json.load(f)["checkpoint"]["epoch"]
  assert run.config.experiment == f"luna_{model}" and run.config.smoke and run.synthetic
  assert run.image_shape == (50, 50, 1)
  with open(os.path.join(workdir, "predictions.csv")) as f:
    rows = list(csv.DictReader(f))[:40]
  dataset = load_dataset(run.config.dataset, run.config.data, run.config.data.seed)
  assert [str(n) for n in dataset.test.names[:40]] == [r["name"] for r in rows]
  probs = run.predict(dataset.test.images[:40], batch_size=16)
  np.testing.assert_allclose(probs, [float(r["prob_positive"]) for r in rows], atol=1e-5)
  # Float images in [0, 1] are the same input as uint8 0..255.
  as_float = dataset.test.images[:4].astype(np.float32) / 255.0
  np.testing.assert_allclose(run.logits(as_float), run.logits(dataset.test.images[:4]),
                             atol=1e-5)


def test_load_config_is_the_saved_config(cnn_run):
  config = load_config(cnn_run)
  with open(os.path.join(cnn_run, "config.json")) as f:
    saved = json.load(f)
  assert json.loads(config.to_json_best_effort()) == saved
  with pytest.raises(AttributeError):
    config.new_field = 1  # locked


def test_missing_pieces_are_workdir_errors(cnn_run, tmp_path):
  with pytest.raises(WorkdirError, match="is not a directory"):
    restore(str(tmp_path / "nowhere"))
  with pytest.raises(WorkdirError, match="config.json is missing"):
    restore(str(tmp_path))

  unfinished = tmp_path / "unfinished"
  unfinished.mkdir()
  shutil.copy(os.path.join(cnn_run, "config.json"), unfinished)
  with pytest.raises(WorkdirError, match="results.json is missing.*not finished"):
    restore(str(unfinished))

  shutil.copy(os.path.join(cnn_run, "results.json"), unfinished)
  with pytest.raises(WorkdirError, match="checkpoints is missing"):
    restore(str(unfinished))

  other = tmp_path / "other_epoch"
  shutil.copytree(cnn_run, other, ignore=shutil.ignore_patterns(".lock"))
  with open(other / "results.json") as f:
    results = json.load(f)
  results["checkpoint"]["epoch"] = 7
  with open(other / "results.json", "w") as f:
    json.dump(results, f)
  with pytest.raises(WorkdirError, match=r"checkpoints/7 is missing: results.json tested "
                                         r"epoch 7, the checkpoints hold epochs \[1\]"):
    restore(str(other))
