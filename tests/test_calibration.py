import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from medjax.eval import calibration


def test_ece_by_hand():
  # Two bins used: [0.0-0.1] holds p=0.05 x2 with 0 positives (gap 0.05); [0.9-1.0] holds
  # p=0.95 x2 with 1 positive (gap 0.45). ECE = 2/4 * 0.05 + 2/4 * 0.45 = 0.25.
  labels = np.array([0, 0, 1, 0])
  probs = np.array([0.05, 0.05, 0.95, 0.95])
  assert calibration.expected_calibration_error(labels, probs) == pytest.approx(0.25)


def test_calibrated_probabilities_have_small_ece_and_temperature_one():
  rng = np.random.default_rng(0)
  p = rng.uniform(0, 1, 20000)
  labels = (rng.uniform(0, 1, p.shape) < p).astype(int)
  assert calibration.expected_calibration_error(labels, p) < 0.02
  assert calibration.fit_temperature(labels, p) == pytest.approx(1.0, abs=0.08)


def test_temperature_scaling_recovers_overconfidence_and_keeps_decisions():
  rng = np.random.default_rng(1)
  z = rng.normal(0, 2, 20000)
  labels = (rng.uniform(0, 1, z.shape) < 1 / (1 + np.exp(-z))).astype(int)
  overconfident = 1 / (1 + np.exp(-3 * z))
  t = calibration.fit_temperature(labels, overconfident)
  assert t == pytest.approx(3.0, rel=0.08)
  scaled = calibration.apply_temperature(overconfident, t)
  np.testing.assert_array_equal(scaled > 0.5, overconfident > 0.5)
  order = np.argsort(overconfident)
  assert np.all(np.diff(scaled[order]) >= 0)  # the ranking (and so the AUC) is unchanged
  report = calibration.calibration_report(labels, overconfident, labels, overconfident)
  assert report["ece_scaled"] < report["ece"] and report["nll_scaled"] < report["nll"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.floats(0, 1)), min_size=1, max_size=60))
def test_ece_lies_in_unit_interval(rows):
  labels, probs = map(np.array, zip(*rows))
  assert 0.0 <= calibration.expected_calibration_error(labels, probs) <= 1.0
