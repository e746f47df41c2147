import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import luna_cnn, luna_resnet
from medjax import config as config_lib
from medjax import platform, runner
from medjax.errors import ConfigError, WorkdirError

pytestmark = pytest.mark.slow  # end-to-end training runs


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _probabilities(path):
  with open(path) as f:
    return np.array([float(row["prob_positive"]) for row in csv.DictReader(f)])


def _check_results(results, workdir, experiment):
  with open(os.path.join(workdir, "results.json")) as f:
    on_disk = json.load(f)
  assert on_disk == json.loads(json.dumps(results))
  for key in ("experiment", "model", "dataset", "synthetic", "seed", "epochs", "n_train",
              "n_test", "test", "train_seconds", "train_images_per_second"):
    assert key in on_disk, key
  assert on_disk["experiment"] == experiment and on_disk["synthetic"] is True
  assert on_disk["host"] == platform.host() and on_disk["host"]["cpu_count"] >= 1
  test = on_disk["test"]
  (tn, fp), (fn, tp) = test["confusion_matrix"]
  assert tn + fp + fn + tp == on_disk["n_test"]
  assert test["accuracy"] == pytest.approx((tn + tp) / on_disk["n_test"])
  assert test["sensitivity"] == pytest.approx(tp / (tp + fn))
  assert test["specificity"] == pytest.approx(tn / (tn + fp))
  assert test["accuracy_ci95"][0] <= test["accuracy"] <= test["accuracy_ci95"][1]
  for name in ("config.json", "metrics.jsonl", "predictions.csv", "confusion_matrix.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name


@pytest.mark.parametrize("module", [luna_cnn, luna_resnet])
def test_smoke_run_writes_valid_results(module, tmp_path):
  config = module.get_config()
  config.smoke = True
  config.num_epochs = 2
  workdir = str(tmp_path / "run")
  results = runner.run(config, workdir)
  _check_results(results, workdir, config.experiment)
  lines = open(os.path.join(workdir, "metrics.jsonl")).read().splitlines()
  assert [json.loads(l)["epoch"] for l in lines] == [1, 2]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints")))  # orbax steps exist

  # Re-running the finished run resumes: no epoch is trained again, same test result.
  again = runner.run(config, workdir)
  assert open(os.path.join(workdir, "metrics.jsonl")).read().splitlines() == lines
  assert again["test"] == results["test"]

  # Another config in the same workdir is refused, naming the difference.
  config.learning_rate = 1e-3
  with pytest.raises(WorkdirError, match="learning_rate: 0.0001 -> 0.001"):
    runner.run(config, workdir)


def test_interrupted_run_resumes_to_the_same_result(tmp_path, monkeypatch):
  from medjax.train.epoch import DeviceEpochs
  config = luna_cnn.get_config()
  config.smoke = True
  config.num_epochs = 3
  config.log_every = 4  # 10 steps per epoch -> 3 chunks
  config.device_resident = True
  straight = runner.run(config, str(tmp_path / "straight"))

  real_run = DeviceEpochs.run

  def interrupted(self, state, epoch, *args):
    for i, out in enumerate(real_run(self, state, epoch, *args)):
      if epoch == 3 and i == 1:
        raise KeyboardInterrupt  # dies in the middle of epoch 3
      yield out

  monkeypatch.setattr(DeviceEpochs, "run", interrupted)
  workdir = str(tmp_path / "resumed")
  with pytest.raises(KeyboardInterrupt):
    runner.run(config, workdir)
  monkeypatch.setattr(DeviceEpochs, "run", real_run)
  resumed = runner.run(config, workdir)
  assert resumed["test"] == straight["test"]
  epochs = [json.loads(l)["epoch"] for l in open(os.path.join(workdir, "metrics.jsonl"))]
  assert epochs == [1, 2, 3]


def test_device_resident_epochs_train_the_same_model_as_host_batches(tmp_path):
  config = luna_cnn.get_config()
  config.smoke = True
  config.num_epochs = 2
  config.log_every = 4
  config.device_resident = True
  on_device = runner.run(config, str(tmp_path / "device"))
  config.device_resident = False
  on_host = runner.run(config, str(tmp_path / "host"))
  assert on_device["test"]["confusion_matrix"] == on_host["test"]["confusion_matrix"]
  dev, host = (_probabilities(tmp_path / d / "predictions.csv") for d in ("device", "host"))
  np.testing.assert_allclose(dev, host, atol=2e-6)
  losses = [[json.loads(l)["train_loss"] for l in open(tmp_path / d / "metrics.jsonl")]
            for d in ("device", "host")]
  np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)


@pytest.fixture(scope="module")
def learned(tmp_path_factory):
  """The full CNN trained 8 epochs on the embedded synthetic data, in float32 and bfloat16."""
  out = {}
  for dtype in ("float32", "bfloat16"):
    config = luna_cnn.get_config()
    config.num_epochs = 8
    config.dtype = dtype
    workdir = tmp_path_factory.mktemp(dtype)
    out[dtype] = (runner.run(config, str(workdir)), workdir)
  return out


def test_cnn_learns_the_synthetic_task(learned):
  results, workdir = learned["float32"]
  test = results["test"]
  labels = np.array([int(l.split(",")[1]) for l in
                     open(workdir / "predictions.csv").read().splitlines()[1:]])
  majority = max(labels.mean(), 1 - labels.mean())
  assert test["accuracy"] > majority + 0.04, (test, majority)
  assert test["auc"] > 0.85
  assert test["accuracy"] < 1.0  # the synthetic task is not trivial


def test_bfloat16_reaches_the_accuracy_of_float32(learned):
  fp32, bf16 = learned["float32"][0]["test"], learned["bfloat16"][0]["test"]
  assert learned["bfloat16"][0]["dtype"] == "bfloat16"
  # bf16 must not lose accuracy; it may land higher (AUC on 500 test patches varies by ~0.02).
  assert bf16["accuracy"] > fp32["accuracy"] - 0.03, (bf16, fp32)
  assert bf16["auc"] > fp32["auc"] - 0.03, (bf16, fp32)


def test_config_validation_messages():
  config = luna_cnn.get_config()
  config.model = "vgg"
  with pytest.raises(ValueError, match="unknown model 'vgg'"):
    config_lib.resolve(config)
  config = luna_cnn.get_config()
  config.dtype = "float16"
  with pytest.raises(ValueError, match="dtype must be"):
    config_lib.resolve(config)
  config = luna_cnn.get_config()
  config.dataset = "mnist"
  with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
    config_lib.resolve(config)


@pytest.mark.parametrize("fields, message", [
    (dict(lr_decay_epochs=10), "apply to lr_schedule 'step' only, got lr_schedule='constant'"),
    (dict(lr_schedule="cosine", lr_decay_factor=0.5), "apply to lr_schedule 'step' only"),
    (dict(lr_schedule="cosine", warmup_epochs=200.0, num_epochs=6),
     "warmup_epochs=200.0 must be below num_epochs=6"),
    (dict(warmup_epochs=6.0, num_epochs=6), "warmup_epochs=6.0 must be below num_epochs=6"),
    (dict(lr_schedule="step", warmup_epochs=-2.0), "warmup_epochs must be >= 0, got -2.0"),
    (dict(lr_schedule="step", lr_decay_factor=0.0), "lr_decay_factor must be in (0, 1], got 0.0"),
    (dict(lr_schedule="step", lr_decay_epochs=0), "lr_decay_epochs must be >= 1, got 0"),
])
def test_schedule_fields_that_would_be_ignored_or_never_reached_are_errors(fields, message):
  config = luna_cnn.get_config()
  config.update(fields)
  with pytest.raises(ConfigError) as e:
    config_lib.resolve(config)
  assert message in str(e.value)


def test_schedule_fields_of_the_selected_schedule_resolve():
  config = luna_cnn.get_config()
  config.update(dict(lr_schedule="step", warmup_epochs=1.0, lr_decay_epochs=5,
                     lr_decay_factor=0.5, num_epochs=10))
  assert config_lib.resolve(config).lr_decay_epochs == 5
  config = luna_cnn.get_config()
  config.update(dict(warmup_epochs=1.0, num_epochs=3))  # a warm-up before the constant rate
  assert config_lib.resolve(config).lr_schedule == "constant"


def test_num_epochs_defaults_to_paper_on_real_data_and_short_on_synthetic():
  config = luna_resnet.get_config()
  assert config_lib.resolve(config).num_epochs == config.synthetic_num_epochs
  config.data.dir = "/some/real/data"
  resolved = config_lib.resolve(config)
  assert resolved.num_epochs == 100 and resolved.batch_size == 20
  assert resolved.learning_rate == 1e-4


def test_synthetic_learning_rate_applies_to_synthetic_data_only_and_is_not_silently_overridden():
  config = luna_resnet.get_config()
  config.synthetic_learning_rate = 1e-3
  assert config_lib.resolve(config).learning_rate == 1e-3
  config.data.dir = "/some/real/data"  # real data keep the paper's rate
  assert config_lib.resolve(config).learning_rate == 1e-4
  config = luna_resnet.get_config()
  config.synthetic_learning_rate = 1e-3
  config.learning_rate = 3e-4  # a rate that would be replaced without a word: refused
  with pytest.raises(ConfigError, match="synthetic_learning_rate"):
    config_lib.resolve(config)
  config.synthetic_learning_rate = -1.0
  config.learning_rate = 1e-4
  with pytest.raises(ConfigError, match="synthetic_learning_rate must be > 0"):
    config_lib.resolve(config)


def _cli(*args, cwd):
  env = dict(os.environ, PYTHONPATH=ROOT)
  return subprocess.run([sys.executable, "-m", "experiments.luna_cnn", *args], cwd=cwd,
                        env=env, capture_output=True, text=True, timeout=300)


def test_command_line_smoke_run_prints_results_table(tmp_path):
  proc = _cli("--config.smoke=True", f"--workdir={tmp_path / 'cli'}", cwd=tmp_path)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert "accuracy" in proc.stdout and "ROC AUC" in proc.stdout
  assert (tmp_path / "cli" / "results.json").exists()


def test_command_line_rejects_unknown_config_field(tmp_path):
  proc = _cli("--config.smoke=True", "--config.num_epoch=3", cwd=tmp_path)
  assert proc.returncode != 0
  assert "num_epoch" in proc.stderr
  assert not (tmp_path / "runs").exists()


def test_overwrite_discards_the_previous_run(tmp_path):
  config = luna_cnn.get_config()
  config.smoke = True
  config.num_epochs = 2
  workdir = str(tmp_path / "run")
  runner.run(config, workdir)
  config.num_epochs = 1
  config.learning_rate = 1e-3
  results = runner.run(config, workdir, overwrite=True)
  assert results["epochs"] == 1 and results["learning_rate"] == 1e-3
  lines = open(os.path.join(workdir, "metrics.jsonl")).read().splitlines()
  assert [json.loads(l)["epoch"] for l in lines] == [1]
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["1"]


@pytest.mark.parametrize("fields, message", [
    ({"seed": -1}, "seed must be in 0.."),
    ({"data.seed": -3}, "data.seed must be in 0.."),
    ({"data.max_train": -5}, "data.max_train must be >= 1 or None, got -5"),
    ({"data.max_test": 0}, "data.max_test must be >= 1 or None, got 0"),
    ({"learning_rate": float("inf")}, "learning_rate must be a finite number, got inf"),
    ({"warmup_epochs": float("nan")}, "warmup_epochs must be a finite number, got nan"),
    ({"data.hu_window": (float("-inf"), 400.0)}, "data.hu_window must be finite numbers"),
])
def test_seeds_caps_and_non_finite_numbers_are_config_errors(fields, message):
  config = luna_cnn.get_config()
  for key, value in fields.items():
    *path, last = key.split(".")
    target = config
    for p in path:
      target = target[p]
    target[last] = value
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    config_lib.resolve(config)


@pytest.mark.parametrize("experiment, fields, message", [
    ("hip128_crop_cnn", {"data.image_size": 64}, "data.image_size=64 is not used by hip128_crop"),
    ("hip128_full_cnn", {"data.hu_window": (-900.0, 300.0), "data.fold": 2},
     "data.fold=2, data.hu_window=(-900.0, 300.0) are not used by hip128_full"),
    ("luna_cnn", {"data.pad": "zero"}, "data.pad='zero' is not used by luna"),
    ("luna_cnn", {"data.dir": "/data/luna", "data.synthetic_train": 100},
     "data.synthetic_train=100 is not used with data.dir set"),
    ("luna_dbn", {"model_size": "tiny", "dbn.hidden": (64, 32)},
     "dbn.hidden=(64, 32) is not used with model_size='tiny' (dbn.tiny_hidden is)"),
])
def test_a_field_the_experiment_ignores_is_a_config_error(experiment, fields, message):
  import importlib
  config = importlib.import_module(f"experiments.{experiment}").get_config()
  for key, value in fields.items():
    *path, last = key.split(".")
    target = config
    for p in path:
      target = target[p]
    target[last] = value
  with pytest.raises(ConfigError) as err:
    config_lib.resolve(config)
  assert message in str(err.value)


@pytest.mark.parametrize("experiment", ["luna_cnn", "hip128_crop_cnn", "hip128_full_dbn"])
@pytest.mark.parametrize("data_dir", [None, "/data/real"])
def test_a_resolved_smoke_config_resolves_again_unchanged(experiment, data_dir):
  import importlib
  config = importlib.import_module(f"experiments.{experiment}").get_config()
  config.smoke = True
  config.data.dir = data_dir
  once = config_lib.resolve(config)
  assert config_lib.resolve(once).to_dict() == once.to_dict()


def test_every_config_field_has_a_help_text_and_no_help_text_is_stale():
  def paths(d, prefix=""):
    for key in d.keys():
      if hasattr(d[key], "keys"):
        yield from paths(d[key], f"{prefix}{key}.")
      else:
        yield prefix + key
  fields = {p for d in config_lib.DATASETS for m in config_lib.MODELS
            for p in paths(config_lib.base_config(d, m))}
  assert sorted(fields - set(config_lib.HELP)) == []
  assert sorted(set(config_lib.HELP) - fields) == []
