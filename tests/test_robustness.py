import json
import os

import numpy as np
import pytest

from medjax.analysis import robustness
from medjax.config import MODELS


@pytest.mark.slow
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


@pytest.mark.slow  # an end-to-end training run per model
@pytest.mark.parametrize("model", MODELS)
def test_robustness_of_a_finished_run_of_each_model(finished_run, model, tmp_path):
  workdir = finished_run(model)
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  rows = robustness.main([f"--workdirs={workdir}", f"--out={tmp_path / 'rob'}"])
  assert len(rows) == len(robustness.NOISE) + len(robustness.FACTORS)
  assert {r["run"] for r in rows} == {f"luna_{model}"}
  clean = [r for r in rows if r["perturbation"] == "noise" and r["value"] == 0.0][0]
  assert clean["accuracy"] == pytest.approx(results["test"]["accuracy"])
  assert (tmp_path / "rob" / "robustness.png").stat().st_size > 0
  assert json.loads((tmp_path / "rob" / "robustness.json").read_text()) == rows


@pytest.mark.slow  # an end-to-end training run
def test_robustness_of_a_seed_ensemble(finished_ensemble, tmp_path):
  workdir = finished_ensemble("cnn")
  with open(os.path.join(workdir, "results.json")) as f:
    results = json.load(f)
  rows = robustness.evaluate_run(workdir, noise=(0.0,), factors=(1.0,))
  assert [r["workdir"] for r in rows] == [workdir, workdir]
  assert rows[0]["accuracy"] == pytest.approx(results["test"]["accuracy"])


@pytest.mark.slow
def test_figure_has_titles_fixed_axes_baselines_and_marks(tmp_path, monkeypatch):
  from medjax.eval import plots
  seen = {}
  save = plots.save_figure

  def spy(fig, path):
    seen["fig"] = fig
    fig.canvas.draw()
    save(fig, path)

  monkeypatch.setattr(plots, "save_figure", spy)
  rows = [{"run": run, "workdir": f"runs/{run}", "perturbation": kind, "value": v,
           "accuracy": acc - 0.01 * i, "auc": acc - 0.02 * i, "synthetic": True,
           "smoke": False, "majority": 0.834}
          for run, acc in (("luna_cnn", 0.5), ("luna_dbn", 0.9))
          for kind, values in (("noise", robustness.NOISE), ("resolution", robustness.FACTORS))
          for i, v in enumerate(values)]
  path = tmp_path / "robustness.png"
  robustness.plot(rows, str(path))
  assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  fig = seen["fig"]
  assert "SYNTHETIC DATA" in fig._suptitle.get_text()
  assert len(fig.axes) == 4
  for ax in fig.axes:
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    assert ax.get_ylim() == (0.4, 1.0)  # fixed: not auto-scaled to the data
    assert ax.get_legend() is None  # one shared legend, outside the panels
    dashed = [l.get_ydata()[0] for l in ax.get_lines() if l.get_linestyle() == "--"]
    assert dashed == [0.834] if "accuracy" in ax.get_title() else dashed == [0.5]
    assert sum(l.get_label().startswith("luna_") for l in ax.get_lines()) == 2
  legend, = fig.legends
  assert {"luna_cnn", "luna_dbn"} <= {t.get_text() for t in legend.get_texts()}
