"""Throughput benchmarks, one module each: `python -m medjax.benchmarks.<name> --help`.

    step              jitted train steps (CNN, ResNet-50, SGAN) on synthetic device-resident
                      data; also `python -m medjax.bench`
    pipeline          the tf.data input path alone (host side, imports TensorFlow)
    rbm               RBM pretraining (CD-1, PCD-1) against scikit-learn's `BernoulliRBM`
    torch_reference   the same networks and steps in PyTorch, for the same machine
    op_profile        where a step's time goes, op by op (profiler trace + compiled HLO)
    gemm              ResNet-50's 1x1-convolution matmuls, jax vs PyTorch, and the
                      memory bandwidth
    convs             ResNet-50's stem and 3x3 convolutions, medjax vs XLA's own vs PyTorch
    flops             model FLOPs counted from a jaxpr (a library, no command)

Measured figures: `RESULTS.md` and `rbm.md` beside this file. Each module's `main(argv)` parses
its own flags (`medjax.cli`: the dashed spellings, `--batch-sizes`, are accepted too), so
`step.main(["--models=cnn"])` runs a benchmark in process.
"""

from __future__ import annotations

import importlib
import os
import platform
import time
from typing import Callable, Sequence

from absl import flags

from medjax import cli
from medjax import platform as medjax_platform
from medjax.errors import UserError
from medjax.rundir import write_json


def require(module: str, what: str, package: str):
  """Imports an optional dependency, or raises `UserError("<what> is not installed: pip install
  <package>")`."""
  try:
    return importlib.import_module(module)
  except ImportError:
    raise UserError(f"{what} is not installed: pip install {package}") from None


def flag_dict(define_flags: Callable, fv) -> dict:
  """The values of the flags `define_flags` defines (for result files)."""
  names = flags.FlagValues()
  define_flags(names)
  return {name: fv[name].value for name in names.flag_values_dict()}


def write_results(path: str | None, env: dict, define_flags: Callable, fv, results) -> None:
  """With `--out=PATH`: the environment, the flags and the result rows as JSON at PATH."""
  if not path:
    return
  write_json(path, {"environment": env, "flags": flag_dict(define_flags, fv), "results": results})


def parse_models(value, known: Sequence[str]) -> list[str]:
  """`--models=a,b` checked against `known`; a UserError names the unknown ones."""
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


cpu_model = medjax_platform.cpu_model


def machine() -> dict:
  """What every result file records about the host."""
  return {"python": platform.python_version(), "host": platform.machine(), "cpu": cpu_model(),
          "cpu_count": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
          "date": time.strftime("%Y-%m-%d %H:%M")}


def optional_torch(wanted: bool, threads: int):
  """PyTorch for a side-by-side comparison, on `threads` threads (0: the CPU count); None if
  not `wanted` or not installed (said once)."""
  if not wanted:
    return None
  try:
    import torch  # optional: the comparison
  except ImportError:
    print("# PyTorch is not installed: jax only (pip install torch)")
    return None
  torch.set_num_threads(threads or os.cpu_count() or 1)
  return torch


def comparison_env(torch) -> dict:
  """machine() with the jax and (if any) PyTorch versions and PyTorch's thread count."""
  import jax
  return {"jax": jax.__version__, **machine(), "torch": getattr(torch, "__version__", None),
          "torch_threads": torch.get_num_threads() if torch is not None else None}


def comparison_header(env: dict) -> str:
  """"<cpu>, jax <version>[, torch <version> (<n> threads)]" for a report's first line."""
  return (f"{env['cpu']}, jax {env['jax']}"
          + (f", torch {env['torch']} ({env['torch_threads']} threads)" if env["torch"] else ""))
