"""How far predicted probabilities can be trusted: reliability bins, expected calibration error
(ECE) and temperature scaling (Guo et al., 2017) for binary classifiers.

Temperature scaling divides the logit log(p / (1 - p)) by one scalar T fitted on the validation
split (minimum negative log-likelihood); it changes no decision at threshold 0.5 and no ranking
(AUC), only how confident the probabilities are. medjax reports the scaled figures beside the
raw ones, never instead of them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

EPS = 1e-7


def reliability_bins(labels, probs, n_bins: int = 10) -> dict[str, np.ndarray]:
  """Equal-width bins of P(positive): per bin the count, mean probability and positive rate
  (NaN for empty bins)."""
  labels = np.asarray(labels, np.float64)
  probs = np.asarray(probs, np.float64)
  edges = np.linspace(0.0, 1.0, n_bins + 1)
  index = np.clip(np.digitize(probs, edges[1:-1], right=True), 0, n_bins - 1)
  count = np.bincount(index, minlength=n_bins)
  with np.errstate(invalid="ignore", divide="ignore"):
    confidence = np.bincount(index, probs, n_bins) / count
    frequency = np.bincount(index, labels, n_bins) / count
  return {"edges": edges, "count": count, "confidence": confidence, "frequency": frequency}


def expected_calibration_error(labels, probs, n_bins: int = 10) -> float:
  """ECE = sum over bins of (bin share) x |positive rate - mean P(positive)|."""
  bins = reliability_bins(labels, probs, n_bins)
  used = bins["count"] > 0
  gap = np.abs(bins["frequency"][used] - bins["confidence"][used])
  return float(np.sum(bins["count"][used] * gap) / max(1, len(np.asarray(labels))))


def negative_log_likelihood(labels, probs) -> float:
  labels = np.asarray(labels, np.float64)
  p = np.clip(np.asarray(probs, np.float64), EPS, 1 - EPS)
  return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))


def logit(probs) -> np.ndarray:
  p = np.clip(np.asarray(probs, np.float64), EPS, 1 - EPS)
  return np.log(p) - np.log1p(-p)


def apply_temperature(probs, temperature: float) -> np.ndarray:
  return 1.0 / (1.0 + np.exp(-logit(probs) / temperature))


def fit_temperature(labels, probs, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
  """The T > 0 minimizing the NLL of `apply_temperature(probs, T)`: golden-section search on
  log T (the NLL is unimodal in 1/T for a fixed set of logits)."""
  labels = np.asarray(labels, np.float64)
  z = logit(probs)

  def nll(log_t):
    s = z / np.exp(log_t)
    # -log sigmoid(s) = softplus(-s), -log(1 - sigmoid(s)) = softplus(s)
    return float(np.mean(labels * np.logaddexp(0, -s) + (1 - labels) * np.logaddexp(0, s)))

  lo, hi = np.log(bounds[0]), np.log(bounds[1])
  ratio = (np.sqrt(5) - 1) / 2
  a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
  fa, fb = nll(a), nll(b)
  for _ in range(80):
    if fa < fb:
      hi, b, fb = b, a, fa
      a = hi - ratio * (hi - lo)
      fa = nll(a)
    else:
      lo, a, fa = a, b, fb
      b = lo + ratio * (hi - lo)
      fb = nll(b)
  return float(np.exp((lo + hi) / 2))


def calibration_report(test_labels, test_probs, val_labels=None, val_probs=None, *,
                       n_bins: int = 10) -> dict[str, Any]:
  """The test split's ECE and NLL, and with a validation split the temperature fitted there
  and the test figures after scaling by it."""
  out = {"n_bins": n_bins,
         "ece": round(expected_calibration_error(test_labels, test_probs, n_bins), 6),
         "nll": round(negative_log_likelihood(test_labels, test_probs), 6)}
  if val_labels is not None and len(np.unique(val_labels)) == 2:
    t = fit_temperature(val_labels, val_probs)
    scaled = apply_temperature(test_probs, t)
    out.update(temperature=round(t, 6),
               ece_scaled=round(expected_calibration_error(test_labels, scaled, n_bins), 6),
               nll_scaled=round(negative_log_likelihood(test_labels, scaled), 6))
  return out
