"""Throughput benchmarks, one module each: `python -m medjax.benchmarks.<name> --help`.

    step              jitted train steps (CNN, ResNet-50, SGAN) on synthetic device-resident
                      data; also `python -m medjax.bench`
    pipeline          the tf.data input path alone (host side, imports TensorFlow)
    rbm               RBM pretraining (CD-1, PCD-1) against scikit-learn's `BernoulliRBM`
    torch_reference   the same networks and steps in PyTorch, for the same machine
    flops             model FLOPs counted from a jaxpr (a library, no command)

Measured figures: `RESULTS.md` and `rbm.md` beside this file. Flag names are absl's
(`--batch_sizes`); the dashed spellings (`--batch-sizes`) are accepted too.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
from typing import Callable, Sequence

from medjax.errors import UserError
from medjax.rundir import write_json


def require(module: str, what: str, package: str):
  """Imports an optional dependency, or raises `UserError("<what> is not installed: pip install
  <package>")`."""
  try:
    return importlib.import_module(module)
  except ImportError:
    raise UserError(f"{what} is not installed: pip install {package}") from None


def normalize_argv(args: Sequence[str]) -> list[str]:
  """`--batch-sizes=20` -> `--batch_sizes=20`: absl knows flags by their underscore names only.

  Only the flag names change (values and everything after a bare `--` are left alone); `args`
  is the command line without the program name.
  """
  out = list(args)
  for i, arg in enumerate(out):
    if arg == "--":
      break
    if arg.startswith("-") and len(arg) > 1 and not (arg[1].isdigit() or arg[1] == "."):
      dashes = 2 if arg.startswith("--") else 1
      name, sep, value = arg[dashes:].partition("=")
      out[i] = "-" * dashes + name.replace("-", "_") + sep + value
  return out


def run(define_flags: Callable, main: Callable, argv: Sequence[str] | None = None) -> None:
  """The shell entry of a benchmark: its flags on absl's global FLAGS, `main` under
  `medjax.cli.run` (a UserError is one line `error: ...`, exit status 2)."""
  from absl import flags

  from medjax import cli
  argv = list(sys.argv if argv is None else argv)
  names = flags.FlagValues()
  define_flags(names)
  define_flags(flags.FLAGS)
  cli.show_in_help(*names.flag_values_dict())
  sys.modules["__main__"].__doc__ = sys.modules[main.__module__].__doc__  # --help's text

  def main_without_result(args):  # absl's app.run would print a returned value and exit 1
    cli.setup_logging()
    main(args)

  cli.run(main_without_result, argv=[argv[0], *normalize_argv(argv[1:])])


def call(module, args: Sequence[str]):
  """Runs benchmark `module`'s `main` in this process with the command-line flags `args`,
  parsed into fresh FlagValues (absl's global FLAGS are left alone); returns what main returns."""
  from absl import flags
  fv = flags.FlagValues()
  module.define_flags(fv)
  try:
    argv = fv([module.__name__, *normalize_argv(args)])
  except flags.Error as e:
    raise UserError(str(e)) from None
  return module.main(argv, fv)


def flag_dict(define_flags: Callable, fv) -> dict:
  """The values of the flags `define_flags` defines (for result files)."""
  from absl import flags
  names = flags.FlagValues()
  define_flags(names)
  return {name: fv[name].value for name in names.flag_values_dict()}


def write_results(path: str | None, env: dict, define_flags: Callable, fv, results) -> None:
  """With `--out=PATH`: the environment, the flags and the result rows as JSON at PATH."""
  if not path:
    return
  write_json(path, {"environment": env, "flags": flag_dict(define_flags, fv), "results": results})


def no_arguments(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise UserError(f"unexpected arguments: {list(argv[1:])} (flags are --name=value)")


def parse_models(value, known: Sequence[str]) -> list[str]:
  """`--models=a,b` checked against `known`; a UserError names the unknown ones."""
  from medjax import cli
  models = cli.parse_list(value, "models", str)
  unknown = [m for m in models if m not in known]
  if unknown:
    raise UserError(f"--models: unknown {unknown}; known: {', '.join(known)}")
  return models


def time_windows(run_window: Callable[[], object], windows: int) -> list[float]:
  """Seconds of each of `windows` calls of `run_window` (which must wait for its results)."""
  times = []
  for _ in range(windows):
    t = time.perf_counter()
    run_window()
    times.append(time.perf_counter() - t)
  return times


def cpu_model() -> str:
  """The CPU's model name (/proc/cpuinfo on Linux): hosts of one name can differ in it, and the
  CPU figures with it."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def machine() -> dict:
  """What every result file records about the host."""
  return {"python": platform.python_version(), "host": platform.machine(), "cpu": cpu_model(),
          "cpu_count": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
          "date": time.strftime("%Y-%m-%d %H:%M")}
