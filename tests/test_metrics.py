import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from medjax.eval import metrics


def test_confusion_matrix_by_hand():
  labels = [0, 0, 0, 1, 1, 0, 1]
  preds = [0, 1, 0, 1, 0, 0, 1]
  # TN: 3 (idx 0,2,5), FP: 1 (idx 1), FN: 1 (idx 4), TP: 2 (idx 3,6)
  np.testing.assert_array_equal(metrics.confusion_matrix(labels, preds), [[3, 1], [1, 2]])


def test_confusion_matrix_rejects_non_binary():
  with pytest.raises(ValueError, match="0 or 1"):
    metrics.confusion_matrix([0, 2], [0, 1])


def test_auc_known_values():
  assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
  assert metrics.roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
  assert metrics.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
  # Pairs (pos, neg): (0.35 > 0.1), (0.35 < 0.4), (0.8 > 0.1), (0.8 > 0.4) -> 3 of 4.
  assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
  # A tie between a positive and a negative counts one half: (0.4 = 0.4) -> (1 + 0.5) / 2.
  assert metrics.roc_auc([0, 1, 0, 1], [0.1, 0.4, 0.4, 0.9]) == pytest.approx(0.875)


def test_auc_undefined_without_both_classes():
  with pytest.raises(ValueError, match="both classes"):
    metrics.roc_auc([1, 1], [0.2, 0.3])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 20)), min_size=2, max_size=80))
def test_auc_matches_scikit_learn(pairs):
  from sklearn.metrics import roc_auc_score
  labels = np.array([p[0] for p in pairs])
  scores = np.array([p[1] / 20 for p in pairs])  # coarse scores: many ties
  if labels.min() == labels.max():
    return
  assert metrics.roc_auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_classification_metrics_by_hand():
  labels = np.array([0, 0, 0, 0, 1, 1])
  probs = np.array([0.1, 0.2, 0.7, 0.3, 0.9, 0.4])
  m = metrics.classification_metrics(labels, probs)
  assert m["confusion_matrix"] == [[3, 1], [1, 1]]
  assert m["accuracy"] == pytest.approx(4 / 6)
  assert m["sensitivity"] == pytest.approx(0.5)
  assert m["specificity"] == pytest.approx(0.75)
  # positives 0.9, 0.4 vs negatives 0.1, 0.2, 0.7, 0.3: 4 + 3 wins of 8.
  assert m["auc"] == pytest.approx(7 / 8)
  lo, hi = m["accuracy_ci95"]
  assert 0 <= lo <= m["accuracy"] <= hi <= 1
  # Without the interval (the per-epoch validation): the same metrics, no CI.
  fast = metrics.classification_metrics(labels, probs, ci=False)
  assert "accuracy_ci95" not in fast
  assert fast == {k: v for k, v in m.items() if k != "accuracy_ci95"}


def test_undefined_metrics_are_none_not_numbers():
  m = metrics.classification_metrics([0, 0, 0], [0.1, 0.6, 0.2])
  assert m["auc"] is None and m["sensitivity"] is None
  assert m["specificity"] == pytest.approx(2 / 3)


def test_bootstrap_interval_covers_and_shrinks_with_n():
  rng = np.random.default_rng(0)
  small = rng.random(100) < 0.9
  large = rng.random(10_000) < 0.9
  lo_s, hi_s = metrics.bootstrap_accuracy_ci(small)
  lo_l, hi_l = metrics.bootstrap_accuracy_ci(large)
  assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
  assert (hi_l - lo_l) < (hi_s - lo_s) / 5
  # Binomial standard error at n=10000, p=0.9 is 0.003: the 95% interval is about +-0.0059.
  assert (hi_l - lo_l) == pytest.approx(2 * 1.96 * np.sqrt(0.9 * 0.1 / 10_000), rel=0.15)
