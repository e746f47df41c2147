"""Robustness of trained models to image noise and to lower spatial resolution.

    python -m experiments.robustness --workdirs='runs/table2/*/seed0' [--out=runs/robustness]
    python -m experiments.robustness --workdirs=runs/luna_cnn-synthetic,runs/luna_resnet-synthetic

For each finished run (a workdir with config.json, results.json and checkpoints, of any model)
the test split is rebuilt from the run's own config, the checkpoint that results.json names is
restored (`medjax.analysis.restore`), and the model is evaluated on test images with added
Gaussian noise (sigma in NOISE, on the [0, 1] scale, clipped) and at lower effective resolution
(downsampled by each FACTOR with antialiasing, then upsampled back, bilinear). A seed ensemble's
directory is evaluated as the mean of its members. Writes robustness.json, robustness.csv and
robustness.png (accuracy and AUC against noise and against resolution, one line per run).
"""

from __future__ import annotations

import glob
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from medjax import cli, platform
from medjax.analysis.restore import restore
from medjax.data import load_dataset
from medjax.errors import UserError
from medjax.eval.metrics import classification_metrics
from medjax.eval import plots
from medjax.rundir import write_csv, write_json

NOISE = (0.0, 0.02, 0.05, 0.1, 0.2)
FACTORS = (1.0, 0.75, 0.5, 0.25)

log = logging.getLogger("medjax")


def add_noise(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
  """float32 [0, 1] images plus N(0, sigma^2) noise, clipped to [0, 1]."""
  x = images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
  if sigma == 0:
    return x
  noise = np.random.default_rng(seed).normal(0, sigma, x.shape).astype(np.float32)
  return np.clip(x + noise, 0.0, 1.0)


def lower_resolution(images: np.ndarray, factor: float) -> np.ndarray:
  """Down- then up-sampling: the same size, the detail of a `factor` times smaller image."""
  x = images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else 1.0)
  if factor == 1.0:
    return x
  n, h, w, c = x.shape
  small = (n, max(1, round(h * factor)), max(1, round(w * factor)), c)
  down = jax.image.resize(jnp.asarray(x), small, "linear", antialias=True)
  return np.asarray(jax.image.resize(down, x.shape, "linear", antialias=False))


def evaluate_run(workdir: str, noise=NOISE, factors=FACTORS) -> list[dict]:
  """Accuracy and AUC of the run in `workdir` on its test split under each perturbation."""
  run = restore(workdir)
  config = run.config
  test = load_dataset(config.dataset, config.data, config.data.seed).test
  majority = float(max(np.mean(test.labels), 1 - np.mean(test.labels)))
  rows = []
  for kind, values, transform in (("noise", noise, add_noise),
                                  ("resolution", factors, lower_resolution)):
    for v in values:
      m = classification_metrics(test.labels, run.predict(transform(test.images, v)),
                                 seed=config.seed)
      rows.append({"run": config.experiment, "workdir": workdir, "perturbation": kind,
                   "value": v, "accuracy": m["accuracy"], "auc": m["auc"],
                   "synthetic": run.synthetic, "smoke": bool(config.smoke),
                   "majority": majority})
      log.info("%s %s=%g: accuracy %.4f, AUC %s", config.experiment, kind, v, m["accuracy"],
               "n/a" if m["auc"] is None else f"{m['auc']:.4f}")
  return rows


def plot(rows: list[dict], path: str) -> None:
  """Accuracy (top) and AUC (bottom) against noise (left) and resolution (right), a line per
  run, on fixed axes from 0.4 to 1, with the majority-class accuracy and AUC 0.5 dashed."""
  fig, axes = plots.plt.subplots(2, 2, figsize=(11, 7.5), dpi=110, layout="constrained")
  runs = sorted({(r["run"], r["workdir"]) for r in rows})
  unique_names = len({run for run, _ in runs}) == len(runs)
  for j, (kind, values, xlabel) in enumerate((
      ("noise", NOISE, "Gaussian noise sigma (image scale [0, 1])"),
      ("resolution", FACTORS, "resolution factor (1 = original)"))):
    for i, (metric, name) in enumerate((("accuracy", "accuracy"), ("auc", "ROC AUC"))):
      ax = axes[i][j]
      for n, (run, wd) in enumerate(runs):
        pts = sorted((r["value"], r[metric]) for r in rows if r["workdir"] == wd and
                     r["perturbation"] == kind and r[metric] is not None)
        if pts:
          ax.plot(*zip(*pts), "o-", color=f"C{n % 10}",
                  label=run if unique_names else f"{run} ({os.path.basename(wd)})")
      majority = {wd: r["majority"] for r in rows if r.get("majority") is not None
                  for wd in [r["workdir"]]}
      if metric == "auc":
        ax.axhline(0.5, color="0.5", linestyle="--", lw=1, zorder=3, label="chance (AUC 0.5)")
      elif len(set(majority.values())) == 1:
        value = next(iter(majority.values()))
        ax.axhline(value, color="0.5", linestyle="--", lw=1, zorder=3,
                   label=f"majority class ({value:.3f})")
      else:  # runs on different test sets: each run's own baseline in its colour
        label = "majority class (run colour)"
        for n, (run, wd) in enumerate(runs):
          if wd in majority:
            ax.axhline(majority[wd], color=f"C{n % 10}", linestyle="--", lw=0.8, label=label)
            label = None
      observed = [r[metric] for r in rows if r[metric] is not None]
      ax.set_ylim(min(0.4, np.floor(10 * min(observed, default=0.4)) / 10), 1.0)
      ax.set_xticks(sorted({r["value"] for r in rows if r["perturbation"] == kind} | set(values)))
      if kind == "resolution":
        ax.invert_xaxis()
      ax.set_title(f"{name} under {'added noise' if kind == 'noise' else 'lower resolution'}")
      ax.set_xlabel(xlabel)
      ax.set_ylabel(name)
      ax.grid(alpha=0.3)
  handles, labels = axes[0][0].get_legend_handles_labels()
  auc_handles, auc_labels = axes[1][0].get_legend_handles_labels()
  handles.append(auc_handles[auc_labels.index("chance (AUC 0.5)")])
  labels.append("chance (AUC 0.5)")
  fig.legend(handles, labels, loc="outside right upper", fontsize=8, frameon=False)
  marks = plots.data_marks(any(r.get("synthetic") for r in rows),
                           any(r.get("smoke") for r in rows))
  plots.set_title(fig, f"Robustness of {len(runs)} trained model{'s' * (len(runs) != 1)} "
            "(test split)", marks)
  plots.save_figure(fig, path)


def define_flags(fv) -> None:
  flags.DEFINE_string("workdirs", None, "Comma-separated run directories or glob patterns "
                      "(required).", flag_values=fv)
  flags.DEFINE_string("out", os.path.join("runs", "robustness"), "Output directory for "
                      "robustness.json, .csv and .png.", flag_values=fv)


def main(argv=None) -> list[dict]:
  """`argv`: the flags (default: sys.argv[1:])."""
  args = cli.parse_flags(define_flags, argv, __doc__)
  platform.enable_compilation_cache()
  if not args.workdirs:
    raise UserError("--workdirs is required")
  workdirs = sorted({d for pattern in args.workdirs.split(",") for d in glob.glob(pattern)
                     if os.path.exists(os.path.join(d, "results.json"))})
  if not workdirs:
    raise UserError(f"no finished runs (with results.json) match {args.workdirs!r}")
  rows = [r for wd in workdirs for r in evaluate_run(wd)]
  os.makedirs(args.out, exist_ok=True)
  write_json(os.path.join(args.out, "robustness.json"), rows)
  write_csv(os.path.join(args.out, "robustness.csv"), list(rows[0]),
            [[r[k] for k in rows[0]] for r in rows])
  plot(rows, os.path.join(args.out, "robustness.png"))
  print(f"written: {args.out}/robustness.json, robustness.csv, robustness.png")
  return rows
