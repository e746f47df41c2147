"""The paper's Table 2 grid: every dataset x model cell, over several seeds.

    python -m experiments.paper_table2 --smoke                    # whole grid in minutes (CPU)
    python -m experiments.paper_table2 --seeds=0,1,2 --luna_dir=/data/luna16_patches
        --hip_dir=/data/hip_xray --cells='luna_*,hip128_crop_*' --cell_epochs=luna_resnet=20
    python -m experiments.paper_table2 --seeds=0 --luna_dir=/data/luna16_patches \
        --cells='luna_resnet@100'            # the same cell at 100 epochs, as a row of its own

Each cell runs its experiment (experiments/<cell>.py) into <workdir>/<cell>/seed<k>; seeds with
a results.json are not re-run, and with several seeds their ensemble (mean probability) goes
into <workdir>/<cell>/ensemble. Every seed and model of a dataset uses one data split
(--data_seed); the seeds vary init, batch order and augmentation. On a GPU/TPU the seeds of a
CNN or ResNet cell train together in one vmapped step (medjax.train.seeds; --stack overrides).
Real data where a --*_dir flag points to it, the embedded synthetic data otherwise. Writes
<workdir>/table2.md and table2.csv (per cell: accuracy mean and std over seeds, AUC,
sensitivity, specificity, ECE, the majority baseline, epochs and the run they started from,
learning rate, training time, the paper's accuracy; one row per seed ensemble; synthetic and
smoke runs marked) and confusion_matrices.png (all cells, first seed, like the paper's Fig. 6).

`<cell>@<epochs>` (in --cells; the cell part may be a glob) trains that cell for that many epochs
as a run of its own: workdir <workdir>/<cell>@<epochs>/seed<k>, its own rows in the tables
(named so, beside the cell's other rows; the grid of the paper's layout and the figure show the
plain cells), so that one table can show, e.g., ResNet-50 at 20 epochs and at the paper's 100.

On the embedded synthetic hips, ResNet-50's 256 px cells start from their finished 128 px cell
(GROW_FROM; --noprogressive trains them from scratch), and the tables say so beside the epochs.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib
import logging
import os
import time

import numpy as np
from absl import flags

from medjax import cli, platform, runner
from medjax.analysis.seed_ensemble import write_seed_ensemble
from medjax.config import DATASETS, MODELS, PAPER_TABLE2
from medjax.errors import ConfigError, UserError
from medjax.eval.plots import data_marks, plot_confusion_matrix, plt, save_figure, set_title
from medjax.rundir import read_json, read_results, seed_workdir, write_csv, write_text
from medjax.train.driver import duration

PAPER = PAPER_TABLE2
CELLS = [f"{d}_{m}" for d in DATASETS for m in MODELS if (d, m) in PAPER]

log = logging.getLogger("medjax")


def split_name(name: str) -> tuple[str, int | None]:
  """(cell, epochs) of a grid entry: `luna_resnet` -> ("luna_resnet", None), `luna_resnet@100`
  -> ("luna_resnet", 100)."""
  cell, at, epochs = name.partition("@")
  return cell, (int(epochs) if at else None)


def select_cells(patterns: str | None) -> list[str]:
  """The cells matching any of the comma-separated glob `patterns` (all when unset), in the
  paper's order; `<pattern>@<epochs>` selects the matching cells at that many epochs as entries
  of their own (`luna_resnet@100`, after the plain cells). A pattern that matches no cell, or
  an @ that is not a positive whole number of epochs, is a ConfigError naming it (a typo would
  drop its cells silently)."""
  if not patterns:
    return list(CELLS)
  patterns = [p.strip() for p in patterns.split(",") if p.strip()]
  plain, extra = [], []
  for p in patterns:
    pattern, at, epochs = p.partition("@")
    if at and not (epochs.isdigit() and int(epochs) >= 1):
      raise ConfigError(f"--cells entry {p!r}: expected <cell pattern>@<epochs>, epochs a whole "
                        "number >= 1 (e.g. luna_resnet@100)")
    if not any(fnmatch.fnmatch(c, pattern) for c in CELLS):
      raise ConfigError(f"--cells pattern {pattern!r} matches no cell (it matches none of "
                        f"{CELLS})")
    (extra if at else plain).append((pattern, f"@{int(epochs)}" if at else ""))
  names = [c for c in CELLS if any(fnmatch.fnmatch(c, p) for p, _ in plain)]
  for c in CELLS:
    for p, suffix in extra:
      if fnmatch.fnmatch(c, p) and c + suffix not in names:
        names.append(c + suffix)
  return names


# Progressive resizing on the embedded synthetic hips (--progressive): ResNet-50 at 256 px starts
# from its finished 128 px cell of the same view and seed, the same images at half the size and
# the same split, and fine-tunes at 256 px. ResNet-50 needs more epochs on full radiographs
# than a 256 px epoch costs on 2 CPU cores; the smaller images give it those epochs (issue 22).
# ResNet-50 is input-size agnostic (global pooling); the CNN's and the SGAN's dense layers are
# not, and the DBN has no 256 px cells. BatchNorm's moving averages of 128 px inputs do not
# describe 256 px ones: these cells re-estimate them before each validation (bn_stats_batches).
GROW_FROM = {"hip256_crop_resnet": "hip128_crop_resnet",
             "hip256_full_resnet": "hip128_full_resnet"}


def grow_source(cell: str, data_dirs: dict, progressive: bool) -> str | None:
  """The 128 px cell a 256 px cell starts from, or None (real hip data, --noprogressive)."""
  if not progressive or data_dirs.get("hip"):
    return None
  return GROW_FROM.get(split_name(cell)[0])


def cell_config(cell: str, *, smoke: bool, data_dirs: dict, epochs: int | None,
                data_seed: int = 0):
  """The cell's experiment config, pointed at real data where given."""
  config = importlib.import_module(f"experiments.{cell}").get_config()
  config.smoke = smoke
  config.data.seed = data_seed  # one split for every seed and model of a dataset
  dataset = cell.rsplit("_", 1)[0]
  key = "luna" if dataset == "luna" else "hip"
  if data_dirs.get(key):
    config.data.dir = data_dirs[key]
  if epochs:
    config.num_epochs = epochs
  return config


def run_cell(cell: str, seeds: list[int], workdir: str, *, smoke: bool, data_dirs: dict,
             epochs: int | None, stack: bool | None = None, data_seed: int = 0,
             train: bool = True, init_cell: str | None = None) -> list[dict]:
  """Each seed's results.json content, training the seeds that have none (CNN and ResNet seeds
  together in one vmapped step when `stack`; None: on GPU/TPU, not on CPU). `train=False` only
  collects the seeds that are finished. `cell` may be `<cell>@<epochs>` (select_cells), which
  sets the epochs. A finished seed of other epochs than those asked for (`epochs` or the @) is
  a ConfigError naming it: one row never mixes step budgets. `init_cell`: each seed starts from
  that cell's finished run of the same seed (`init_from`; GROW_FROM); one not finished is a
  ConfigError saying what to run."""
  base, at_epochs = split_name(cell)
  epochs = at_epochs or epochs
  paths = {s: seed_workdir(os.path.join(workdir, cell), s) for s in seeds}
  done = {}
  for s in seeds:
    path = os.path.join(paths[s], "results.json")
    results = read_results(path)  # a damaged or diverged run is an error, never a result
    if results is not None and epochs and results.get("epochs") != epochs:
      raise ConfigError(f"{path} is a finished run of {results.get('epochs')} epochs, not the "
                        f"{epochs} asked for {cell}: ask for its epochs (--cell_epochs), or "
                        f"train the other budget as its own row ({base}@{epochs})")
    if results is not None:
      log.info("%s seed %d: done already (%s)", cell, s, path)
      done[s] = results
  todo = [s for s in seeds if s not in done]
  if todo and not train:
    log.info("%s seed(s) %s: not finished, left out (--collect)", cell, todo)
    return [done[s] for s in seeds if s in done]
  if todo:
    config = cell_config(base, smoke=smoke, data_dirs=data_dirs, epochs=epochs,
                         data_seed=data_seed)
    log.info("%s seed(s) %s: training into %s", cell, todo, ", ".join(paths[s] for s in todo))
    if init_cell is None:
      for s, r in zip(todo, runner.run_seeds(config, todo, [paths[s] for s in todo],
                                             stack=stack)):
        done[s] = r
    for s in todo if init_cell is not None else ():
      source = seed_workdir(os.path.join(workdir, init_cell), s)
      if read_results(os.path.join(source, "results.json")) is None:
        raise ConfigError(
            f"{cell} seed {s} starts from {init_cell}'s finished run of seed {s} (progressive "
            f"resizing on the synthetic hips), and {source} holds none: run --cells="
            f"{init_cell},{cell}, or pass --noprogressive to train {cell} from scratch")
      log.info("%s seed %d: starting from %s (progressive resizing)", cell, s, source)
      seed_config = copy.deepcopy(config)
      seed_config.init_from = source
      done[s] = runner.run_seeds(seed_config, [s], [paths[s]], stack=stack)[0]
  return [done[s] for s in seeds]


def cell_ensemble(cell: str, seeds: list[int], workdir: str) -> dict | None:
  """The ensemble of the cell's seeds (mean probability) in <workdir>/<cell>/ensemble."""
  if len(seeds) < 2:
    return None
  workdirs = [seed_workdir(os.path.join(workdir, cell), s) for s in seeds]
  missing = [s for s, w in zip(seeds, workdirs)
             if not os.path.exists(os.path.join(w, "predictions.csv"))]
  out = os.path.join(workdir, cell, "ensemble")
  if missing:  # e.g. a seed's results.json restored from results/ without its predictions
    kept = read_results(os.path.join(out, "results.json"))
    if kept is not None and kept.get("seeds") == list(seeds):
      log.info("%s: seed(s) %s have no predictions.csv; the ensemble of seeds %s written "
               "before is read back", cell, missing, seeds)
      return kept
    log.warning("%s: no ensemble row: seed(s) %s have results.json but no predictions.csv",
                cell, missing)
    return None
  return write_seed_ensemble(workdirs, out)


def summarize(results: dict[str, list[dict]], ensembles: dict[str, dict | None] | None = None
              ) -> list[dict]:
  """One row per cell (mean and std over seeds), and one per seed ensemble."""
  rows = []
  for cell, runs in results.items():
    dataset, model = split_name(cell)[0].rsplit("_", 1)
    t = [r["test"] for r in runs]

    def stat(key, values=t):
      vals = [x[key] for x in values if x.get(key) is not None]
      return (float(np.mean(vals)), float(np.std(vals))) if vals else (None, None)

    acc, acc_sd = stat("accuracy")
    base = {"cell": cell, "dataset": dataset, "model": model,
            "data": "synthetic" if runs[0]["synthetic"] else "real",
            "smoke": any(r.get("smoke", False) for r in runs),
            "epochs": runs[0]["epochs"], "learning_rate": runs[0].get("learning_rate"),
            "init": _init_cell(runs[0]),
            "n_train": runs[0]["n_train"],
            "n_test": runs[0]["n_test"],
            "majority": majority(runs[0]),
            "paper_accuracy": PAPER[(dataset, model)] / 100}
    rows.append({**base, "kind": "seeds", "seeds": len(runs),
                 "seed_list": " ".join(str(r["seed"]) for r in runs),
                 "accuracy": acc, "accuracy_std": acc_sd, "auc": stat("auc")[0],
                 "auc_std": stat("auc")[1], "sensitivity": stat("sensitivity")[0],
                 "specificity": stat("specificity")[0], "ece": stat("ece")[0],
                 "train_minutes": float(np.mean([r["train_seconds"] for r in runs])) / 60})
    ens = (ensembles or {}).get(cell)
    if ens is not None:
      e = ens["test"]
      rows.append({**base, "kind": "ensemble", "seeds": len(ens["seeds"]),
                   "seed_list": " ".join(map(str, ens["seeds"])), "accuracy": e["accuracy"],
                   "accuracy_std": None, "auc": e["auc"], "auc_std": None,
                   "sensitivity": e["sensitivity"], "specificity": e["specificity"],
                   "ece": e.get("ece"), "train_minutes": ens["train_seconds"] / 60})
  return rows


def majority(results: dict) -> float | None:
  """Accuracy of always answering the test split's larger class."""
  if results.get("majority_accuracy") is not None:
    return results["majority_accuracy"]
  (tn, fp), (fn, tp) = results["test"]["confusion_matrix"]
  n = tn + fp + fn + tp
  return max(tn + fp, fn + tp) / n if n else None


def _pct(x, digits=1):
  return "—" if x is None else f"{100 * x:.{digits}f}"


def _acc(row) -> str:
  """Accuracy %, with the std over seeds when there are several, "1 seed" otherwise."""
  if row["kind"] == "ensemble":
    return f"{_pct(row['accuracy'])} (ensemble of {row['seeds']})"
  if row["seeds"] < 2:
    return f"{_pct(row['accuracy'])} (1 seed)"
  return f"{_pct(row['accuracy'])} ± {_pct(row['accuracy_std'])} ({row['seeds']} seeds)"


def _num(x, sd=None):
  if x is None:
    return "—"
  return f"{x:.3f}" + (f" ± {sd:.3f}" if sd is not None else "")


def table_title(rows: list[dict]) -> str:
  marks = []
  if any(r["data"] == "synthetic" for r in rows):
    marks.append("SYNTHETIC DATA (not comparable with the paper's real-data figures)")
  if any(r["smoke"] for r in rows):
    marks.append("SMOKE RUN (tiny models, little data: tests the code, not the models)")
  title = "# Table 2: test accuracy % (mean ± std over seeds), medjax beside the paper"
  return title + "".join(f"\n\n**{m}**" for m in marks)


def crop_gaps(rows: list[dict]) -> list[tuple[int, str, float, float]]:
  """(size, model, medjax's crop minus full accuracy, the paper's), in points, for every model
  whose crop and full cells of one size are both in `rows` with the same seeds (plain cells,
  mean over seeds)."""
  plain = {(r["dataset"], r["model"]): (r["accuracy"], r.get("seed_list")) for r in rows
           if r["kind"] == "seeds" and split_name(r["cell"])[1] is None}
  gaps = []
  for size in (128, 256):
    for model in MODELS:
      crop, full = (plain.get((f"hip{size}_{view}", model)) for view in ("crop", "full"))
      if crop is not None and full is not None and crop[1] == full[1]:
        crop, full = crop[0], full[0]
        paper = PAPER[f"hip{size}_crop", model] - PAPER[f"hip{size}_full", model]
        gaps.append((size, model, 100 * (crop - full), paper))
  return gaps


def _crop_lines(rows: list[dict]) -> list[str]:
  """table2.md's section on cropping: each crop/full pair's gap beside the paper's, and the
  mean over the pairs."""
  gaps = crop_gaps(rows)
  if not gaps:
    return []
  paired = {(size, model) for size, model, _, _ in gaps}
  unpaired = sorted({(int(r["dataset"][3:6]), r["model"]) for r in rows
                     if r["kind"] == "seeds" and r["dataset"].startswith("hip")
                     and split_name(r["cell"])[1] is None} - paired)
  lines = ["", "Cropping to the hip: crop minus full image, test accuracy points (mean over "
           "seeds):", "", "| size | model | medjax | paper |", "|---|---|---|---|"]
  lines += [f"| {size} | {model} | {ours:+.1f} | {paper:+.1f} |"
            for size, model, ours, paper in gaps]
  lines.append(f"| mean of {len(gaps)} pairs | | {np.mean([g[2] for g in gaps]):+.1f} | "
               f"{np.mean([g[3] for g in gaps]):+.1f} |")
  if unpaired:
    lines += ["", "Left out (the crop and full cells have different seeds, or one is missing): " +
              ", ".join(f"{size} {model}" for size, model in unpaired) + "."]
  return lines


def write_tables(rows: list[dict], workdir: str) -> None:
  """table2.csv (every row) and table2.md (the grid, then one line per cell and ensemble)."""
  write_csv(os.path.join(workdir, "table2.csv"), list(rows[0]),
            ([r[k] for k in rows[0]] for r in rows))
  lines = [table_title(rows), "",
           "| dataset | data | " + " | ".join(MODELS) + " |",
           "|---|---|" + "---|" * len(MODELS)]
  for dataset in DATASETS:
    cells = {r["model"]: r for r in rows if r["dataset"] == dataset and r["kind"] == "seeds"
             and split_name(r["cell"])[1] is None}
    if not cells:
      continue
    kind = ", ".join(sorted({r["data"] for r in cells.values()}))
    out = []
    for model in MODELS:
      r = cells.get(model)
      if r is None:
        out.append("—" if (dataset, model) not in PAPER else "not run")
      else:
        out.append(f"{_acc(r)}; paper {r['paper_accuracy'] * 100:.1f}")
    lines.append(f"| {dataset} | {kind} | " + " | ".join(out) + " |")
  lines += _crop_lines(rows)
  lines += ["", "| cell | data | seeds | epochs | lr | accuracy % | AUC | sensitivity "
                "| specificity | ECE | majority % | train min / seed | paper % |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    name = r["cell"] + (" (ensemble)" if r["kind"] == "ensemble" else "")
    minutes = (r["train_minutes"] / r["seeds"] if r["kind"] == "ensemble"
               else r["train_minutes"])
    epochs = f"{r['epochs']} from {r['init']}" if r.get("init") else r["epochs"]
    lines.append(f"| {name} | {r['data']} | {r['seed_list']} | {epochs} | "
                 f"{_lr(r.get('learning_rate'))} | {_acc(r)} | "
                 f"{_num(r['auc'], r['auc_std'] if r['seeds'] > 1 else None)} | "
                 f"{_num(r['sensitivity'])} | "
                 f"{_num(r['specificity'])} | {_num(r['ece'])} | {_pct(r['majority'])} | "
                 f"{minutes:.1f} | {r['paper_accuracy'] * 100:.1f} |")
  lines += ["", "Accuracy on the test split of the checkpoint chosen on validation; epochs "
            "from <run>: started from that run (init_from; on the synthetic hips, ResNet-50 at 256 px "
            "from its 128 px cell: progressive resizing); "
            "lr: Adam's "
            "learning rate (the SGAN's discriminator's); majority: always answering the larger "
            "class; train min: wall time of training (validation included) per seed on the "
            "machine in each results.json."]
  write_text(os.path.join(workdir, "table2.md"), "\n".join(lines) + "\n")


def _init_cell(results: dict) -> str | None:
  """The grid cell a run started from (`init_from` of <grid>/<cell>/seed<k>), or the source as
  results.json says it; None for a run from scratch."""
  init = results.get("init_from")
  if not init:
    return None
  source = str(init.get("from", ""))  # e.g. "run /grid/hip128_full_resnet/seed0 (epoch 6)"
  parts = source.split()
  path = parts[1] if len(parts) > 1 and parts[0] == "run" else source
  cell = os.path.basename(os.path.dirname(path.rstrip("/")))
  return cell if cell in CELLS else source


def _lr(value) -> str:
  return "—" if value is None else f"{value:g}"


def plot_confusion_matrices(results: dict[str, list[dict]], path: str) -> None:
  """All cells' test confusion matrices (first seed) in one figure, like the paper's Fig. 6.

  The title is marked SYNTHETIC DATA / SMOKE RUN when a cell's results are (smoke read from the
  config.json of <dir of path>/<cell>/seed<k>, where run_cell trains it).
  """
  cells = list(results)
  cols = len(MODELS)
  datasets = [d for d in DATASETS if any(c.startswith(d + "_") for c in cells)]
  fig, axes = plt.subplots(len(datasets), cols, figsize=(3.2 * cols, 3.1 * len(datasets) + 0.6),
                           dpi=100, squeeze=False, layout="constrained")
  smoke = False
  for i, dataset in enumerate(datasets):
    for j, model in enumerate(MODELS):
      ax = axes[i][j]
      cell = f"{dataset}_{model}"
      if cell in results:
        r = results[cell][0]
        plot_confusion_matrix(r["test"]["confusion_matrix"], ax,
                              f"{cell}\n{100 * r['test']['accuracy']:.1f}% "
                              f"(paper {PAPER[(dataset, model)]:.1f}%)")
        config = read_json(os.path.join(seed_workdir(os.path.join(os.path.dirname(path), cell),
                                                     r["seed"]), "config.json"), "config")
        smoke = smoke or bool((config or {}).get("smoke"))
      else:
        ax.axis("off")
        if (dataset, model) in PAPER:  # a cell of the paper's grid that has no results here
          ax.text(0.5, 0.5, f"{cell}\nnot run", ha="center", va="center", color="0.5",
                  transform=ax.transAxes)
  seeds = sorted({runs[0]["seed"] for runs in results.values()})
  synthetic = any(runs[0]["synthetic"] for runs in results.values())
  set_title(fig, f"Test confusion matrices (seed {', '.join(map(str, seeds))}), accuracy beside "
            "the paper's Table 2", data_marks(synthetic, smoke), fontsize=13)
  save_figure(fig, path)


def define_flags(fv) -> None:
  flags.DEFINE_string("workdir", None, "Output directory (default: runs/table2, or "
                      "runs/table2-smoke with --smoke).", flag_values=fv)
  flags.DEFINE_string("cells", None, "Comma-separated glob patterns of cells, e.g. 'luna_*' "
                      "(default: all 18); <pattern>@<epochs> (e.g. luna_resnet@100) runs those "
                      "cells at that many epochs as rows of their own.", flag_values=fv)
  flags.DEFINE_list("seeds", ["0"], "Seeds of every cell (an ensemble row is added for 2+).",
                    flag_values=fv)
  flags.DEFINE_bool("smoke", False, "Tiny models, little data: the whole grid in minutes (CPU).",
                    flag_values=fv)
  flags.DEFINE_integer("epochs", None, "Override num_epochs of every cell.", flag_values=fv)
  flags.DEFINE_list("cell_epochs", [], "Per-cell epochs, e.g. luna_resnet=20,luna_sgan=10 "
                    "(after --epochs).", flag_values=fv)
  flags.DEFINE_string("luna_dir", None, "LUNA16 data (patch folder, raw layout or .npz); "
                      "default: the embedded synthetic CT volumes.", flag_values=fv)
  flags.DEFINE_string("hip_dir", None, "Hip X-ray folder; default: the embedded synthetic set.",
                      flag_values=fv)
  flags.DEFINE_integer("data_seed", 0, "Seed of the data split, shared by every seed and model.",
                       flag_values=fv)
  flags.DEFINE_bool("collect", False, "Train nothing: write the tables from the seeds that "
                    "are finished (a cell with none is left out).", flag_values=fv)
  flags.DEFINE_bool("progressive", True, "On the embedded synthetic hips, ResNet-50 at 256 px "
                    "starts from its 128 px cell of the same view and seed (GROW_FROM: "
                    "progressive resizing); --noprogressive trains it from scratch.",
                    flag_values=fv)
  flags.DEFINE_enum("stack", "auto", ["auto", "on", "off"], "Train the seeds of a CNN/ResNet "
                    "cell in one vmapped step (auto: on GPU/TPU, off on CPU, where it is slower).",
                    flag_values=fv)


def _cell_epochs(items, cells) -> dict[str, int]:
  out = {}
  for item in items:
    cell, _, value = item.partition("=")
    if split_name(cell)[1] is not None:
      raise ConfigError(f"--cell_epochs: {cell} has its epochs in its name already")
    if cell not in CELLS or not value.strip().isdigit() or int(value) < 1:
      raise ConfigError(f"--cell_epochs: expected <cell>=<epochs> with a cell of {CELLS}, "
                        f"got {item!r}")
    if cell not in cells:
      raise ConfigError(f"--cell_epochs names {cell}, which --cells does not select")
    out[cell] = int(value)
  return out


def _check_data_dirs(data_dirs: dict, cells) -> None:
  """A data folder for a dataset none of the cells uses would be ignored without a word."""
  for key, value in data_dirs.items():
    if value and not any((c.startswith("luna_") if key == "luna" else c.startswith("hip"))
                         for c in cells):
      raise ConfigError(f"--{key}_dir is not used: no {key} cell among {', '.join(cells)}")


def main(argv=None) -> list[dict]:
  """Runs the selected cells and writes the tables and the figure; `argv`: the flags (default
  sys.argv[1:])."""
  FLAGS = cli.parse_flags(define_flags, argv, __doc__)
  platform.enable_compilation_cache()
  workdir = FLAGS.workdir or os.path.join("runs", "table2-smoke" if FLAGS.smoke else "table2")
  seeds = cli.parse_seeds(FLAGS.seeds)
  cells = select_cells(FLAGS.cells)
  per_cell = _cell_epochs(FLAGS.cell_epochs, cells)
  data_dirs = {"luna": FLAGS.luna_dir, "hip": FLAGS.hip_dir}
  _check_data_dirs(data_dirs, cells)
  os.makedirs(workdir, exist_ok=True)
  results, ensembles = {}, {}
  t0 = time.perf_counter()
  for n, cell in enumerate(cells, 1):
    log.info("[%d/%d] %s", n, len(cells), cell)
    runs = run_cell(cell, seeds, workdir, smoke=FLAGS.smoke, data_dirs=data_dirs,
                    epochs=per_cell.get(cell, FLAGS.epochs),
                    stack={"auto": None, "on": True, "off": False}[FLAGS.stack],
                    data_seed=FLAGS.data_seed, train=not FLAGS.collect,
                    init_cell=grow_source(cell, data_dirs, FLAGS.progressive))
    if not runs:
      continue
    results[cell] = runs
    ensembles[cell] = cell_ensemble(cell, [r["seed"] for r in runs], workdir)
    elapsed = time.perf_counter() - t0
    log.info("grid: %d/%d cells done, elapsed %s%s", n, len(cells), duration(elapsed),
             f", ETA {duration(elapsed / n * (len(cells) - n))} at the mean time per cell so far"
             if n < len(cells) else "")
  if not results:
    raise UserError(f"no finished runs in {workdir} for the cells {', '.join(cells)}")
  rows = summarize(results, ensembles)
  write_tables(rows, workdir)
  plot_confusion_matrices(results, os.path.join(workdir, "confusion_matrices.png"))
  print(open(os.path.join(workdir, "table2.md")).read())
  print(f"written: {workdir}/table2.md, table2.csv, confusion_matrices.png")
  return rows


def console_main() -> None:
  """`medjax-grid` and `python -m experiments.paper_table2`."""
  cli.run(main)


if __name__ == "__main__":
  console_main()
