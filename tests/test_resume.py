"""A training process killed with SIGKILL mid-run resumes to the same result as a straight run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow  # end-to-end training runs


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = ["--config.smoke=True", "--config.num_epochs=6", "--config.log_every=2",
        "--config.model_size=full", "--config.data.max_train=600"]


def _run(workdir, cwd, **kw):
  return subprocess.Popen([sys.executable, "-m", "experiments.luna_cnn", *ARGS,
                           f"--workdir={workdir}"], cwd=cwd, env=dict(os.environ, PYTHONPATH=ROOT),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _epochs_done(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  return len(open(path).read().splitlines()) if os.path.exists(path) else 0


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
  straight = _run(tmp_path / "straight", tmp_path)
  out, _ = straight.communicate(timeout=600)
  assert straight.returncode == 0, out[-3000:]

  workdir = tmp_path / "killed"
  proc = _run(workdir, tmp_path)
  deadline = time.time() + 600
  while _epochs_done(workdir) < 2 and proc.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  time.sleep(0.3)  # into the next epoch (or its checkpoint write)
  assert proc.poll() is None, "the run finished before it could be killed"
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not os.path.exists(workdir / "results.json")

  resumed = _run(workdir, tmp_path)
  out, _ = resumed.communicate(timeout=600)
  assert resumed.returncode == 0, out[-3000:]
  assert "resuming from" in out

  a = json.loads((tmp_path / "straight" / "results.json").read_text())
  b = json.loads((workdir / "results.json").read_text())
  assert a["test"] == b["test"]  # bit-for-bit the same predictions' metrics
  assert (tmp_path / "straight" / "predictions.csv").read_text() == \
      (workdir / "predictions.csv").read_text()
  epochs = [json.loads(l)["epoch"] for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert epochs == [1, 2, 3, 4, 5, 6]
  for key in ("train_loss", "val_accuracy"):
    assert [json.loads(l)[key] for l in (workdir / "metrics.jsonl").read_text().splitlines()] \
        == [json.loads(l)[key] for l in
            (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]


def test_non_finite_loss_stops_naming_step_epoch_and_last_checkpoint(tmp_path, monkeypatch):
  import jax.numpy as jnp
  import pytest
  from experiments import luna_cnn
  from medjax import runner
  from medjax.train import supervised
  from medjax.train.driver import NonFiniteLossError

  real_step = supervised.train_step

  def diverging_step(state, batch, rng, **kwargs):
    new_state, metrics = real_step(state, batch, rng, **kwargs)
    metrics["loss"] = jnp.where(state.step >= 14, jnp.nan, metrics["loss"])  # 15th step
    return new_state, metrics

  monkeypatch.setattr(supervised, "train_step", diverging_step)
  config = luna_cnn.get_config()
  config.smoke = True
  config.num_epochs = 3  # 10-12 steps per epoch
  with pytest.raises(NonFiniteLossError) as err:
    runner.run(config, str(tmp_path / "run"))
  message = str(err.value)
  assert "of epoch 2 (global step 15)" in message
  assert f"last good checkpoint: {tmp_path / 'run' / 'checkpoints' / '1'};" in message
  assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["1"]
  assert not (tmp_path / "run" / "results.json").exists()


def _garble(path):
  """Overwrites a file, or every file under a folder, with bytes no reader accepts."""
  files = [path] if os.path.isfile(path) else [
      os.path.join(d, f) for d, _, names in os.walk(path) for f in names]
  assert files, path
  for f in files:
    with open(f, "wb") as out:
      out.write(b"\x00garbage{")


# What a run's files may suffer between two runs, and what the next run does: a one-line
# WorkdirError naming the file (and no traceback from the CLI), or carry on (rewriting it).
DAMAGE = [
    ("config.json", "delete", "config.json is missing"),
    ("data.json", "delete", "data.json is missing"),
    ("config.json", "garble", "config.json: damaged"),
    ("data.json", "garble", "data.json: damaged"),
    ("checkpoints/1/meta", "garble", "cannot read checkpoint"),
    ("checkpoints/1/state/_METADATA", "garble", "cannot read checkpoint"),
    ("checkpoints/1/state/d", "garble", "cannot read checkpoint"),
    ("checkpoints/1/state/manifest.ocdbt", "garble", "cannot read checkpoint"),
    ("checkpoints/1/metrics", "garble", "cannot read checkpoint"),
    ("results.json", "garble", None),
    ("predictions.csv", "garble", None),
    ("events", "garble", None),
    ("metrics.jsonl", "insert", None),
]


@pytest.mark.parametrize("name, how, error", DAMAGE, ids=[f"{h}-{n}" for n, h, _ in DAMAGE])
def test_a_run_whose_files_were_damaged_between_two_runs(finished_run, tmp_path, name, how,
                                                          error):
  import shutil
  from experiments import luna_cnn
  from medjax import runner
  from medjax.errors import WorkdirError
  workdir = tmp_path / "run"
  shutil.copytree(finished_run("cnn"), workdir)
  path = workdir / name
  if how == "delete":
    path.unlink()
  elif how == "insert":  # a damaged line between intact records
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("{\"epoch\": 1, \"train_lo\x00\n" + "".join(lines))
  else:
    _garble(str(path))
  config = luna_cnn.get_config()
  config.smoke = True
  config.num_epochs = 2  # resume for one more epoch
  if error:
    with pytest.raises(WorkdirError, match=error) as err:
      runner.run(config, str(workdir))
    assert "\n" not in str(err.value)
    assert not (workdir / "checkpoints" / "2").exists()
    return
  results = runner.run(config, str(workdir))
  assert results["epochs"] == 2
  records = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["epoch"] for r in records] == [1, 2]
  assert json.loads((workdir / "results.json").read_text())["epochs"] == 2


def test_a_dbn_whose_pretrained_layer_was_damaged_between_two_runs(finished_run, tmp_path):
  import shutil
  from experiments import luna_dbn
  from medjax import runner
  from medjax.errors import WorkdirError
  workdir = tmp_path / "run"
  shutil.copytree(finished_run("dbn"), workdir)
  _garble(str(workdir / "pretrain" / "layer_0.npz"))
  config = luna_dbn.get_config()
  config.smoke = True
  config.num_epochs = 2
  with pytest.raises(WorkdirError, match=r"layer_0.npz: damaged pretrained layer"):
    runner.run(config, str(workdir))
