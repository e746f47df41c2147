"""Runs an experiment: flags -> resolved config -> data -> train -> results.

    python -m experiments.<dataset>_<model> [--workdir=DIR] [--overwrite] [--config.<field>=VALUE]
    medjax-train <dataset>_<model> [flags]

The files of `experiments/` hold configs only (`get_config()`); this module is what runs them:
`run` (one model), `run_seeds` (several seeds, stacked where the model allows), `main` (the
command line of an experiment file) and `console_main` (`medjax-train`).
"""

from __future__ import annotations

import copy
import functools
import importlib
import logging
import os
import re
import sys
from typing import Callable, Sequence

import jax
from absl import flags
from ml_collections import config_flags

from medjax import cli, platform, rundir
from medjax import config as config_lib
from medjax.analysis import pretrained
from medjax.analysis.seed_ensemble import write_seed_ensemble
from medjax.errors import ConfigError
from medjax.data import load_dataset
from medjax.data.base import check_batch_size, with_labelled_subset
from medjax.train import compile_time
from medjax.train.registry import model_spec
from medjax.train.results import results_table
from medjax.train.seeds import config_for_seed, train_seeds

log = logging.getLogger("medjax")


def default_workdir(config) -> str:
  suffix = "" if config.data.dir else "-synthetic"
  return os.path.join("runs", f"{config.experiment}{suffix}")


def initialize_distributed() -> None:
  """jax.distributed.initialize, from explicit environment variables where they are set."""
  env = os.environ
  kwargs = {}
  if "JAX_COORDINATOR_ADDRESS" in env:
    kwargs = {"coordinator_address": env["JAX_COORDINATOR_ADDRESS"],
              "num_processes": int(env["JAX_NUM_PROCESSES"]),
              "process_id": int(env["JAX_PROCESS_ID"])}
  if jax.default_backend() == "cpu":
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)
  log.info("process %d of %d, %d local / %d global devices", jax.process_index(),
           jax.process_count(), jax.local_device_count(), jax.device_count())


def load_data(config):
  """The Dataset of a resolved config: from the files (`medjax.data.load_dataset`), or from
  their prepared TFDS data set with data.source="tfds" (the same arrays in the same order)."""
  if config.data.source != "tfds":
    return load_dataset(config.dataset, config.data, config.data.seed)
  try:
    from medjax.data.tfds import source
  except ImportError as e:
    raise ConfigError(f"data.source='tfds' needs TensorFlow and TensorFlow Datasets ({e}): "
                      "pip install 'medjax[data]'") from None
  return source.load_dataset(config.dataset, config.data, config.data.seed)


def check_run(config, dataset) -> None:
  """Checks that need the data, before anything is written into the workdir."""
  check_batch_size(config.batch_size, len(dataset.train), dataset.source or dataset.name)
  if dataset.val is not None:
    neg, pos = dataset.val.class_counts
    if min(neg, pos) <= 2:
      log.warning("the validation split has %d positive and %d negative examples: the best "
                  "checkpoint is chosen on noise; use more data, a larger data.val_fraction, "
                  "or --config.eval_checkpoint=last", pos, neg)


def run(config, workdir: str | None = None, *, overwrite: bool = False) -> dict:
  """Resolves `config`, loads its data, trains, evaluates; returns results.json's content."""
  config = config_lib.resolve(config)
  workdir = workdir or default_workdir(config)
  compile_time.begin_run()  # results.json's compile_time counts from here
  init = pretrained.load(config)  # config.init_from; refused before the workdir exists
  with rundir.locked(workdir):  # a second process on this workdir stops here, in seconds
    # The labelled subset depends on the run's seed: seed k labels the same examples for every
    # model, and the seeds of a cell differ in which examples they label.
    dataset = with_labelled_subset(load_data(config), config.data.num_labelled, config.seed)
    check_run(config, dataset)
    spec = model_spec(config.model)
    log.info("%s: workdir %s, %d epochs, batch %d, %s, %s on %s", config.experiment, workdir,
             config.num_epochs, config.batch_size, spec.learning_rates(config), config.dtype,
             jax.devices()[0].device_kind)
    return spec.train(config, workdir, dataset, overwrite=overwrite,
                      **({"init": init} if init is not None else {}))


def run_seeds(config, seeds, workdirs, *, overwrite: bool = False,
              stack: bool | None = None) -> list[dict]:
  """Trains `config` once per seed into its workdir; returns the results in seed order.

  With `stack` (None: `platform.stack_seeds_default()`, i.e. on GPU/TPU), the seeds of a
  stackable model (CNN, ResNet) train together in one vmapped step (`medjax.train.seeds`);
  otherwise, and for the DBN and SGAN, whose training has phases of its own, one seed after
  another. Every seed uses the data split of `config.data.seed` (default: the first seed).
  """
  seeds = [int(s) for s in seeds]
  config = config_lib.resolve(_with_data_seed(config, seeds[0]))
  if stack is None:
    stack = platform.stack_seeds_default()
  spec = model_spec(config.model)
  if (len(seeds) == 1 or not spec.stackable or not stack or config.init_from
      or config.data.num_labelled is not None):  # each seed labels its own subset
    return [run(config_for_seed(config, s), w, overwrite=overwrite)
            for s, w in zip(seeds, workdirs)]
  compile_time.begin_run()
  with rundir.locked(*workdirs):
    dataset = load_data(config)
    check_run(config, dataset)
    log.info("%s: seeds %s stacked, workdirs %s, %d epochs, batch %d, %s, %s on %s",
             config.experiment, seeds, ", ".join(workdirs), config.num_epochs,
             config.batch_size, spec.learning_rates(config), config.dtype,
             jax.devices()[0].device_kind)
    return train_seeds(config, seeds, workdirs, dataset, overwrite=overwrite)


def _with_data_seed(config, seed: int):
  """`config` with data.seed set to `seed` where it is unset (a copy; `config` is unchanged)."""
  c = copy.deepcopy(config)
  if c.data.seed is None:
    c.data.seed = int(seed)
  return c


def define_flags(fv: flags.FlagValues, config, argv: Sequence[str]) -> None:
  """The flags of an experiment around its default `config` (`argv`: the command line, which
  ml_collections reads to know the --config.<field> overrides)."""
  try:
    config_flags.DEFINE_config_dict(
        "config", config, "Experiment config; override any field with --config.<field>=VALUE.",
        flag_values=fv, lock_config=True, sys_argv=["medjax", *argv])
  except (AttributeError, KeyError) as e:  # ml_collections' word for an unknown field
    hint = re.search(r'Did you mean "([\w.]+)"', str(e))
    unknown = [a.split("=")[0] for a in argv if a.lstrip("-").startswith("config.")
               and not _has_field(config, a.split("=")[0].lstrip("-")[len("config."):])]
    raise ConfigError(f"{', '.join(unknown) or 'a --config flag'}: no such config field"
                      + (f" (did you mean {hint.group(1)}?)" if hint else "")) from None
  flags.DEFINE_string("workdir", None, "Output directory (default: runs/<experiment>[-synthetic]).",
                      flag_values=fv)
  flags.DEFINE_bool("overwrite", False, "Discard an existing run in --workdir and start over.",
                    flag_values=fv)
  flags.DEFINE_list("seeds", None,
                    "Train these seeds (e.g. 0,1,2) into <workdir>/seed<k>, sharing the split "
                    "of the first. Overrides --config.seed.", flag_values=fv)
  flags.DEFINE_enum("stack_seeds", "auto", ["auto", "on", "off"],
                    "With --seeds: train CNN/ResNet seeds together in one vmapped step ('auto': "
                    "on GPU/TPU, off on CPU where it is slower).", flag_values=fv)
  flags.DEFINE_bool("distributed", False,
                    "Multi-host run: call jax.distributed.initialize() first (coordinator, "
                    "process count and id from the cluster (SLURM, ...) or from "
                    "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID).",
                    flag_values=fv)


def _has_field(config, path: str) -> bool:
  for key in path.split("."):
    if not hasattr(config, "keys") or key not in config:
      return False
    config = config[key]
  return True


def experiment(get_config: Callable, argv: Sequence[str] | None = None, doc: str = "") -> list[dict]:
  """The command line of an experiment file: `argv` (default: `sys.argv[1:]`) -> trained
  model(s); returns the results of each seed (one without --seeds). `--help` shows `doc`, the
  flags and the config's fields."""
  argv = list(sys.argv[1:] if argv is None else argv)
  config = get_config()
  more_help = ("\n  --config.<field>=VALUE: override a config field (any of those below)\n\n"
               "config fields (defaults):\n" + cli.config_help(config, config_lib.HELP))
  fv = cli.parse_flags(functools.partial(define_flags, config=config, argv=argv), argv, doc,
                       more_help=more_help, skip_in_help=("config",))
  if fv.distributed:
    initialize_distributed()
  platform.enable_compilation_cache()
  if not fv.seeds and fv.stack_seeds != "auto":
    raise ConfigError(f"--stack_seeds applies to --seeds (several seeds), and there is one "
                      f"model here: drop --stack_seeds={fv.stack_seeds}")
  if not fv.seeds:
    results = run(fv.config, fv.workdir, overwrite=fv.overwrite)
    print("\n" + results_table(results), flush=True)
    return [results]
  seeds = cli.parse_seeds(fv.seeds)
  if fv.config.seed != config_lib.base_config("luna", "cnn").seed:
    raise ConfigError(f"--seeds replaces --config.seed: drop --config.seed={fv.config.seed}, "
                      "or add it to --seeds")
  workdir = fv.workdir or default_workdir(fv.config)
  workdirs = [rundir.seed_workdir(workdir, s) for s in seeds]
  stack = {"auto": None, "on": True, "off": False}[fv.stack_seeds]
  results = run_seeds(fv.config, seeds, workdirs, overwrite=fv.overwrite, stack=stack)
  for r in results:
    print("\n" + results_table(r), flush=True)
  if len(seeds) > 1 and rundir.is_writer():
    ens = write_seed_ensemble(workdirs, os.path.join(workdir, "ensemble"))
    t = ens["test"]
    print(f"\nensemble of seeds {seeds} (mean probability): accuracy {t['accuracy']:.4f}, "
          f"AUC {t['auc']:.4f} -> {os.path.join(workdir, 'ensemble')}", flush=True)
  return results


def main(get_config: Callable, doc: str | None = None) -> None:
  """`python -m experiments.<name>`: `experiment` from the shell (`doc`, default: the main
  module's docstring, is what --help shows)."""
  doc = doc if doc is not None else sys.modules["__main__"].__doc__ or ""
  cli.run(lambda argv: experiment(get_config, argv, doc))


def console_main() -> None:
  """`medjax-train <dataset>_<model> [flags]`, the console script for any experiment file."""
  names = sorted(f"{d}_{m}" for d, m in config_lib.PAPER_TABLE2)
  if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
    print("usage: medjax-train <experiment> [--workdir=DIR] [--config.<field>=VALUE ...]\n"
          f"experiments: {', '.join(names)}\n"
          "`medjax-train <experiment> --help` lists its flags and config fields.",
          file=sys.stderr)
    sys.exit(0 if sys.argv[1:2] in (["--help"], ["-h"]) else 2)
  name = sys.argv[1]
  if name not in names:
    cli.fail(f"unknown experiment {name!r}; known: {', '.join(names)}")
  module = importlib.import_module(f"experiments.{name}")
  cli.run(lambda argv: experiment(module.get_config, argv, module.__doc__), sys.argv[2:])
