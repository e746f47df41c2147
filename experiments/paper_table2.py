"""The paper's Table 2 grid: every dataset x model cell, over several seeds.

    python -m experiments.paper_table2 --smoke                    # whole grid in minutes (CPU)
    python -m experiments.paper_table2 --seeds=0,1,2 --luna_dir=/data/luna16_patches \
        --hip_dir=/data/hip_xray --cells='luna_*,hip128_crop_*'

Each cell runs its experiment (experiments/<cell>.py) into <workdir>/<cell>/seed<k>; seeds with
a results.json are not re-run. Every seed and model of a dataset uses one data split
(--data_seed); the seeds vary init, batch order and augmentation. On a GPU/TPU the seeds of a
CNN or ResNet cell train together in one vmapped step (medjax.train.seeds; --stack=on|off
overrides), the DBN's and SGAN's, and all of them on a CPU, one by one. Real data where a --*_dir flag points to it, the embedded
synthetic data otherwise (marked in the table). Writes <workdir>/table2.md, table2.csv (accuracy
mean +- std, AUC, sensitivity, specificity, the paper's accuracy beside each) and
confusion_matrices.png (all cells, seed 0, like the paper's Fig. 6).
"""

from __future__ import annotations

import csv
import fnmatch
import importlib
import json
import logging
import os

import numpy as np

PAPER = {  # Table 2 of Liu et al. (2021): test accuracy %
    ("luna", "cnn"): 92.5, ("luna", "resnet"): 93.1, ("luna", "dbn"): 89.4,
    ("luna", "sgan"): 80.0,
    ("hip128_crop", "cnn"): 89.2, ("hip128_crop", "resnet"): 95.2,
    ("hip128_crop", "dbn"): 76.2, ("hip128_crop", "sgan"): 75.0,
    ("hip128_full", "cnn"): 82.6, ("hip128_full", "resnet"): 93.6,
    ("hip128_full", "dbn"): 70.1, ("hip128_full", "sgan"): 69.5,
    ("hip256_crop", "cnn"): 86.0, ("hip256_crop", "resnet"): 90.1,
    ("hip256_crop", "sgan"): 74.4,
    ("hip256_full", "cnn"): 80.7, ("hip256_full", "resnet"): 87.5,
    ("hip256_full", "sgan"): 64.1,
}
DATASETS = ("luna", "hip128_crop", "hip128_full", "hip256_crop", "hip256_full")
MODELS = ("cnn", "resnet", "dbn", "sgan")
CELLS = [f"{d}_{m}" for d in DATASETS for m in MODELS if (d, m) in PAPER]

log = logging.getLogger("medjax")


def select_cells(patterns: str | None) -> list[str]:
  if not patterns:
    return list(CELLS)
  chosen = [c for c in CELLS if any(fnmatch.fnmatch(c, p.strip()) for p in patterns.split(","))]
  if not chosen:
    raise ValueError(f"--cells={patterns!r} matches none of {CELLS}")
  return chosen


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
             epochs: int | None, stack: bool | None = None, data_seed: int = 0) -> list[dict]:
  """Each seed's results.json content, training the seeds that have none (CNN and ResNet seeds
  together in one vmapped step when `stack`; None: on GPU/TPU, not on CPU)."""
  from experiments import _runner
  paths = {s: os.path.join(workdir, cell, f"seed{s}") for s in seeds}
  done = {}
  for s in seeds:
    path = os.path.join(paths[s], "results.json")
    if os.path.exists(path):
      log.info("%s seed %d: done already (%s)", cell, s, path)
      with open(path) as f:
        done[s] = json.load(f)
  todo = [s for s in seeds if s not in done]
  if todo:
    config = cell_config(cell, smoke=smoke, data_dirs=data_dirs, epochs=epochs,
                         data_seed=data_seed)
    log.info("%s seed(s) %s: training into %s", cell, todo, ", ".join(paths[s] for s in todo))
    for s, r in zip(todo, _runner.run_seeds(config, todo, [paths[s] for s in todo],
                                            stack=stack)):
      done[s] = r
  return [done[s] for s in seeds]


def summarize(results: dict[str, list[dict]]) -> list[dict]:
  rows = []
  for cell, runs in results.items():
    dataset, model = cell.rsplit("_", 1)
    t = [r["test"] for r in runs]

    def stat(key):
      vals = [x[key] for x in t if x[key] is not None]
      return (float(np.mean(vals)), float(np.std(vals))) if vals else (None, None)

    acc, acc_sd = stat("accuracy")
    rows.append({"cell": cell, "dataset": dataset, "model": model,
                 "data": "synthetic" if runs[0]["synthetic"] else "real",
                 "seeds": len(runs), "accuracy": acc, "accuracy_std": acc_sd,
                 "auc": stat("auc")[0], "sensitivity": stat("sensitivity")[0],
                 "specificity": stat("specificity")[0],
                 "paper_accuracy": PAPER[(dataset, model)] / 100})
  return rows


def _pct(x, digits=1):
  return "—" if x is None else f"{100 * x:.{digits}f}"


def _acc(row) -> str:
  """Accuracy %, with the std over seeds when there are several."""
  if row["seeds"] < 2:
    return _pct(row["accuracy"])
  return f"{_pct(row['accuracy'])} ± {_pct(row['accuracy_std'])}"


def _num(x):
  return "—" if x is None else f"{x:.3f}"


def write_tables(rows: list[dict], workdir: str) -> None:
  with open(os.path.join(workdir, "table2.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)
  lines = ["# Table 2: test accuracy % (mean ± std over seeds), medjax vs the paper", "",
           "| dataset | data | " + " | ".join(MODELS) + " |",
           "|---|---|" + "---|" * len(MODELS)]
  for dataset in DATASETS:
    cells = {r["model"]: r for r in rows if r["dataset"] == dataset}
    if not cells:
      continue
    kind = ", ".join(sorted({r["data"] for r in cells.values()}))
    out = []
    for model in MODELS:
      r = cells.get(model)
      if r is None:
        out.append("—" if (dataset, model) not in PAPER else "not run")
      else:
        out.append(f"{_acc(r)} (paper {r['paper_accuracy'] * 100:.1f})")
    lines.append(f"| {dataset} | {kind} | " + " | ".join(out) + " |")
  lines += ["", "| cell | data | seeds | accuracy % | AUC | sensitivity | specificity | paper % |",
            "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['cell']} | {r['data']} | {r['seeds']} | {_acc(r)} | "
                 f"{_num(r['auc'])} | {_num(r['sensitivity'])} | "
                 f"{_num(r['specificity'])} | {r['paper_accuracy'] * 100:.1f} |")
  with open(os.path.join(workdir, "table2.md"), "w") as f:
    f.write("\n".join(lines) + "\n")


def plot_confusion_matrices(results: dict[str, list[dict]], path: str) -> None:
  """All cells' test confusion matrices (first seed) in one figure, like the paper's Fig. 6."""
  from medjax.eval.plots import plot_confusion_matrix, plt
  cells = list(results)
  cols = len(MODELS)
  rows_n = len({c.rsplit("_", 1)[0] for c in cells})
  fig, axes = plt.subplots(rows_n, cols, figsize=(3.2 * cols, 3.0 * rows_n), dpi=100,
                           squeeze=False)
  datasets = [d for d in DATASETS if any(c.startswith(d + "_") for c in cells)]
  for i, dataset in enumerate(datasets):
    for j, model in enumerate(MODELS):
      ax = axes[i][j]
      cell = f"{dataset}_{model}"
      if cell in results:
        r = results[cell][0]
        plot_confusion_matrix(r["test"]["confusion_matrix"], ax,
                              f"{cell} ({100 * r['test']['accuracy']:.1f}%)")
      else:
        ax.axis("off")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def main(argv=None) -> list[dict]:
  import argparse
  p = argparse.ArgumentParser(description="Run the paper's Table 2 grid.")
  p.add_argument("--workdir", default=os.path.join("runs", "table2"))
  p.add_argument("--cells", default=None, help="comma-separated glob patterns, e.g. 'luna_*'")
  p.add_argument("--seeds", default="0", help="comma-separated seeds")
  p.add_argument("--smoke", action="store_true", help="tiny models, little data: minutes on CPU")
  p.add_argument("--epochs", type=int, default=None, help="override num_epochs of every cell")
  p.add_argument("--luna_dir", default=None, help="LUNA16 data (patch folder or raw layout)")
  p.add_argument("--hip_dir", default=None, help="hip X-ray folder")
  p.add_argument("--data_seed", type=int, default=0,
                 help="seed of the data split, shared by every seed and model")
  p.add_argument("--stack", choices=("auto", "on", "off"), default="auto",
                 help="train the seeds of a CNN/ResNet cell in one vmapped step (auto: on GPU/TPU, "
                      "off on CPU, where it is slower)")
  args = p.parse_args(argv)
  from experiments._runner import enable_compilation_cache, setup_logging
  setup_logging()
  enable_compilation_cache()
  workdir = args.workdir + ("-smoke" if args.smoke and args.workdir.endswith("table2") else "")
  os.makedirs(workdir, exist_ok=True)
  seeds = [int(s) for s in args.seeds.split(",")]
  cells = select_cells(args.cells)
  data_dirs = {"luna": args.luna_dir, "hip": args.hip_dir}
  results = {}
  for n, cell in enumerate(cells, 1):
    log.info("[%d/%d] %s", n, len(cells), cell)
    results[cell] = run_cell(cell, seeds, workdir, smoke=args.smoke, data_dirs=data_dirs,
                             epochs=args.epochs,
                             stack={"auto": None, "on": True, "off": False}[args.stack],
                             data_seed=args.data_seed)
  rows = summarize(results)
  write_tables(rows, workdir)
  plot_confusion_matrices(results, os.path.join(workdir, "confusion_matrices.png"))
  print(open(os.path.join(workdir, "table2.md")).read())
  print(f"written: {workdir}/table2.md, table2.csv, confusion_matrices.png")
  return rows


if __name__ == "__main__":
  main()
