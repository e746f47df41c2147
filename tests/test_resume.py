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
EPOCHS = 30  # a smoke CNN epoch takes tens of ms: enough of them that the kill lands mid-run
ARGS = ["--config.smoke=True", f"--config.num_epochs={EPOCHS}", "--config.log_every=2",
        "--config.model_size=full", "--config.data.max_train=600",
        "--config.checkpoint_interval_seconds=0"]  # a checkpoint every epoch: one to resume from


def _run(workdir, cwd, *extra):
  return subprocess.Popen([sys.executable, "-m", "experiments.luna_cnn", *ARGS, *extra,
                           f"--workdir={workdir}"], cwd=cwd, env=dict(os.environ, PYTHONPATH=ROOT),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _epochs_done(workdir):
  path = os.path.join(workdir, "metrics.jsonl")
  return len(open(path).read().splitlines()) if os.path.exists(path) else 0


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
  """An uninterrupted run: the reference every killed-and-rerun run must equal."""
  root = tmp_path_factory.mktemp("resume")
  proc = _run(root / "straight", root)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out[-3000:]
  return root / "straight"


def _checkpoints(workdir):
  """The committed checkpoints (orbax writes into a temporary folder and renames it when done)."""
  path = os.path.join(workdir, "checkpoints")
  return [n for n in os.listdir(path) if n.isdigit()] if os.path.isdir(path) else []


def _kill_after(workdir, cwd, epochs, *extra, checkpointed=False):
  """Starts a run and SIGKILLs it just after its `epochs`-th metrics line (and, if
  `checkpointed`, once a checkpoint is committed: checkpoints are written in the background and
  can land an epoch or two after their metrics line); returns the number of epochs it had
  logged."""
  proc = _run(workdir, cwd, *extra)
  deadline = time.time() + 600
  while ((_epochs_done(workdir) < epochs or (checkpointed and not _checkpoints(workdir)))
         and proc.poll() is None and time.time() < deadline):
    time.sleep(0.005)
  time.sleep(0.02)  # into the next epoch (or its checkpoint write)
  # Freeze the process before looking, so that what is seen is what the kill interrupts: an
  # epoch takes tens of ms here, and a sleep-then-kill once let the whole run finish between
  # the look and the kill.
  proc.send_signal(signal.SIGSTOP)
  assert proc.poll() is None, "the run finished before it could be stopped"
  logged = _epochs_done(workdir)
  assert epochs <= logged < EPOCHS and not os.path.exists(workdir / "results.json")
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  return logged


def _assert_same_run(a, b):
  """Two workdirs hold the same run: test metrics, predictions, each epoch's metrics line once,
  and TensorBoard scalars (each epoch once: what a killed run logged is hidden)."""
  from test_tensorboard import read_events
  assert json.loads((a / "results.json").read_text())["test"] == \
      json.loads((b / "results.json").read_text())["test"]  # bit-for-bit the same predictions
  assert (a / "predictions.csv").read_text() == (b / "predictions.csv").read_text()
  lines = [[json.loads(l) for l in (w / "metrics.jsonl").read_text().splitlines()] for w in (a, b)]
  assert [l["epoch"] for l in lines[1]] == list(range(1, EPOCHS + 1))
  for key in ("train_loss", "val_accuracy"):
    assert [l[key] for l in lines[0]] == [l[key] for l in lines[1]]
  scalars = [read_events(str(w / "events"))[0] for w in (a, b)]
  assert scalars[1].keys() == scalars[0].keys() and "val_accuracy" in scalars[1]
  for tag in scalars[0]:
    assert [s for s, _ in scalars[1][tag]] == list(range(1, EPOCHS + 1)), tag
  for tag in ("train_loss", "val_accuracy"):  # others are timings
    assert scalars[1][tag] == scalars[0][tag], tag


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(straight, tmp_path):
  workdir = tmp_path / "killed"
  _kill_after(workdir, tmp_path, 2, checkpointed=True)
  resumed = _run(workdir, tmp_path)
  out, _ = resumed.communicate(timeout=600)
  assert resumed.returncode == 0, out[-3000:]
  assert "resuming from" in out
  _assert_same_run(straight, workdir)


def test_killed_before_its_first_checkpoint_reruns_from_scratch_saying_so(straight, tmp_path):
  # checkpoints every 60 s: a run killed after 2 of its ~50 ms epochs has none to resume from
  workdir = tmp_path / "killed"
  logged = _kill_after(workdir, tmp_path, 2, "--config.checkpoint_interval_seconds=60")
  assert not _checkpoints(workdir)
  rerun = _run(workdir, tmp_path)
  out, _ = rerun.communicate(timeout=600)
  assert rerun.returncode == 0, out[-3000:]
  assert "resuming from" not in out
  assert f"{logged} logged epochs after the last checkpoint (epoch 0) are dropped" in out
  _assert_same_run(straight, workdir)


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
