"""Transfer: one cell trained from scratch and from a finished run's weights, the same budget.

    python -m experiments.transfer --cell=hip128_crop_resnet \\
        --init_from=runs/luna16_patches/luna_resnet/seed1 --epochs=6 --workdir=runs/transfer
    python -m experiments.transfer --smoke                # tiny models, the whole study in minutes

Two arms of the cell's experiment (experiments/<cell>.py), identical but for their start:

  scratch   the model's own random initialisation
  init      `init_from=<--init_from>`: the source run's tested checkpoint, fitted to the cell
            (`medjax.train.transfer`: a new head where the class count differs; every layer
            trains, or only the head with --freeze_backbone)

Both train `--epochs` epochs per seed on the same split (`--data_seed`), choose their checkpoint
on the same validation split and are tested on the same test split. Runs go into
<workdir>/<arm>/seed<k> (finished ones are not trained again; a finished run of other epochs is
an error naming it); <workdir>/transfer.md and transfer.csv hold accuracy and AUC (mean and std
over seeds), the best epoch, the training minutes and the source per arm.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from absl import flags

from experiments.paper_table2 import CELLS, cell_config, majority
from medjax import cli, platform, runner
from medjax.errors import ConfigError
from medjax.rundir import read_results, seed_workdir, write_csv, write_text

log = logging.getLogger("medjax")

ARMS = ("scratch", "init")


def arm_config(arm: str, cell: str, seed: int, *, init_from: str, epochs: int, smoke: bool,
               data_dir: str | None, data_seed: int, freeze_backbone: bool):
  """The cell's config for one arm and seed."""
  dataset = cell.rsplit("_", 1)[0]
  config = cell_config(cell, smoke=smoke, epochs=epochs, data_seed=data_seed,
                       data_dirs={"luna" if dataset == "luna" else "hip": data_dir})
  config.seed = seed
  if arm == "init":
    config.init_from = init_from
    config.freeze_backbone = freeze_backbone
  return config


def run_arm(arm: str, cell: str, seeds: list[int], workdir: str, *, epochs: int,
            **kwargs) -> list[dict]:
  """Each seed's results.json content, training those that have none."""
  out = []
  for seed in seeds:
    path = seed_workdir(os.path.join(workdir, arm), seed)
    results = read_results(os.path.join(path, "results.json"))
    if results is not None and results.get("epochs") != epochs:
      raise ConfigError(f"{path}/results.json is a finished run of {results.get('epochs')} "
                        f"epochs, not --epochs={epochs}: use another --workdir")
    if results is None:
      log.info("%s, seed %d: training into %s", arm, seed, path)
      results = runner.run(arm_config(arm, cell, seed, epochs=epochs, **kwargs), path)
    else:
      log.info("%s, seed %d: done already (%s)", arm, seed, path)
    out.append(results)
  return out


def summarize(results: dict[str, list[dict]], source: str) -> list[dict]:
  rows = []
  for arm, runs in results.items():
    t = [r["test"] for r in runs]
    acc, auc = [x["accuracy"] for x in t], [x["auc"] for x in t]
    rows.append({
        "arm": arm, "cell": runs[0]["experiment"],
        "data": "synthetic" if runs[0]["synthetic"] else "real",
        "smoke": any(r.get("smoke", False) for r in runs),
        "init_from": source if arm == "init" else "",
        "seeds": " ".join(str(r["seed"]) for r in runs), "epochs": runs[0]["epochs"],
        "accuracy": float(np.mean(acc)), "accuracy_std": float(np.std(acc)),
        "auc": float(np.mean(auc)), "auc_std": float(np.std(auc)),
        "best_epoch": " ".join(str(r["checkpoint"]["epoch"]) for r in runs),
        "majority": majority(runs[0]),
        "train_minutes": float(np.mean([r["train_seconds"] for r in runs])) / 60})
  return rows


def write_tables(rows: list[dict], workdir: str) -> None:
  write_csv(os.path.join(workdir, "transfer.csv"), list(rows[0]),
            ([r[k] for k in rows[0]] for r in rows))
  marks = []
  if any(r["data"] == "synthetic" for r in rows):
    marks.append("**SYNTHETIC DATA**")
  if any(r["smoke"] for r in rows):
    marks.append("**SMOKE RUN (tiny models)**")
  lines = [f"# Transfer: {rows[0]['cell']} from scratch and from a finished run", "",
           *([" ".join(marks), ""] if marks else []),
           "| start | seeds | epochs | accuracy % | AUC | best epoch | majority % "
           "| train min / seed |", "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    start = "scratch" if r["arm"] == "scratch" else f"init_from `{r['init_from']}`"
    sd = r["seeds"].count(" ") > 0
    acc = f"{100 * r['accuracy']:.1f}" + (f" ± {100 * r['accuracy_std']:.1f}" if sd else "")
    auc = f"{r['auc']:.3f}" + (f" ± {r['auc_std']:.3f}" if sd else "")
    lines.append(f"| {start} | {r['seeds']} | {r['epochs']} | {acc} | {auc} | "
                 f"{r['best_epoch']} | {100 * r['majority']:.1f} | {r['train_minutes']:.1f} |")
  lines += ["", "Both arms: the same split, budget, validation choice of the checkpoint and test "
            "split; train min: wall time of training per seed on the machine in each "
            "results.json."]
  write_text(os.path.join(workdir, "transfer.md"), "\n".join(lines) + "\n")


def smoke_source(cell: str) -> str:
  """The cell whose smoke run --smoke starts the init arm from: the LUNA16 cell of the model
  for the CNN and ResNet-50 (any input size), the other crop/full variant of the same size for
  the DBN and SGAN, whose weights fix their input size (a LUNA16 cell: itself)."""
  dataset, model = cell.rsplit("_", 1)
  if model in ("cnn", "resnet") or dataset == "luna":
    return f"luna_{model}"
  size, variant = dataset.split("_")
  return f"{size}_{'full' if variant == 'crop' else 'crop'}_{model}"


def define_flags(fv) -> None:
  flags.DEFINE_string("cell", "hip128_crop_resnet", f"The cell, one of {CELLS}.",
                      flag_values=fv)
  flags.DEFINE_string("init_from", None, "A finished run (workdir) or weights file to start "
                      "the init arm from (required unless --smoke).", flag_values=fv)
  flags.DEFINE_integer("epochs", 6, "Epochs of both arms.", lower_bound=1, flag_values=fv)
  flags.DEFINE_list("seeds", ["0"], "Seeds of both arms.", flag_values=fv)
  flags.DEFINE_string("data_dir", None, "The cell's data (default: the embedded synthetic set).",
                      flag_values=fv)
  flags.DEFINE_integer("data_seed", 0, "Seed of the split, shared by both arms.", flag_values=fv)
  flags.DEFINE_bool("freeze_backbone", False, "The init arm trains its head only.",
                    flag_values=fv)
  flags.DEFINE_bool("smoke", False, "Tiny models, little data; without --init_from the init "
                    "arm starts from a smoke run of another cell of the same model "
                    "(smoke_source), trained first into <workdir>/source.", flag_values=fv)
  flags.DEFINE_string("workdir", None, "Output directory (default: runs/transfer[-smoke]).",
                      flag_values=fv)


def main(argv=None) -> list[dict]:
  FLAGS = cli.parse_flags(define_flags, argv, __doc__)
  platform.enable_compilation_cache()
  if FLAGS.cell not in CELLS:
    raise ConfigError(f"--cell must be one of {CELLS}, got {FLAGS.cell!r}")
  workdir = FLAGS.workdir or os.path.join("runs", "transfer-smoke" if FLAGS.smoke else "transfer")
  seeds = cli.parse_seeds(FLAGS.seeds)
  init_from = FLAGS.init_from
  if not init_from:
    if not FLAGS.smoke:
      raise ConfigError("--init_from is required: a finished run's workdir or a weights file")
    source_cell = smoke_source(FLAGS.cell)
    init_from = os.path.join(workdir, "source")
    if read_results(os.path.join(init_from, "results.json")) is None:
      log.info("smoke: training the source run %s into %s", source_cell, init_from)
      runner.run(cell_config(source_cell, smoke=True, data_dirs={}, epochs=1), init_from)
  kwargs = dict(init_from=init_from, smoke=FLAGS.smoke, data_dir=FLAGS.data_dir,
                data_seed=FLAGS.data_seed, freeze_backbone=FLAGS.freeze_backbone)
  results = {arm: run_arm(arm, FLAGS.cell, seeds, workdir, epochs=FLAGS.epochs, **kwargs)
             for arm in ARMS}
  rows = summarize(results, init_from)
  write_tables(rows, workdir)
  print(open(os.path.join(workdir, "transfer.md")).read())
  return rows


def console_main() -> None:
  cli.run(main)


if __name__ == "__main__":
  console_main()
