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
                           seed: int = 0, ci: bool = True) -> dict:
  """accuracy, AUC, sensitivity, specificity, confusion matrix and (`ci`) a 95% bootstrap CI
  for accuracy (2,000 resamples: most of this function's time; the per-epoch validation skips
  it).

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
  out = {
      "n": int(labels.size),
      "accuracy": float(correct.mean()),
      "auc": auc,
      "sensitivity": _ratio(tp, tp + fn),
      "specificity": _ratio(tn, tn + fp),
      "confusion_matrix": cm.tolist(),
  }
  if ci:
    out["accuracy_ci95"] = list(bootstrap_accuracy_ci(correct, seed=seed))
  return out


# Curves for figures (medjax.report).

def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray]:
  """(fpr, tpr) at every distinct threshold, from (0, 0) to (1, 1); ties give one point."""
  labels, scores = _check(labels, scores)
  order = np.argsort(-scores, kind="mergesort")
  labels, scores = labels[order], scores[order]
  last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # end of each run of ties
  tps = np.cumsum(labels)[last]
  fps = (last + 1) - tps
  return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def precision_recall_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, float]:
  """(recall, precision, average precision): a point at each threshold that gains recall
  (recall increasing, from recall 0), AP = sum over them of (R_n - R_n-1) * P_n. Drawn as
  steps (`drawstyle="steps-pre"`), the area under the curve is the AP."""
  labels, scores = _check(labels, scores)
  order = np.argsort(-scores, kind="mergesort")
  labels, scores = labels[order], scores[order]
  last = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
  tps = np.cumsum(labels)[last]
  gains = np.diff(np.r_[0, tps]) > 0
  recall = tps[gains] / tps[-1]
  precision = tps[gains] / (last[gains] + 1)
  ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
  return np.r_[0.0, recall], np.r_[precision[0], precision], ap


def bootstrap_auc_ci(labels, scores, *, n_resamples: int = 1000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float] | None:
  """Percentile bootstrap interval of the ROC AUC (examples resampled with replacement; a
  resample with one class only is dropped). None if fewer than half the resamples are usable.

  A resample is a vector of multiplicities; its AUC counts, per positive, the negatives scored
  below it (ties 1/2), weighted by both multiplicities: no sorting per resample.
  """
  labels, scores = _check(labels, scores)
  rng = np.random.default_rng(seed)
  n = len(labels)
  uniq, rank = np.unique(scores, return_inverse=True)
  pos = labels == 1
  aucs = []
  chunk = max(1, min(n_resamples, 4_000_000 // (n + len(uniq))))  # bounds memory
  for start in range(0, n_resamples, chunk):
    weights = rng.multinomial(n, np.full(n, 1 / n), size=min(chunk, n_resamples - start))
    by_score = {}
    for name, mask in (("pos", pos), ("neg", ~pos)):
      w = np.zeros((len(uniq), len(weights)))
      np.add.at(w, rank[mask], weights[:, mask].T)
      by_score[name] = w.T  # [resamples, unique scores]
    neg, pos_w = by_score["neg"], by_score["pos"]
    below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos_w.sum(axis=1), neg.sum(axis=1)
    ok = (n_pos > 0) & (n_neg > 0)
    u = (pos_w * (below + 0.5 * neg)).sum(axis=1)
    aucs.append(u[ok] / (n_pos[ok] * n_neg[ok]))
  aucs = np.concatenate(aucs)
  if len(aucs) < n_resamples / 2:
    return None
  alpha = (1 - level) / 2
  lo, hi = np.quantile(aucs, [alpha, 1 - alpha])
  return float(lo), float(hi)


def _check(labels, scores) -> tuple[np.ndarray, np.ndarray]:
  labels = np.asarray(labels, np.int64)
  scores = np.asarray(scores, np.float64)
  if labels.shape != scores.shape or labels.ndim != 1:
    raise ValueError(f"labels {labels.shape} and scores {scores.shape} must be equal 1-D")
  if not ((labels == 0) | (labels == 1)).all():
    raise ValueError("labels must be 0 or 1")
  if labels.min(initial=1) == 1 or labels.max(initial=0) == 0:
    raise ValueError("curves need both classes")
  return labels, scores
