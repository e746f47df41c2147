"""The ensemble of several seeds of one experiment: the mean of their test probabilities.

    python -m experiments.luna_cnn --seeds=0,1,2      # also writes <workdir>/ensemble/

`write_seed_ensemble(seed_workdirs, out)` reads each seed's `predictions.csv` (the same test
examples in the same order: the seeds share one data split) and `results.json`, and writes into
`out` a `predictions.csv` whose probabilities are exactly the mean of the seeds', and a
`results.json` with every test metric of a single run (accuracy with its interval, AUC,
sensitivity, specificity, confusion matrix, ECE) plus the seeds it averages and their workdirs
(`members`), through which `medjax.analysis.restore.restore(out)` loads the ensemble's models.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from medjax.errors import DataError
from medjax.eval import calibration, metrics
from medjax.rundir import read_predictions, read_results, write_json, write_predictions


def write_seed_ensemble(seed_workdirs: Sequence[str], out: str) -> dict[str, Any]:
  """Averages the seeds' test probabilities; writes out/predictions.csv and out/results.json."""
  if len(seed_workdirs) < 2:
    raise DataError(f"an ensemble needs at least 2 seeds, got {len(seed_workdirs)}")
  runs = []
  for w in seed_workdirs:
    path = os.path.join(w, "predictions.csv")
    predictions = read_predictions(path)
    if predictions is None:
      raise DataError(f"{path} is missing: {w} has no finished run")
    names, labels, probs = predictions
    path = os.path.join(w, "results.json")
    results = read_results(path)
    if results is None:
      raise DataError(f"{path} is missing: {w} has no finished run")
    runs.append((names, labels, probs, results))
  names, labels = runs[0][0], runs[0][1]
  for w, (n, l, _, _) in zip(seed_workdirs[1:], runs[1:]):
    if n != names or not np.array_equal(l, labels):
      raise DataError(f"{w} was tested on other examples than {seed_workdirs[0]}: an ensemble "
                      "needs the seeds' shared data split (data.seed)")
  mean = np.mean([r[2] for r in runs], axis=0)
  first = runs[0][3]
  test = metrics.classification_metrics(labels, mean, seed=0)
  test["ece"] = round(calibration.expected_calibration_error(labels, mean), 6)
  n_pos = int(labels.sum())
  seeds = [r[3]["seed"] for r in runs]
  results = {
      "experiment": first["experiment"], "model": first["model"], "dataset": first["dataset"],
      "synthetic": first["synthetic"], "ensemble": True, "seeds": seeds,
      "epochs": first["epochs"], "n_train": first["n_train"], "n_test": len(labels),
      "test": test,
      "train_seconds": round(sum(r[3]["train_seconds"] for r in runs), 2),
      "majority_accuracy": round(max(n_pos, len(labels) - n_pos) / len(labels), 6),
      "members": [os.path.relpath(w, out) for w in seed_workdirs],
      "smoke": bool(first.get("smoke", False)),
  }
  os.makedirs(out, exist_ok=True)
  # Every digit: the ensemble's file is exactly the mean of the members' files.
  write_predictions(os.path.join(out, "predictions.csv"), names, labels, mean, exact=True)
  write_json(os.path.join(out, "results.json"), results)
  return results
