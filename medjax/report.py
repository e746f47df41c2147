"""Figures of a run's workdir: training curves, ROC and precision-recall, one run or several.

    python -m medjax.report runs/luna_cnn-synthetic            # redraws that run's figures
    python -m medjax.report runs/table2/luna_cnn               # its seed*/ runs, overlaid
    python -m medjax.report runs/a runs/b --out=runs/compare   # several runs, overlaid

Reads metrics.jsonl (required), results.json, config.json and predictions.csv, and writes
training_curves.png (loss, accuracy and AUC against epoch, the checkpoint's epoch marked),
roc.png (test ROC, AUC with its 95% interval, the operating point at threshold 0.5) and pr.png
(precision-recall). One run is redrawn into its own workdir (or --out); several are overlaid,
a colour per run, into --out (default: the first run's parent directory). Titles name the
experiment and seed, and carry SYNTHETIC DATA / SMOKE RUN where that applies.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from typing import Any, Sequence

import numpy as np
from absl import flags

from medjax import cli
from medjax.errors import UserError, WorkdirError
from medjax.eval import calibration, plots
from medjax.eval.metrics import bootstrap_auc_ci, precision_recall_curve, roc_auc, roc_curve
from medjax.rundir import read_json, read_metrics, read_predictions, writing

log = logging.getLogger(__name__)

THRESHOLD = 0.5  # the operating point of results.json (metrics.classification_metrics)


# --- reading a run ----------------------------------------------------------------------------

@dataclasses.dataclass
class Run:
  """What a workdir holds; `results`, `config` and the predictions may be missing."""
  workdir: str
  metrics: list[dict[str, Any]]
  results: dict[str, Any] | None = None
  config: dict[str, Any] | None = None
  labels: np.ndarray | None = None
  probs: np.ndarray | None = None

  def _get(self, key, default=None):
    for source in (self.results, self.config):
      if source and source.get(key) is not None:
        return source[key]
    return default

  @property
  def experiment(self) -> str:
    return self._get("experiment", os.path.basename(os.path.normpath(self.workdir)))

  @property
  def seed(self) -> int | None:
    return self._get("seed")

  @property
  def synthetic(self) -> bool:
    if self.results is not None and "synthetic" in self.results:
      return bool(self.results["synthetic"])
    data = (self.config or {}).get("data") or {}
    return "dir" in data and not data["dir"]  # no data.dir: the embedded synthetic data

  @property
  def smoke(self) -> bool:
    return bool((self.config or {}).get("smoke"))

  @property
  def marks(self) -> list[str]:
    return plots.data_marks(self.synthetic, self.smoke)

  @property
  def best_epoch(self) -> int | None:
    return ((self.results or {}).get("checkpoint") or {}).get("epoch")

  @property
  def val_majority(self) -> float | None:
    """Accuracy of always predicting the validation split's larger class."""
    for record in reversed(self.metrics):
      cm = record.get("val_confusion_matrix")
      if cm:
        rows = np.asarray(cm).sum(axis=1)
        return float(rows.max() / rows.sum()) if rows.sum() else None
    return None


def load_run(workdir: str) -> Run:
  """Reads a run's files; UserError if `workdir` is not a run with metrics.jsonl."""
  if not os.path.isdir(workdir):
    raise UserError(f"{workdir}: no such directory")
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    raise UserError(f"{workdir}: no metrics.jsonl (not a run's workdir, or no epoch finished)")
  metrics = read_metrics(path)
  if not metrics:
    raise UserError(f"{path} is empty: no epoch finished")
  run = Run(workdir, metrics, read_json(os.path.join(workdir, "results.json"), "results"),
            read_json(os.path.join(workdir, "config.json"), "config"))
  predictions = read_predictions(os.path.join(workdir, "predictions.csv"))
  if predictions is not None and len(predictions[0]):
    _, run.labels, run.probs = predictions
  return run


def _natural_key(path: str):
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path)]


def expand_workdirs(paths: Sequence[str]) -> list[str]:
  """`paths`, with a directory that is not itself a run replaced by its runs (seed0/, seed1/...:
  every subdirectory with a metrics.jsonl)."""
  out = []
  for path in paths:
    if not os.path.isdir(path):
      raise UserError(f"{path}: no such directory")
    if os.path.exists(os.path.join(path, "metrics.jsonl")):
      out.append(path)
      continue
    runs = sorted((os.path.join(path, d) for d in os.listdir(path)
                   if os.path.isfile(os.path.join(path, d, "metrics.jsonl"))), key=_natural_key)
    if not runs:
      raise UserError(f"{path}: no metrics.jsonl, and no run directories (seed0/, ...) in it")
    out.extend(runs)
  return out


# --- figures ----------------------------------------------------------------------------------

def _run_labels(runs: Sequence[Run]) -> list[str]:
  """Short distinct legend labels: the seed, the experiment, or both, or the directory."""
  exps = [r.experiment for r in runs]
  seeds = [r.seed for r in runs]
  if len(set(zip(exps, seeds))) < len(runs):
    return [os.path.normpath(r.workdir) for r in runs]
  if len(set(exps)) == 1:
    return [f"seed {s}" for s in seeds]
  if len(set(seeds)) == 1:
    return exps
  return [f"{e} seed {s}" for e, s in zip(exps, seeds)]


def _describe(runs: Sequence[Run]) -> tuple[str, list[str]]:
  """"luna_cnn, seeds 0, 1, 2" and the union of the runs' marks."""
  exps = list(dict.fromkeys(r.experiment for r in runs))
  seeds = list(dict.fromkeys(r.seed for r in runs if r.seed is not None))
  text = ", ".join(exps)
  if seeds:
    text += f", seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
  marks = [m for m in (plots.SYNTHETIC_MARK, plots.SMOKE_MARK)
           if any(m in r.marks for r in runs)]
  return text, marks


def _test_curves(run: Run, label: str, n_bootstrap: int) -> tuple[dict, dict] | None:
  """ROC and PR curve dicts for plots.save_roc / save_precision_recall, or None."""
  if run.labels is None or len(set(run.labels.tolist())) < 2:
    return None
  labels, probs = run.labels, run.probs
  fpr, tpr = roc_curve(labels, probs)
  recall, precision, ap = precision_recall_curve(labels, probs)
  test = (run.results or {}).get("test") or {}
  auc = test.get("auc")
  if auc is None:
    auc = roc_auc(labels, probs)
  ci = test.get("auc_ci95")
  if ci is None and n_bootstrap:
    ci = bootstrap_auc_ci(labels, probs, n_resamples=n_bootstrap, seed=run.seed or 0)
  predicted = probs >= THRESHOLD
  tp = int(np.sum(predicted & (labels == 1)))
  fp = int(np.sum(predicted & (labels == 0)))
  n_pos, n_neg = int(labels.sum()), int(len(labels) - labels.sum())
  roc = {"label": label, "fpr": fpr, "tpr": tpr, "auc": auc, "auc_ci95": ci,
         "point": (fp / n_neg, tp / n_pos)}
  pr = {"label": label, "recall": recall, "precision": precision, "average_precision": ap,
        "prevalence": n_pos / len(labels),
        "point": (tp / n_pos, tp / (tp + fp)) if tp + fp else None}
  return roc, pr


def _write_figures(runs: Sequence[Run], out: str, n_bootstrap: int) -> list[str]:
  """The figures of `runs` in `out`; a folder that cannot be written (a read-only workdir) is
  one WorkdirError that says to pass --out."""
  with writing(out):
    os.makedirs(out, exist_ok=True)
  if not os.access(out, os.W_OK):
    raise WorkdirError(f"cannot write the figures into {out}: read-only; pass --out=DIR to "
                       "write them elsewhere")
  try:
    return _draw(runs, out, n_bootstrap)
  except WorkdirError as e:
    raise WorkdirError(f"{e}; pass --out=DIR to write the figures elsewhere") from None


def _draw(runs: Sequence[Run], out: str, n_bootstrap: int) -> list[str]:
  single = len(runs) == 1
  labels = [""] if single else _run_labels(runs)
  keys = labels if not single else [runs[0].experiment]
  text, marks = _describe(runs)
  majorities = {r.val_majority for r in runs}
  written = [os.path.join(out, "training_curves.png")]
  plots.save_training_curves(
      written[0], {k: r.metrics for k, r in zip(keys, runs)},
      title=f"{text}: training curves", marks=marks,
      best_epochs={k: r.best_epoch for k, r in zip(keys, runs)},
      majority=majorities.pop() if len(majorities) == 1 else None)
  curves = [c for c in (_test_curves(r, l, n_bootstrap) for r, l in zip(runs, labels)) if c]
  if not curves:
    log.info("no predictions.csv with both classes in %s: no ROC or PR figure",
             ", ".join(r.workdir for r in runs))
    return written
  n = {len(r.labels) for r in runs if r.labels is not None}
  where = f"test, {n.pop()} images" if len(n) == 1 else "test"
  if single and runs[0].best_epoch is not None:
    where += f", epoch {runs[0].best_epoch}"
  written += [os.path.join(out, "roc.png"), os.path.join(out, "pr.png"),
              os.path.join(out, "reliability.png")]
  plots.save_roc(written[1], [c[0] for c in curves], title=f"{text}: ROC ({where})",
                 marks=marks)
  plots.save_precision_recall(written[2], [c[1] for c in curves],
                              title=f"{text}: precision-recall ({where})", marks=marks)
  reliability = [{"label": c[0].get("label"),
                  "bins": calibration.reliability_bins(r.labels, r.probs),
                  "ece": calibration.expected_calibration_error(r.labels, r.probs)}
                 for r, c in zip([r for r in runs if r.labels is not None
                                  and len(set(r.labels.tolist())) == 2], curves)]
  plots.save_reliability(written[3], reliability,
                         title=f"{text}: calibration ({where})", marks=marks)
  return written


def write_run_report(workdir: str, out: str | None = None, *,
                     n_bootstrap: int = 1000) -> list[str]:
  """Draws training_curves.png, roc.png and pr.png of one run into `out` (default: the
  workdir); returns the paths written. ROC and PR need predictions.csv (a finished run)."""
  return _write_figures([load_run(workdir)], out or workdir, n_bootstrap)


def write_overlay_report(workdirs: Sequence[str], out: str, *,
                         n_bootstrap: int = 1000) -> list[str]:
  """The same figures with the runs overlaid, a colour per run, into `out`."""
  return _write_figures([load_run(w) for w in workdirs], out, n_bootstrap)


def report(paths: Sequence[str], out: str | None = None, *, n_bootstrap: int = 1000
           ) -> list[str]:
  """One run's figures, or an overlay when `paths` (parents expanded) name several runs."""
  if not paths:
    raise UserError("expected one or more WORKDIRs (run directories, or directories of runs)")
  workdirs = expand_workdirs(paths)
  if len(workdirs) == 1:
    return write_run_report(workdirs[0], out, n_bootstrap=n_bootstrap)
  out = out or os.path.dirname(os.path.normpath(workdirs[0])) or "."
  return write_overlay_report(workdirs, out, n_bootstrap=n_bootstrap)


# --- command line -----------------------------------------------------------------------------

def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string("out", None, "Directory for the figures (default: the workdir for one "
                      "run, the first run's parent directory for several).", flag_values=fv)
  flags.DEFINE_integer("bootstrap", 1000, "Bootstrap resamples for the AUC's 95% interval when "
                       "results.json has none (0: no interval).", lower_bound=0, flag_values=fv)


def main(argv: Sequence[str] | None = None) -> list[str]:
  """`python -m medjax.report WORKDIR [WORKDIR ...] [--out=DIR] [--bootstrap=N]`; returns the
  files written."""
  fv, workdirs = cli.parse_args(define_flags, argv, __doc__)
  written = report(workdirs, fv.out, n_bootstrap=fv.bootstrap)
  print("wrote " + ", ".join(written))
  return written


def console_main() -> None:
  """`medjax-report` and `python -m medjax.report`."""
  cli.run(main)


if __name__ == "__main__":
  console_main()
