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
  from experiments import _runner
  data = _dataset()
  few = Dataset("luna", train=data.train, test=data.test, val=data.test.take(np.arange(0, 6)))
  with caplog.at_level("WARNING"):
    _runner.check_run(_config(batch_size=4), few)
  assert "2 positive and 4 negative" in caplog.text and "chosen on noise" in caplog.text
  caplog.clear()
  with caplog.at_level("WARNING"):
    _runner.check_run(_config(batch_size=4), Dataset("luna", train=data.train, test=data.test,
                                                     val=data.test))
  assert "chosen on noise" not in caplog.text
