"""Binary classification metrics computed once from all predictions of a split.

Clinical names: sensitivity = TP / (TP + FN) (recall of positives), specificity = TN / (TN + FP).
The confusion matrix is [[TN, FP], [FN, TP]]: rows are the true label 0/1, columns the prediction.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(labels, predictions) -> np.ndarray:
  """2x2 int matrix [[TN, FP], [FN, TP]]."""
  labels = np.asarray(labels, np.int64)
  predictions = np.asarray(predictions, np.int64)
  if labels.shape != predictions.shape:
    raise ValueError(f"labels {labels.shape} and predictions {predictions.shape} differ")
  for name, v in (("labels", labels), ("predictions", predictions)):
    if not np.isin(v, (0, 1)).all():
      raise ValueError(f"{name} must be 0 or 1")
  return np.bincount(2 * labels + predictions, minlength=4).reshape(2, 2)


def roc_auc(labels, scores) -> float:
  """Area under the ROC curve: the Mann-Whitney U statistic with average ranks for ties.

  Equals the probability that a random positive scores above a random negative (ties count 1/2).
  Raises ValueError when a class is absent, since the AUC is then undefined.
  """
  labels = np.asarray(labels)
  scores = np.asarray(scores, np.float64)
  n_pos = int(np.sum(labels == 1))
  n_neg = int(np.sum(labels == 0))
  if n_pos == 0 or n_neg == 0:
    raise ValueError(f"AUC needs both classes, got {n_pos} positive and {n_neg} negative")
  if not np.isfinite(scores).all():
    raise ValueError("scores contain NaN or Inf")
  order = np.argsort(scores, kind="mergesort")
  sorted_scores = scores[order]
  ranks = np.empty(len(scores), np.float64)
  # Average rank (1-based) within each run of equal scores.
  boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
  starts = np.concatenate([[0], boundaries])
  ends = np.concatenate([boundaries, [len(scores)]])
  for s, e in zip(starts, ends):
    ranks[order[s:e]] = (s + e + 1) / 2
  u = ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2
  return float(u / (n_pos * n_neg))


def bootstrap_accuracy_ci(correct, *, n_resamples: int = 2000, level: float = 0.95,
                          seed: int = 0) -> tuple[float, float]:
  """Percentile bootstrap interval for accuracy, resampling examples with replacement."""
  correct = np.asarray(correct, np.float64)
  if correct.size == 0:
    raise ValueError("no predictions")
  rng = np.random.default_rng(seed)
  means = np.empty(n_resamples)
  for start in range(0, n_resamples, 250):  # chunks bound memory for large splits
    stop = min(start + 250, n_resamples)
    idx = rng.integers(0, correct.size, size=(stop - start, correct.size))
    means[start:stop] = correct[idx].mean(axis=1)
  alpha = (1 - level) / 2
  lo, hi = np.quantile(means, [alpha, 1 - alpha])
  return float(lo), float(hi)


def _ratio(num, den):
  return float(num / den) if den else None


def classification_metrics(labels, prob_positive, *, threshold: float = 0.5,
                           seed: int = 0) -> dict:
  """accuracy, AUC, sensitivity, specificity, confusion matrix and a 95% CI for accuracy.

  Undefined values (AUC or sensitivity with no positives, ...) are None, never a made-up number.
  """
  labels = np.asarray(labels, np.int64)
  prob_positive = np.asarray(prob_positive, np.float64)
  predictions = (prob_positive >= threshold).astype(np.int64)
  cm = confusion_matrix(labels, predictions)
  (tn, fp), (fn, tp) = cm
  correct = predictions == labels
  try:
    auc = roc_auc(labels, prob_positive)
  except ValueError:
    auc = None
  return {
      "n": int(labels.size),
      "accuracy": float(correct.mean()),
      "auc": auc,
      "sensitivity": _ratio(tp, tp + fn),
      "specificity": _ratio(tn, tn + fp),
      "confusion_matrix": cm.tolist(),
      "accuracy_ci95": list(bootstrap_accuracy_ci(correct, seed=seed)),
  }
