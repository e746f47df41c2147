"""Shared entry point of the experiment files: flags -> resolved config -> train -> results.

    python -m experiments.<dataset>_<model> [--workdir=DIR] [--overwrite] [--config.<field>=VALUE]
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import jax

from medjax import cli, platform, rundir
from medjax import config as config_lib
from medjax.analysis import pretrained
from medjax.analysis.seed_ensemble import write_seed_ensemble
from medjax.errors import ConfigError
from medjax.data import load_dataset
from medjax.data.base import with_labelled_subset
from medjax.train.registry import model_spec
from medjax.train.results import results_table
from medjax.train.seeds import config_for_seed, train_seeds

log = logging.getLogger("medjax")

setup_logging = cli.setup_logging


def default_workdir(config) -> str:
  suffix = "" if config.data.dir else "-synthetic"
  return os.path.join("runs", f"{config.experiment}{suffix}")


def enable_compilation_cache() -> None:
  """Persistent XLA cache: a re-run loads its compiled steps instead of compiling them again."""
  cache = os.environ.get("MEDJAX_JAX_CACHE",
                         os.path.join(os.path.expanduser("~"), ".cache", "medjax", "jax"))
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


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
  n = len(dataset.train)
  if config.batch_size > n:
    raise ConfigError(f"batch_size {config.batch_size} is larger than the {n} training examples "
                      f"of {dataset.source or dataset.name}; set --config.batch_size <= {n}")
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
  import copy
  c = copy.deepcopy(config)
  if c.data.seed is None:
    c.data.seed = int(seed)
  return c


def seed_workdirs(workdir: str, seeds) -> list[str]:
  return [os.path.join(workdir, f"seed{s}") for s in seeds]


def main(get_config, doc: str | None = None) -> None:
  """Defines the flags around `get_config()` and runs the experiment under absl (`--help`
  shows `doc`, default: the main module's docstring, and the config's fields)."""
  from absl import flags
  from ml_collections import config_flags

  config = get_config()
  config_flags.DEFINE_config_dict(
      "config", config, "Experiment config; override any field with --config.<field>=VALUE "
      "(the fields are listed above).", lock_config=True)
  flags.DEFINE_string("workdir", None, "Output directory (default: runs/<experiment>[-synthetic]).")
  flags.DEFINE_bool("overwrite", False, "Discard an existing run in --workdir and start over.")
  flags.DEFINE_list("seeds", None,
                    "Train these seeds (e.g. 0,1,2) into <workdir>/seed<k>, sharing the split "
                    "of the first. Overrides --config.seed.")
  flags.DEFINE_enum("stack_seeds", "auto", ["auto", "on", "off"],
                    "With --seeds: train CNN/ResNet seeds together in one vmapped step ('auto': "
                    "on GPU/TPU, off on CPU where it is slower).")
  flags.DEFINE_bool("distributed", False,
                    "Multi-host run: call jax.distributed.initialize() first (coordinator, "
                    "process count and id from the cluster (SLURM, ...) or from "
                    "JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID).")
  names = ("workdir", "overwrite", "seeds", "stack_seeds", "distributed")
  cli.show_in_help("config", *names)
  main_module = sys.modules["__main__"]
  doc = doc or main_module.__doc__ or ""
  if any(a in ("--help", "-h", "--helpshort", "-?") for a in sys.argv[1:]):
    print(doc.rstrip() + "\n\nflags:\n" + cli.flags_help(names) +
          "\n  --config.<field>=VALUE: override a config field (any of those below)\n\n"
          "config fields (defaults):\n" + cli.config_help(config))
    sys.exit(0)

  def _main(argv):
    if len(argv) > 1:
      raise ConfigError(f"unexpected arguments: {argv[1:]} (flags are --name=value)")
    setup_logging()
    FLAGS = flags.FLAGS
    if FLAGS.distributed:
      initialize_distributed()
    enable_compilation_cache()
    if not FLAGS.seeds and FLAGS.stack_seeds != "auto":
      raise ConfigError(f"--stack_seeds applies to --seeds (several seeds), and there is one "
                        f"model here: drop --stack_seeds={FLAGS.stack_seeds}")
    if FLAGS.seeds:
      seeds = cli.parse_seeds(FLAGS.seeds)
      if FLAGS.config.seed != config_lib.base_config("luna", "cnn").seed:
        raise ConfigError(f"--seeds replaces --config.seed: drop --config.seed="
                          f"{FLAGS.config.seed}, or add it to --seeds")
      workdir = FLAGS.workdir or default_workdir(FLAGS.config)
      stack = {"auto": None, "on": True, "off": False}[FLAGS.stack_seeds]
      workdirs = seed_workdirs(workdir, seeds)
      for results in run_seeds(FLAGS.config, seeds, workdirs, overwrite=FLAGS.overwrite,
                               stack=stack):
        print("\n" + results_table(results), flush=True)
      if len(seeds) > 1 and rundir.is_writer():
        ens = write_seed_ensemble(workdirs, os.path.join(workdir, "ensemble"))
        t = ens["test"]
        print(f"\nensemble of seeds {seeds} (mean probability): accuracy {t['accuracy']:.4f}, "
              f"AUC {t['auc']:.4f} -> {os.path.join(workdir, 'ensemble')}", flush=True)
      return
    results = run(FLAGS.config, FLAGS.workdir, overwrite=FLAGS.overwrite)
    print("\n" + results_table(results), flush=True)

  cli.run(_main)


def console_main() -> None:
  """`medjax-train <dataset>_<model> [flags]`, the console script for any experiment file."""
  names = sorted(f"{d}_{m}" for d, m in config_lib.PAPER_TABLE2)
  if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
    print("usage: medjax-train <experiment> [--workdir=DIR] [--config.<field>=VALUE ...]\n"
          f"experiments: {', '.join(names)}\n"
          "`medjax-train <experiment> --help` lists its flags and config fields.",
          file=sys.stderr)
    sys.exit(0 if sys.argv[1:2] in (["--help"], ["-h"]) else 2)
  name = sys.argv.pop(1)
  if name not in names:
    cli.fail(f"unknown experiment {name!r}; known: {', '.join(names)}")
  module = importlib.import_module(f"experiments.{name}")
  main(module.get_config, doc=module.__doc__)
