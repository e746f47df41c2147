"""The epoch driver: continuing finished runs, resuming with other execution settings, early
stopping and learning-rate schedules (smoke-sized LUNA16 CNN runs)."""

import json

import pytest

from experiments import luna_cnn
from medjax import runner
from medjax.errors import WorkdirError


pytestmark = pytest.mark.slow  # end-to-end training runs


def _config(**overrides):
  config = luna_cnn.get_config()
  config.smoke = True
  for key, value in overrides.items():
    target = config
    *path, last = key.split(".")
    for p in path:
      target = target[p]
    target[last] = value
  return config


def _epochs(workdir):
  return [json.loads(l)["epoch"] for l in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_a_finished_run_continues_to_more_epochs_with_other_execution_settings(tmp_path):
  run = tmp_path / "run"
  first = runner.run(_config(num_epochs=2, log_every=50, eval_batch_size=60,
                              device_resident=False), str(run))
  assert first["epochs"] == 2 and _epochs(run) == [1, 2]
  more = runner.run(_config(num_epochs=3, log_every=3, eval_batch_size=30,
                             device_resident=True), str(run))
  assert more["epochs"] == 3 and _epochs(run) == [1, 2, 3]
  assert more["train_seconds"] > first["train_seconds"]
  with pytest.raises(WorkdirError, match="3 trained epochs, more than num_epochs=2"):
    runner.run(_config(num_epochs=2), str(run))


def test_early_stopping_stops_when_the_validation_metric_stalls(tmp_path):
  # A learning rate this small cannot change the validation accuracy: no epoch improves on the
  # first, so patience 2 stops after epoch 3.
  results = runner.run(_config(num_epochs=10, learning_rate=1e-12,
                                early_stopping_patience=2), str(tmp_path))
  assert _epochs(tmp_path) == [1, 2, 3]
  assert results["stopped_early_at_epoch"] == 3


def test_cosine_schedule_with_warmup_is_logged_per_epoch(tmp_path):
  runner.run(_config(num_epochs=3, lr_schedule="cosine", warmup_epochs=1.0), str(tmp_path))
  lrs = [json.loads(l)["learning_rate"] for l in (tmp_path / "metrics.jsonl").read_text()
         .splitlines()]
  # After epoch 1 the warm-up has just reached the peak; cosine then decays to 0 at the end.
  assert lrs[0] == pytest.approx(1e-4, rel=1e-3)
  assert lrs[0] > lrs[1] > lrs[2] and lrs[2] == pytest.approx(0.0, abs=1e-9)


def test_tfdata_source_trains_the_same_model_as_arrays(tmp_path):
  pytest.importorskip("tensorflow")
  arrays = runner.run(_config(num_epochs=2, log_every=4), str(tmp_path / "arrays"))
  tfdata = runner.run(_config(num_epochs=2, log_every=4, **{"data.source": "tfdata"}),
                       str(tmp_path / "tfdata"))
  # The same batches in the same order through another pipeline: bit-identical training.
  assert tfdata["test"] == arrays["test"]
  assert (tmp_path / "tfdata" / "predictions.csv").read_text() == \
      (tmp_path / "arrays" / "predictions.csv").read_text()


def test_a_full_disk_during_a_checkpoint_is_one_error_naming_the_path(tmp_path, monkeypatch):
  import errno
  from medjax.train.checkpoint import Checkpoints

  def no_space(self, epoch, *args, **kwargs):
    try:
      raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as e:  # orbax/tensorstore wrap the writer's OSError
      raise RuntimeError("tensorstore: write failed") from e

  monkeypatch.setattr(Checkpoints, "save", no_space)
  with pytest.raises(WorkdirError) as err:
    runner.run(_config(num_epochs=1), str(tmp_path / "run"))
  assert str(err.value) == (f"cannot write checkpoint {tmp_path / 'run' / 'checkpoints' / '1'}: "
                            "No space left on device")


@pytest.mark.parametrize("stacked", [False, True])
def test_a_diverged_run_never_saves_or_tests_non_finite_weights(tmp_path, stacked):
  # One step an epoch: the step that breaks the weights reports a finite loss and gradient, so
  # only the weights themselves show it; before, that NaN model became the 'best' checkpoint.
  from medjax.train.driver import NonFiniteLossError
  config = _config(num_epochs=2, learning_rate=1e39, **{"data.max_train": 25})
  run = tmp_path / "run"
  with pytest.raises(NonFiniteLossError, match="non-finite weights") as err:
    if stacked:
      runner.run_seeds(config, [0, 1], [str(run / "seed0"), str(run / "seed1")], stack=True)
    else:
      runner.run(config, str(run))
  assert "epoch 1" in str(err.value) and "none (failed in epoch 1)" in str(err.value)
  for workdir in ([run / "seed0", run / "seed1"] if stacked else [run]):
    assert not (workdir / "results.json").exists()
    ckpts = workdir / "checkpoints"
    assert not ckpts.exists() or not [n for n in ckpts.iterdir() if n.name.isdigit()]


def test_the_time_outside_the_steps_is_counted_where_it_is_spent(tmp_path, monkeypatch):
  # Each checkpoint save (every epoch: interval 0) is made 0.3 s slower: that time must show
  # as the overhead of the epoch after the save (a window ends with its epoch's metrics line), and in the run's total
  # with the last save; resuming keeps the totals of the epochs before.
  import time
  from medjax.train import driver
  real_save = driver._save

  def slow_save(*args, **kwargs):
    real_save(*args, **kwargs)
    time.sleep(0.3)

  monkeypatch.setattr(driver, "_save", slow_save)
  first = runner.run(_config(num_epochs=2, checkpoint_interval_seconds=0.0), str(tmp_path))
  lines = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert lines[0]["overhead"]["checkpoint"] < 0.3 <= lines[1]["overhead"]["checkpoint"]
  for line in lines:
    assert line["overhead_seconds"] == pytest.approx(sum(line["overhead"].values()), abs=1e-3)
    assert line["overhead_fraction"] == pytest.approx(
        line["overhead_seconds"] / (line["overhead_seconds"] + line["step_seconds"]), rel=1e-3)
    assert 0 < line["step_seconds"] <= line["epoch_seconds"]
  total = first["epoch_time"]
  assert total["epochs"] == 2 and total["overhead"]["checkpoint"] >= 0.6
  assert total["step_seconds"] == pytest.approx(sum(l["step_seconds"] for l in lines), rel=1e-3)
  assert total["overhead_seconds"] >= sum(l["overhead_seconds"] for l in lines) + 0.3
  more = runner.run(_config(num_epochs=3, checkpoint_interval_seconds=0.0), str(tmp_path))
  assert more["epoch_time"]["epochs"] == 3
  assert more["epoch_time"]["overhead"]["checkpoint"] >= 0.6
  assert more["epoch_time"]["step_seconds"] > total["step_seconds"]


def test_a_best_epoch_held_in_memory_is_written_and_tested(tmp_path, monkeypatch):
  # The validation metric, scripted per epoch, peaks at epoch 2: within a long interval epochs
  # 1 and 2 are held in turn (2 replaces 1), epoch 2 is written at the last epoch, before it,
  # and is the checkpoint tested.
  from medjax.train import driver
  real_save, real_metrics, saved = driver._save, driver.val_metrics, []
  scripted = iter([0.5, 0.9, 0.6, 0.7])

  def recording_save(member, epoch, *args, **kwargs):
    saved.append(epoch)
    real_save(member, epoch, *args, **kwargs)

  def scripted_metrics(config, labels, probs, metric_name):
    record, _ = real_metrics(config, labels, probs, metric_name)
    return record, {metric_name: next(scripted)}

  monkeypatch.setattr(driver, "_save", recording_save)
  monkeypatch.setattr(driver, "val_metrics", scripted_metrics)
  results = runner.run(_config(num_epochs=4, checkpoint_interval_seconds=1e9), str(tmp_path))
  assert saved == [2, 4]
  assert results["checkpoint"]["kind"] == "best" and results["checkpoint"]["epoch"] == 2
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()
                if p.name.isdigit()) == [2, 4]


def test_a_held_best_that_cannot_be_written_never_hides_the_error_that_stopped_the_run(
    tmp_path, monkeypatch, caplog):
  # Epoch 1 (the only best) is held; the run is interrupted after epoch 2 and the held epoch's
  # write fails as the run stops: the failure is logged, the interrupt is what the caller sees.
  from medjax.train import driver
  real_log = driver._log_epoch

  def failing_save(member, epoch, *args, **kwargs):
    raise OSError(f"cannot write epoch {epoch}")

  def killed_after_epoch_2(task, config, epoch, *args, **kwargs):
    real_log(task, config, epoch, *args, **kwargs)
    if epoch == 2:
      raise KeyboardInterrupt

  monkeypatch.setattr(driver, "_save", failing_save)
  monkeypatch.setattr(driver, "_log_epoch", killed_after_epoch_2)
  with caplog.at_level("ERROR", logger="medjax.train.driver"):
    with pytest.raises(KeyboardInterrupt):
      runner.run(_config(num_epochs=4, learning_rate=1e-12, checkpoint_interval_seconds=1e9),
                 str(tmp_path))
  assert "could not save the best epoch 1 held in memory: cannot write epoch 1" in caplog.text
  assert _epochs(tmp_path) == [1, 2]


def test_short_epochs_save_only_the_best_the_last_and_every_interval(tmp_path, monkeypatch):
  # A learning rate this small never improves on epoch 1's validation accuracy. Within a long
  # interval, epoch 1 (the best) is held in memory and written when the last epoch is, before
  # it; interval 0 saves every epoch as it ends. A run killed in between writes the held best
  # as it stops, and resumes from it, training the lost epochs again.
  from medjax.train import driver
  real_save, real_log, saved, logged = driver._save, driver._log_epoch, [], [0]

  def recording_save(member, epoch, *args, **kwargs):
    saved.append((epoch, logged[-1]))  # (epoch written, last epoch finished before)
    real_save(member, epoch, *args, **kwargs)

  def recording_log(task, config, epoch, *args, **kwargs):
    real_log(task, config, epoch, *args, **kwargs)
    logged.append(epoch)

  monkeypatch.setattr(driver, "_save", recording_save)
  monkeypatch.setattr(driver, "_log_epoch", recording_log)
  runner.run(_config(num_epochs=4, learning_rate=1e-12, checkpoint_interval_seconds=0.0),
             str(tmp_path / "every"))
  assert saved == [(1, 0), (2, 1), (3, 2), (4, 3)]
  saved.clear(), logged.append(0)
  runner.run(_config(num_epochs=4, learning_rate=1e-12, checkpoint_interval_seconds=1e9),
             str(tmp_path / "interval"))
  assert saved == [(1, 3), (4, 3)]

  saved.clear(), logged.append(0)

  def killed_after_epoch_3(task, config, epoch, *args, **kwargs):
    recording_log(task, config, epoch, *args, **kwargs)
    if epoch == 3:
      raise KeyboardInterrupt

  monkeypatch.setattr(driver, "_log_epoch", killed_after_epoch_3)
  killed = tmp_path / "killed"
  with pytest.raises(KeyboardInterrupt):
    runner.run(_config(num_epochs=4, learning_rate=1e-12, checkpoint_interval_seconds=1e9),
               str(killed))
  assert saved == [(1, 3)] and _epochs(killed) == [1, 2, 3]
  monkeypatch.setattr(driver, "_log_epoch", recording_log)
  saved.clear(), logged.append(0)
  results = runner.run(_config(num_epochs=4, learning_rate=1e-12,
                               checkpoint_interval_seconds=1e9), str(killed))
  assert saved == [(4, 3)] and _epochs(killed) == [1, 2, 3, 4]  # epochs 2-3 trained again
  assert results["epochs"] == 4
