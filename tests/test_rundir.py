"""The run directory: lock, config compatibility, data fingerprint, write errors."""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from medjax import config as config_lib
from medjax import rundir
from medjax.data.base import Dataset, Split
from medjax.errors import WorkdirError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD = ("import sys, time; from medjax.rundir import WorkdirLock; WorkdirLock(sys.argv[1])"
        ".acquire(); print('locked', flush=True); time.sleep(60)")


def _dataset(n=40, flip=False, drop=0):
  rng = np.random.default_rng(0)
  labels = (np.arange(n) % 4 == 0).astype(np.int32)
  if flip:
    labels = 1 - labels
  split = Split(rng.integers(0, 255, (n, 8, 8, 1), dtype=np.uint8), labels,
                np.array([f"img{i}" for i in range(n)]))
  train = split.take(np.arange(drop, n))
  return Dataset("luna", train=train, test=split, source="test data")


def _config(**overrides):
  c = config_lib.resolve(config_lib.base_config("luna", "cnn"))
  c.unlock()
  for key, value in overrides.items():
    target = c
    *path, last = key.split(".")
    for p in path:
      target = target[p]
    target[last] = value
  return c


def _holder(path):
  proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                          text=True, env=dict(os.environ, PYTHONPATH=ROOT))
  assert proc.stdout.readline().strip() == "locked"
  return proc


def test_second_process_on_a_locked_workdir_fails_fast_naming_the_holder(tmp_path):
  holder = _holder(tmp_path)
  try:
    t0 = time.time()
    with pytest.raises(WorkdirError, match=f"in use by pid {holder.pid} on host"):
      rundir.WorkdirLock(str(tmp_path)).acquire()
    assert time.time() - t0 < 2
  finally:
    holder.kill()
    holder.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
  holder = _holder(tmp_path)
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  assert "pid" in (tmp_path / ".lock").read_text()  # the dead holder's note is still there
  lock = rundir.WorkdirLock(str(tmp_path))
  lock.acquire()
  assert f"pid {os.getpid()}" in (tmp_path / ".lock").read_text()
  lock.release()


def test_lock_is_reentrant_within_a_process(tmp_path):
  with rundir.locked(str(tmp_path)):
    with rundir.RunDir.open(_config(), str(tmp_path), _dataset()):
      pass
    # still held by the outer block: another process is refused
    proc = subprocess.run([sys.executable, "-c", HOLD, str(tmp_path)], capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert proc.returncode != 0 and "in use by" in proc.stderr
  lock = rundir.WorkdirLock(str(tmp_path))
  lock.acquire()  # released after the outer block
  lock.release()


def _finished_run(path, config, dataset):
  with rundir.RunDir.open(config, str(path), dataset):
    pass
  (path / "results.json").write_text("{}")  # a run to resume


def test_execution_fields_may_change_on_resume_model_fields_may_not(tmp_path):
  _finished_run(tmp_path, _config(), _dataset())
  changed = _config(log_every=7, eval_batch_size=13, device_resident=True, num_epochs=200,
                    **{"data.workers": 3, "data.cache": False})
  with rundir.RunDir.open(changed, str(tmp_path), _dataset()):
    pass
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["log_every"] == 7 and saved["num_epochs"] == 200  # the latest execution
  with pytest.raises(WorkdirError, match=r"learning_rate: 0.0001 -> 0.001.*--overwrite"):
    with rundir.RunDir.open(_config(learning_rate=1e-3), str(tmp_path), _dataset()):
      pass


def test_a_workdir_without_trained_state_accepts_a_corrected_config(tmp_path):
  with rundir.RunDir.open(_config(batch_size=5000), str(tmp_path), _dataset()):
    pass  # e.g. the run then failed before its first checkpoint
  with rundir.RunDir.open(_config(batch_size=20), str(tmp_path), _dataset(flip=True)):
    pass


@pytest.mark.parametrize("changed, expected", [
    (dict(flip=True), "train: 10/30 -> 30/10 positive/negative, labels changed"),
    (dict(drop=5), "train: 40 -> 35 examples"),
])
def test_resume_on_changed_data_is_refused_saying_what_changed(tmp_path, changed, expected):
  _finished_run(tmp_path, _config(), _dataset())
  with pytest.raises(WorkdirError, match="other data") as err:
    with rundir.RunDir.open(_config(), str(tmp_path), _dataset(**changed)):
      pass
  assert expected in str(err.value)
  with rundir.RunDir.open(_config(), str(tmp_path), _dataset(**changed), overwrite=True):
    pass


def test_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch):
  def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(rundir.os, "replace", no_space)
  with pytest.raises(WorkdirError) as err:
    rundir.write_json(str(tmp_path / "results.json"), {"a": 1})
  assert str(err.value) == f"cannot write {tmp_path / 'results.json'}: No space left on device"


def test_disk_full_is_found_inside_wrapped_exceptions():
  try:
    try:
      raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as inner:
      raise RuntimeError("tensorstore write failed") from inner
  except RuntimeError as outer:
    assert rundir.disk_full(outer).errno == errno.ENOSPC
  assert rundir.disk_full(ValueError("unrelated")) is None
  assert rundir.disk_full(RuntimeError("OUT_OF_RANGE: No space left on device")) is not None


def test_a_run_from_before_a_field_existed_resumes_while_the_field_keeps_its_default(tmp_path):
  _finished_run(tmp_path, _config(), _dataset())
  saved = json.loads((tmp_path / "config.json").read_text())
  del saved["lr_schedule"]  # as written by a medjax without that field
  (tmp_path / "config.json").write_text(json.dumps(saved))
  with rundir.RunDir.open(_config(), str(tmp_path), _dataset()):
    pass
  (tmp_path / "config.json").write_text(json.dumps(saved))
  with pytest.raises(WorkdirError, match=r"lr_schedule: '<absent>' -> 'cosine'"):
    with rundir.RunDir.open(_config(lr_schedule="cosine"), str(tmp_path), _dataset()):
      pass


def test_a_validation_split_with_two_positives_or_fewer_is_warned_about(caplog):
  from medjax import runner
  data = _dataset()
  few = Dataset("luna", train=data.train, test=data.test, val=data.test.take(np.arange(0, 6)))
  with caplog.at_level("WARNING"):
    runner.check_run(_config(batch_size=4), few)
  assert "2 positive and 4 negative" in caplog.text and "chosen on noise" in caplog.text
  caplog.clear()
  with caplog.at_level("WARNING"):
    runner.check_run(_config(batch_size=4), Dataset("luna", train=data.train, test=data.test,
                                                     val=data.test))
  assert "chosen on noise" not in caplog.text


def test_a_damaged_metrics_line_loses_no_intact_record_on_resume(tmp_path, caplog):
  lines = [json.dumps({"epoch": 1, "train_loss": 0.5}), "{\"epoch\": 2, \"trai\x00garbage",
           json.dumps({"epoch": 2, "train_loss": 0.4}), json.dumps({"epoch": 3, "train_loss": 0.3}),
           json.dumps({"epoch": 4, "train_loss": 0.2}), "{\"epoch\": 5, \"tra"]
  (tmp_path / "metrics.jsonl").write_text("\n".join(lines))
  run = rundir.RunDir(str(tmp_path))
  with caplog.at_level("WARNING"):
    run.truncate_metrics(3)  # checkpoint of epoch 3 restored: epoch 4 is trained again
  assert [r["epoch"] for r in run.read_metrics()] == [1, 2, 3]
  assert "lines 2, 6 not a JSON record" in caplog.text and "metrics.jsonl.damaged" in caplog.text
  assert "trai\x00garbage" in (tmp_path / "metrics.jsonl.damaged").read_text()  # kept, not lost


@pytest.mark.parametrize("name", ["config.json", "data.json"])
def test_resuming_a_run_whose_config_or_data_record_was_deleted_is_refused(tmp_path, name):
  _finished_run(tmp_path, _config(), _dataset())
  (tmp_path / name).unlink()
  with pytest.raises(WorkdirError, match=f"{name} is missing") as err:
    with rundir.RunDir.open(_config(), str(tmp_path), _dataset()):
      pass
  assert "--overwrite" in str(err.value)
  assert not (tmp_path / name).exists()  # not silently recreated from the new run


@pytest.mark.parametrize("name, text", [("config.json", "{\"seed\": 0,"),
                                        ("data.json", "\x00\x00"), ("config.json", "[1, 2]")])
def test_a_damaged_config_or_data_record_is_one_line_naming_the_file(tmp_path, name, text):
  _finished_run(tmp_path, _config(), _dataset())
  (tmp_path / name).write_text(text)
  with pytest.raises(WorkdirError, match=f"{tmp_path / name}: damaged"):
    with rundir.RunDir.open(_config(), str(tmp_path), _dataset()):
      pass


def test_json_outputs_never_hold_nan_or_infinity(tmp_path):
  path = tmp_path / "results.json"
  with pytest.raises(ValueError, match=r"test\.auc = nan"):
    rundir.write_json(str(path), {"test": {"accuracy": 0.5, "auc": float("nan")}})
  with pytest.raises(ValueError, match=r"curve\[1\] = inf"):
    rundir.json_text({"curve": [0.0, float("inf")]})
  assert os.listdir(tmp_path) == []  # neither the file nor a temp file


def test_results_that_are_damaged_or_not_finite_are_refused_naming_the_file(tmp_path):
  path = tmp_path / "results.json"
  path.write_text("{\"test\": {\"accuracy\": 0.9")
  with pytest.raises(WorkdirError, match=f"{path}: damaged"):
    rundir.read_results(str(path))
  path.write_text('{"seed": 0, "test": {"accuracy": NaN, "auc": 0.5}}')  # an older medjax
  with pytest.raises(WorkdirError, match=r"test\.accuracy = nan.*diverged"):
    rundir.read_results(str(path))
  path.write_text('{"seed": 0}')
  with pytest.raises(WorkdirError, match="no test metrics"):
    rundir.read_results(str(path))


@pytest.mark.parametrize("name", ["a,b.png", 'say "hi".png', "two\nlines.png", "ünï, cödé.png"])
def test_predictions_round_trip_any_image_name(tmp_path, name):
  path = str(tmp_path / "predictions.csv")
  names = [name, "plain.png"]
  rundir.write_predictions(path, names, np.array([1, 0]), np.array([0.25, 0.125]))
  got_names, labels, probs = rundir.read_predictions(path)
  assert got_names == names
  assert labels.tolist() == [1, 0] and probs.tolist() == [0.25, 0.125]
  assert "plain.png,0,0.125000\n" in open(path, newline="").read()  # as before


def test_a_refused_run_leaves_no_workdir_behind(tmp_path):
  from medjax.errors import ConfigError
  workdir = tmp_path / "new" / "run"
  with pytest.raises(ConfigError):
    with rundir.locked(str(workdir)):
      raise ConfigError("refused before anything was written")
  assert not (tmp_path / "new").exists()
  existing = tmp_path / "old"
  existing.mkdir()
  with pytest.raises(ConfigError):
    with rundir.locked(str(existing)):
      raise ConfigError("refused")
  assert existing.is_dir()  # a folder the user made is kept
