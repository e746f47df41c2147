"""Command lines: user errors are one line without a traceback; --help lists the flags."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # end-to-end training runs


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args, cwd=None, timeout=300):
  return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                        cwd=cwd or ROOT, timeout=timeout,
                        env=dict(os.environ, PYTHONPATH=ROOT, MEDJAX_DEBUG=""))


@pytest.mark.parametrize("flags, message", [
    (["--config.model=resnet"], "do not match the experiment 'luna_cnn'"),
    (["--seeds=0,x"], "--seeds: 'x' is not a valid int"),
    (["--config.augment.max_shift=100"], "augment.max_shift must be in 0..12"),
    (["--config.augment.max_shift=-3"], "augment.max_shift must be in 0..12"),
    (["--config.data.pad=foo"], "data.pad must be 'border' or 'zero'"),
    (["--config.smoke=True", "--config.batch_size=100000"],
     "batch_size 100000 is larger than the 240 training examples"),
    (["--seeds=0,0"], "--seeds: seed 0 is listed twice"),
    (["--seeds=1,-1"], "--seeds: seeds must be in 0.."),
    (["--config.seed=-2"], "seed must be in 0.."),
    (["--config.learning_rate=inf"], "learning_rate must be a finite number, got inf"),
    (["--config.data.max_train=-5"], "data.max_train must be >= 1 or None, got -5"),
    (["--stack_seeds=on"], "--stack_seeds applies to --seeds"),
    (["--seeds=0,1", "--config.seed=3"], "--seeds replaces --config.seed"),
    ([f"--config.data.dir={os.path.join(ROOT, 'README.md')}"],
     "README.md is a file; data.dir must be the folder holding"),
])
def test_user_errors_print_one_line_and_exit_2(tmp_path, flags, message):
  workdir = tmp_path / "run"
  proc = _cli("experiments.luna_cnn", f"--workdir={workdir}", *flags)
  assert proc.returncode == 2, proc.stderr[-2000:]
  err = proc.stderr.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], proc.stderr
  assert "Traceback" not in proc.stdout + proc.stderr
  assert not workdir.exists()  # refused before anything was written: no workdir left


def test_experiment_help_lists_flags_and_nested_config_fields():
  proc = _cli("experiments.luna_cnn", "--help")
  assert proc.returncode == 0
  text = proc.stdout + proc.stderr
  for flag in ("--workdir", "--overwrite", "--seeds", "--stack_seeds", "--distributed"):
    assert flag in text
  assert "(default: 'auto')" in text
  assert "\n  augment:\n    dihedral = True" in text
  assert "  data:\n" in text and "    dir = None    # unset: the embedded synthetic data" in text


def _console_scripts():
  import tomllib
  with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
    return tomllib.load(f)["project"]["scripts"]


@pytest.mark.parametrize("script, target", sorted(_console_scripts().items()))
def test_console_script_help_lists_its_flags_with_defaults(script, target):
  # As pip's generated wrapper calls it: `__main__` is the wrapper (no docstring, no flags).
  module, func = target.split(":")
  args = ["luna_cnn", "--help"] if script == "medjax-train" else ["--help"]
  code = (f"import sys; sys.argv = [{script!r}, *{args!r}]; "
          f"from {module} import {func}; {func}()")
  proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                        timeout=120, env=dict(os.environ, PYTHONPATH=ROOT))
  assert proc.returncode == 0, proc.stderr[-2000:]
  text = proc.stdout + proc.stderr
  assert "USAGE:" not in text  # absl's bare fallback: the module's docstring was lost
  assert "flags:" in text and "(default: " in text, text
  documented = {"medjax-train": "experiments.luna_cnn",
                "medjax-bench": "medjax.benchmarks.step"}.get(script, module)
  doc = __import__(documented, fromlist=["_"]).__doc__.strip().splitlines()[0]
  assert doc in text
