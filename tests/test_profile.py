"""Profiling chosen steps of a real run (config.profile_steps, medjax.train.profile)."""

import glob
import gzip
import json
import os

import pytest

from experiments import luna_cnn
from medjax import config as config_lib
from medjax import runner
from medjax.errors import ConfigError
from medjax.train.profile import StepProfiler


@pytest.mark.parametrize("steps", [(0, 3), (5, 4), (1, 2, 3), ("a", "b")])
def test_profile_steps_must_be_a_window_of_steps(steps):
  config = luna_cnn.get_config()
  config.smoke = True
  config.profile_steps = steps
  with pytest.raises(ConfigError, match="profile_steps"):
    config_lib.resolve(config)


def _trace_events(workdir):
  [path] = glob.glob(os.path.join(workdir, "profile", "plugins", "profile", "*",
                                  "perfetto_trace.json.gz"))
  with gzip.open(path) as f:
    trace = json.load(f)
  return trace["traceEvents"] if isinstance(trace, dict) else trace


@pytest.mark.slow  # a smoke training run per source
@pytest.mark.parametrize("resident", [False, True])
def test_a_run_traces_exactly_its_window_of_annotated_named_steps(tmp_path, resident):
  config = luna_cnn.get_config()
  config.smoke = True
  config.num_epochs = 2
  config.log_every = 2
  config.device_resident = resident
  config.profile_steps = (3, 5)
  workdir = str(tmp_path / "run")
  runner.run(config, workdir)
  events = _trace_events(workdir)
  steps = sorted(int(e["args"]["step_num"]) for e in events if e.get("name") == "train")
  names = {e.get("name") for e in events}
  if resident:  # one scan of log_every steps per dispatch: the chunks holding steps 3..5
    assert steps == [3, 5] and "PjitFunction(train_steps)" in names
  else:
    assert steps == [3, 4, 5] and "PjitFunction(train_step)" in names
  # a run without profile_steps writes no trace
  config.profile_steps = ()
  runner.run(config, str(tmp_path / "plain"))
  assert not os.path.exists(tmp_path / "plain" / "profile")


def test_the_profiler_stops_a_window_that_outlasts_the_run(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr("jax.profiler.start_trace", lambda *a, **k: calls.append("start"))
  monkeypatch.setattr("jax.profiler.stop_trace", lambda: calls.append("stop"))
  profiler = StepProfiler((4, 100), str(tmp_path))
  for n in range(1, 8):
    with profiler.step(n):
      pass
    profiler.after(n, None)
  assert calls == ["start"] and profiler.active
  profiler.stop()  # the driver's `finally`
  profiler.stop()
  assert calls == ["start", "stop"]
