import json

import numpy as np
import pytest

from experiments import _runner, luna_cnn, robustness


def test_noise_and_resolution_transforms():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (4, 32, 32, 1)).astype(np.uint8)
  np.testing.assert_allclose(robustness.add_noise(images, 0.0), images / 255.0, rtol=1e-6)
  flat = np.full((2, 32, 32, 1), 128, np.uint8)
  noisy = robustness.add_noise(flat, 0.1, seed=1)
  assert noisy.min() >= 0 and noisy.max() <= 1
  assert np.std(noisy - 128 / 255) == pytest.approx(0.1, rel=0.05)
  np.testing.assert_allclose(robustness.lower_resolution(images, 1.0), images / 255.0, rtol=1e-6)
  np.testing.assert_allclose(robustness.lower_resolution(flat, 0.5), 128 / 255, rtol=1e-5)
  checker = (np.indices((32, 32)).sum(0) % 2 * 255).astype(np.uint8)[None, ..., None]
  blurred = robustness.lower_resolution(checker, 0.5)
  assert blurred.shape == checker.shape
  assert blurred.std() < 0.2 * (checker / 255.0).std()  # the finest detail is gone


def test_robustness_of_a_finished_run(tmp_path):
  config = luna_cnn.get_config()
  config.smoke = True
  workdir = str(tmp_path / "run")
  results = _runner.run(config, workdir)
  rows = robustness.main([f"--workdirs={workdir}", f"--out={tmp_path / 'rob'}"])
  assert len(rows) == len(robustness.NOISE) + len(robustness.FACTORS)
  clean = [r for r in rows if r["perturbation"] == "noise" and r["value"] == 0.0][0]
  assert clean["accuracy"] == pytest.approx(results["test"]["accuracy"])
  assert (tmp_path / "rob" / "robustness.png").stat().st_size > 0
  assert json.loads((tmp_path / "rob" / "robustness.json").read_text()) == rows
