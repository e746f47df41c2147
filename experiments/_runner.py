"""Shared entry point of the experiment files: flags -> resolved config -> train -> results.

    python -m experiments.<dataset>_<model> [--workdir=DIR] [--overwrite] [--config.<field>=VALUE]
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import jax

from medjax import config as config_lib
from medjax.data import load_dataset
from medjax.train.loop import results_table
from medjax.train.seeds import config_for_seed, train_seeds

log = logging.getLogger("medjax")

# model -> "module:function" with signature (config, workdir, dataset, *, overwrite) -> results.
# Imported lazily, so a model's dependencies load only when it runs.
TRAINERS = {
    "cnn": "medjax.train.loop:train_and_evaluate",
    "resnet": "medjax.train.loop:train_and_evaluate",
    "dbn": "medjax.train.dbn:train_and_evaluate",
    "sgan": "medjax.train.sgan:train_and_evaluate",
}


def trainer_for(model: str):
  if model not in TRAINERS:
    raise ValueError(f"no trainer for model {model!r}; known: {sorted(TRAINERS)}")
  module, function = TRAINERS[model].split(":")
  return getattr(importlib.import_module(module), function)


def setup_logging() -> None:
  """INFO lines with a time stamp on stdout; the libraries' chatter only from WARNING up."""
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s",
                      datefmt="%H:%M:%S", stream=sys.stdout, force=True)
  for noisy in ("absl", "jax._src", "orbax", "orbax.checkpoint"):
    logging.getLogger(noisy).setLevel(logging.WARNING)


def default_workdir(config) -> str:
  suffix = "" if config.data.dir else "-synthetic"
  return os.path.join("runs", f"{config.experiment}{suffix}")


def enable_compilation_cache() -> None:
  """Persistent XLA cache: ResNet-50 compiles in ~1.5 s instead of ~12 s on a re-run (CPU)."""
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


def run(config, workdir: str | None = None, *, overwrite: bool = False) -> dict:
  """Resolves `config`, loads its data, trains, evaluates; returns results.json's content."""
  config = config_lib.resolve(config)
  workdir = workdir or default_workdir(config)
  dataset = load_dataset(config.dataset, config.data, config.data.seed)
  log.info("%s: workdir %s, %d epochs, batch %d, lr %g, %s on %s", config.experiment, workdir,
           config.num_epochs, config.batch_size, config.learning_rate, config.dtype,
           jax.devices()[0].device_kind)
  return trainer_for(config.model)(config, workdir, dataset, overwrite=overwrite)


STACKABLE = ("cnn", "resnet")  # models whose seeds can train together in one vmapped step


def stack_by_default() -> bool:
  """Stacked seeds pay off on accelerators; on XLA:CPU a vmapped step of N models is slower than
  N steps (measured, batch 20 / 50x50: CNN 8 seeds 1,821 vs 4,608 img/s; ResNet-50 4 seeds 49
  vs 65 img/s), so CPU runs train seeds one by one."""
  return jax.default_backend() != "cpu"


def run_seeds(config, seeds, workdirs, *, overwrite: bool = False,
              stack: bool | None = None) -> list[dict]:
  """Trains `config` once per seed into its workdir; returns the results in seed order.

  With `stack` (None: `stack_by_default()`, i.e. on GPU/TPU), CNN and ResNet seeds train
  together in one vmapped step (`medjax.train.seeds`); otherwise, and for the DBN and SGAN,
  whose training has phases of its own, one seed after another. Every seed uses the data split
  of `config.data.seed` (default: the first seed).
  """
  seeds = [int(s) for s in seeds]
  config = config_lib.resolve(_with_data_seed(config, seeds[0]))
  if stack is None:
    stack = stack_by_default()
  if len(seeds) == 1 or config.model not in STACKABLE or not stack:
    return [run(config_for_seed(config, s), w, overwrite=overwrite)
            for s, w in zip(seeds, workdirs)]
  dataset = load_dataset(config.dataset, config.data, config.data.seed)
  log.info("%s: seeds %s stacked, workdirs %s, %d epochs, batch %d, lr %g, %s on %s",
           config.experiment, seeds, ", ".join(workdirs), config.num_epochs, config.batch_size,
           config.learning_rate, config.dtype, jax.devices()[0].device_kind)
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


def main(get_config) -> None:
  """Defines the flags around `get_config()` and runs the experiment under absl."""
  from absl import app, flags
  from ml_collections import config_flags

  config_flags.DEFINE_config_dict("config", get_config(), "Experiment config.",
                                  lock_config=True)
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

  def _main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    setup_logging()
    FLAGS = flags.FLAGS
    if FLAGS.distributed:
      initialize_distributed()
    enable_compilation_cache()
    if FLAGS.seeds:
      workdir = FLAGS.workdir or default_workdir(FLAGS.config)
      seeds = [int(s) for s in FLAGS.seeds]
      stack = {"auto": None, "on": True, "off": False}[FLAGS.stack_seeds]
      for results in run_seeds(FLAGS.config, seeds, seed_workdirs(workdir, seeds),
                               overwrite=FLAGS.overwrite, stack=stack):
        print("\n" + results_table(results), flush=True)
      return
    results = run(FLAGS.config, FLAGS.workdir, overwrite=FLAGS.overwrite)
    print("\n" + results_table(results), flush=True)

  app.run(_main)
