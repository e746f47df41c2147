"""What a finished run writes, shared by every trainer (supervised, DBN, SGAN) and the driver.

The driver validates each epoch with `predict` and `val_metrics`, picks the checkpoint to test
with `restore_for_test` and hands its test predictions to `write_results`:
  results.json             the results.json contract (README), plus context fields
  predictions.csv          name,label,prob_positive for every test example
  confusion_matrix.png and the run's report figures (`medjax.report`); froc.json / froc.png on
  patches cut from CT volumes
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import numpy as np

from medjax import platform, report
from medjax.data import Dataset, Split
from medjax.errors import DataError, WorkdirError
from medjax.eval import calibration, froc, plots
from medjax.eval import metrics as metrics_lib
from medjax.eval.plots import save_confusion_matrix
from medjax.rundir import is_writer, write_json, write_predictions
from medjax.train.checkpoint import Checkpoints

log = logging.getLogger(__name__)


def val_metrics(config, labels: np.ndarray, probs: np.ndarray, metric_name: str):
  """Validation metrics for metrics.jsonl ("val_*") and the checkpoint metric from the
  validation split's P(positive). An undefined metric (AUC with one class) falls back to
  accuracy."""
  val = metrics_lib.classification_metrics(labels, probs, seed=config.seed, ci=False)
  val["loss"] = calibration.negative_log_likelihood(labels, probs)  # = the 2-class cross-entropy
  value = val[config.checkpoint_metric]
  return ({f"val_{k}": v for k, v in val.items()},
          {metric_name: value if value is not None else val["accuracy"]})


def predict(eval_fn, state, split: Split, batch_size: int) -> np.ndarray:
  """P(positive) for every example ([..., n]: eval_fn may return [..., batch, K], e.g. one row
  per stacked model); the last batch is padded so eval compiles once (see `eval_batch`)."""
  probs = []
  for start in range(0, len(split), batch_size):
    images = split.images[start:start + batch_size]
    n = len(images)
    if n < batch_size:
      images = np.concatenate([images, np.zeros((batch_size - n, *images.shape[1:]),
                                                images.dtype)])
    probs.append(np.asarray(eval_fn(state, {"image": images}))[..., :n, 1])
  return np.concatenate(probs, axis=-1)


def eval_batch(dataset: Dataset, limit: int) -> int:
  """The one batch size of a run's validation and test predictions: the validation split (run
  every epoch) cut into equal batches of at most `limit`, so it is padded by less than one image
  a batch (80 hip validation images make one batch of 80, not one of 200 with 120 padded); the
  test split, predicted once, reuses that shape and compiles nothing new."""
  split = dataset.val if dataset.val is not None and len(dataset.val) else dataset.test
  n = len(split)
  return -(-n // -(-n // limit)) if n else limit


def restore_for_test(config, dataset: Dataset, ckpts: Checkpoints, state):
  """The checkpoint to test: the best by the validation metric (config.eval_checkpoint="best"
  and a validation split) or the last. `state` must be the latest epoch's. Closes `ckpts`."""
  use_best = config.eval_checkpoint == "best" and dataset.val is not None
  chosen = ckpts.best_epoch if use_best and ckpts.best_epoch is not None else ckpts.latest_epoch
  if chosen is None:
    raise WorkdirError("num_epochs must be >= 1: there is no checkpoint to evaluate")
  if chosen != ckpts.latest_epoch:
    state, _ = ckpts.restore(chosen, state)
  ckpts.close()
  return state, {"kind": "best" if use_best else "last", "epoch": int(chosen),
                 "metric": ckpts.metric if use_best else None}


def write_results(config, workdir: str, dataset: Dataset, probs: np.ndarray, *,
                  train_seconds: float, images_per_second: float | None,
                  checkpoint: dict[str, Any], extra: dict[str, Any] | None = None,
                  val_probs: np.ndarray | None = None) -> dict[str, Any]:
  """Test metrics from P(positive) of every test example -> results.json, predictions.csv and
  the run's figures in workdir. Shared by every trainer (supervised, DBN, SGAN).

  `val_probs` (the tested checkpoint on the validation split) fit the temperature reported in
  `calibration` beside the raw figures."""
  test = metrics_lib.classification_metrics(dataset.test.labels, probs, seed=config.seed)
  calibrate = val_probs is not None and config.temperature_scaling
  calib = calibration.calibration_report(
      dataset.test.labels, probs, dataset.val.labels if calibrate else None,
      val_probs if calibrate else None)
  test["ece"] = calib["ece"]
  if test["auc"] is not None:
    test["auc_ci95"] = metrics_lib.bootstrap_auc_ci(dataset.test.labels, probs, seed=config.seed)
  n_pos = int(np.sum(dataset.test.labels))
  results = {
      "experiment": config.experiment, "model": config.model, "dataset": config.dataset,
      "synthetic": dataset.synthetic, "seed": config.seed, "epochs": config.num_epochs,
      "n_train": len(dataset.train), "n_test": len(dataset.test), "test": test,
      "train_seconds": round(train_seconds, 2),
      "train_images_per_second": round(images_per_second, 1) if images_per_second else None,
      "n_val": len(dataset.val) if dataset.val is not None else 0,
      "majority_accuracy": round(max(n_pos, len(dataset.test) - n_pos) / len(dataset.test), 6),
      "calibration": calib,
      "checkpoint": checkpoint,
      "data_source": dataset.source, "batch_size": config.batch_size,
      "learning_rate": config.learning_rate, "dtype": config.dtype,
      "model_size": config.model_size, "smoke": bool(config.smoke),
      "device": jax.devices()[0].device_kind, "host": platform.host(),
      **(extra or {}),
  }
  if not is_writer():
    return results
  write_json(os.path.join(workdir, "results.json"), results)
  write_predictions(os.path.join(workdir, "predictions.csv"), dataset.test.names,
                    dataset.test.labels, probs)
  title = f"{config.experiment} seed {config.seed}"
  marks = plots.data_marks(dataset.synthetic, config.smoke)
  save_confusion_matrix(test["confusion_matrix"], os.path.join(workdir, "confusion_matrix.png"),
                        f"{title}: test, epoch {checkpoint['epoch']}", marks)
  meta = dataset.test.meta or {}
  if "seriesuid" in meta and "world" in meta:  # patches cut from CT volumes: LUNA16 scoring
    score_froc(workdir, dataset, meta, probs, title)
  report.write_run_report(workdir)
  return results


def score_froc(workdir: str, dataset: Dataset, meta, probs, title: str) -> None:
  """FROC / CPM of the tested scans (froc.json, froc.png), as the LUNA16 challenge scores them."""
  if dataset.annotations is None:
    froc.write_submission(os.path.join(workdir, "submission_luna16.csv"), meta["seriesuid"],
                          meta["world"], probs)
    log.info("FROC not scored: no annotations.csv known for %s (submission_luna16.csv written "
             "for `python -m medjax.eval.froc`)", dataset.source)
    return
  try:
    result = froc.write_run_froc(workdir, meta["seriesuid"], meta["world"], probs,
                                 dataset.annotations, dataset.excluded,
                                 synthetic=dataset.synthetic, title=f"{title}: FROC")
  except DataError as e:  # e.g. the tested scans hold no annotated nodule
    log.warning("FROC not scored: %s", e)
    return
  log.info("FROC on %d tested scans: CPM %.3f (froc.json, froc.png)", result["n_scans"],
           result["cpm"])


def _fmt(x, digits=4):
  return "n/a" if x is None else f"{x:.{digits}f}"


def results_table(results: dict[str, Any]) -> str:
  """A short plain-text summary of results.json."""
  t = results["test"]
  (tn, fp), (fn, tp) = t["confusion_matrix"]
  lo, hi = t["accuracy_ci95"]
  data = "synthetic" if results["synthetic"] else "real"
  ips = results["train_images_per_second"]
  rows = [
      f"{results['experiment']}  ({data} data, seed {results['seed']}, "
      f"{results['epochs']} epochs, checkpoint: {results['checkpoint']['kind']} "
      f"epoch {results['checkpoint']['epoch']})",
      f"  n_train {results['n_train']}, n_test {results['n_test']}",
      f"  accuracy     {t['accuracy']:.4f}  (95% CI {lo:.4f}-{hi:.4f})",
      f"  ROC AUC      {_fmt(t['auc'])}",
      f"  sensitivity  {_fmt(t['sensitivity'])}",
      f"  specificity  {_fmt(t['specificity'])}",
      f"  confusion    TN {tn}  FP {fp}  FN {fn}  TP {tp}",
      f"  training     {results['train_seconds']:.1f} s"
      + (f", {ips:,.0f} img/s steady" if ips else ""),
  ]
  return "\n".join(rows)
