import json
import os
import subprocess
import sys

import numpy as np
import pytest

from medjax import report
from medjax.errors import UserError
from medjax.eval import metrics, plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(workdir, *, seed=0, experiment="luna_cnn", synthetic=True, smoke=True,
             epochs=3, best=2, sgan=False, finished=True):
  """A tiny fake workdir in the format medjax.train.results writes."""
  os.makedirs(workdir, exist_ok=True)
  rng = np.random.default_rng(seed)
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump({"experiment": experiment, "seed": seed, "smoke": smoke,
               "data": {"dir": None if synthetic else "/data/luna"}}, f)
  with open(os.path.join(workdir, "metrics.jsonl"), "w") as f:
    for e in range(1, epochs + 1):
      record = {"epoch": e, "step": 12 * e, "train_loss": 0.7 / e, "train_accuracy": 0.6 + e / 20,
                "val_accuracy": 0.55 + e / 25, "val_auc": None if e == 1 else 0.6 + e / 30,
                "val_confusion_matrix": [[130, 0], [26, 0]]}
      if sgan:
        record.update(train_c_loss=0.6 / e, train_g_loss=0.4 + e / 10, train_d_real=0.7)
      f.write(json.dumps(record) + "\n")
  if not finished:
    return workdir
  labels = np.r_[np.zeros(80, int), np.ones(20, int)]
  probs = np.clip(0.3 + 0.3 * labels + rng.normal(0, 0.2, 100), 0, 1)
  test = metrics.classification_metrics(labels, probs, seed=seed)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump({"experiment": experiment, "seed": seed, "synthetic": synthetic, "test": test,
               "checkpoint": {"kind": "best", "epoch": best, "metric": "val_accuracy"}}, f)
  with open(os.path.join(workdir, "predictions.csv"), "w") as f:
    f.write("name,label,prob_positive\n")
    f.writelines(f"x{i},{l},{p:.6f}\n" for i, (l, p) in enumerate(zip(labels, probs)))
  return workdir


@pytest.fixture
def figures(monkeypatch):
  """What each saved figure shows: file name -> {"title", "axes": [[line labels]]}."""
  seen = {}
  save = plots.save_figure

  def spy(fig, path):
    seen[os.path.basename(path)] = {
        "title": fig._suptitle.get_text() if fig._suptitle else "",
        "axes": [[l.get_label() for l in ax.get_lines()] for ax in fig.axes],
        "texts": [t.get_text() for ax in fig.axes for t in ax.texts],
        "cut": cut_texts(fig)}
    save(fig, path)

  monkeypatch.setattr(plots, "save_figure", spy)
  return seen


def cut_texts(fig) -> list[str]:
  """Titles, axis labels and legend entries that reach beyond the figure's edges."""
  fig.canvas.draw()
  renderer = fig.canvas.get_renderer()
  texts = [fig._suptitle] if fig._suptitle else []
  for ax in fig.axes:
    texts += [ax.title, ax._left_title, ax._right_title, ax.xaxis.label, ax.yaxis.label]
    if ax.get_legend():
      texts += ax.get_legend().get_texts()
  for legend in fig.legends:
    texts += legend.get_texts()
  box = fig.bbox
  cut = []
  for t in texts:
    if t.get_visible() and t.get_text():
      e = t.get_window_extent(renderer)
      if e.x0 < box.x0 - 1 or e.x1 > box.x1 + 1 or e.y0 < box.y0 - 1 or e.y1 > box.y1 + 1:
        cut.append(t.get_text())
  return cut


def assert_png(path):
  with open(path, "rb") as f:
    assert f.read(8) == PNG_MAGIC
  from PIL import Image
  with Image.open(path) as image:
    assert image.width > 300 and image.height > 300


def test_curves_match_the_metrics():
  labels = np.array([0, 0, 1, 1, 0, 1])
  scores = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4])  # ties across classes
  fpr, tpr = metrics.roc_curve(labels, scores)
  assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
  assert np.trapezoid(tpr, fpr) == pytest.approx(metrics.roc_auc(labels, scores))
  recall, precision, ap = metrics.precision_recall_curve([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1])
  np.testing.assert_allclose(recall, [0, 0.5, 1])
  np.testing.assert_allclose(precision, [1, 1, 2 / 3])
  assert ap == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
  rng = np.random.default_rng(0)
  y = rng.integers(0, 2, 300)
  s = np.round(y + rng.normal(0, 1, 300), 1)  # with ties
  lo, hi = metrics.bootstrap_auc_ci(y, s, n_resamples=400)
  assert lo < metrics.roc_auc(y, s) < hi and hi - lo < 0.2
  resampled = [metrics.roc_auc(y[i], s[i]) for i in rng.integers(0, 300, (400, 300))]
  np.testing.assert_allclose([lo, hi], np.quantile(resampled, [0.025, 0.975]), atol=0.02)


def test_run_report_of_a_synthetic_smoke_run(tmp_path, figures):
  workdir = make_run(str(tmp_path / "run"))
  written = report.write_run_report(workdir)
  assert [os.path.basename(p) for p in written] == ["training_curves.png", "roc.png", "pr.png",
                                                    "reliability.png"]
  for path in written:
    assert_png(path)
  for name in ("training_curves.png", "roc.png", "pr.png", "reliability.png"):
    assert "luna_cnn, seed 0" in figures[name]["title"]
    assert "SYNTHETIC DATA" in figures[name]["title"] and "SMOKE RUN" in figures[name]["title"]
  loss, accuracy, auc = figures["training_curves.png"]["axes"]
  assert {"train", "val"} <= set(accuracy) and "val" in auc
  assert "best: epoch 2" in " ".join(figures["training_curves.png"]["texts"])
  assert all(f["cut"] == [] for f in figures.values()), figures
  roc_lines = figures["roc.png"]["axes"][0]
  assert "chance" in roc_lines
  # the AUC and its interval come from results.json when present, else a bootstrap
  assert any(l.startswith("AUC ") and "95% CI" in l for l in roc_lines)


def test_real_data_run_has_no_marks(tmp_path, figures):
  report.write_run_report(make_run(str(tmp_path / "run"), synthetic=False, smoke=False))
  assert all("[" not in f["title"] for f in figures.values())


def test_sgan_metrics_and_an_unfinished_run(tmp_path, figures):
  workdir = make_run(str(tmp_path / "sgan"), experiment="luna_sgan", sgan=True, epochs=1,
                     finished=False)
  assert report.write_run_report(workdir) == [os.path.join(workdir, "training_curves.png")]
  loss = figures["training_curves.png"]["axes"][0]
  assert "g loss (train)" in loss and "c loss (train)" in loss


def test_overlay_of_seed_dirs_one_line_per_run(tmp_path, figures):
  parent = tmp_path / "luna_cnn"
  for seed in (0, 1, 2):
    make_run(str(parent / f"seed{seed}"), seed=seed, smoke=False)
  written = report.report([str(parent)])
  assert written == [str(parent / n) for n in ("training_curves.png", "roc.png", "pr.png",
                                               "reliability.png")]
  assert figures["roc.png"]["title"].startswith("luna_cnn, seeds 0, 1, 2: ROC")
  assert "SYNTHETIC DATA" in figures["roc.png"]["title"]
  roc_runs = [l for l in figures["roc.png"]["axes"][0] if l.startswith("seed ")]
  assert [l.split(":")[0] for l in roc_runs] == ["seed 0", "seed 1", "seed 2"]
  loss, accuracy, _ = figures["training_curves.png"]["axes"]
  assert sum(l.endswith(": train") for l in loss) == 3
  assert sum(l.endswith(": val") for l in accuracy) == 3


def test_overlay_of_different_models_into_out(tmp_path, figures):
  a = make_run(str(tmp_path / "cnn"))
  b = make_run(str(tmp_path / "sgan"), experiment="luna_sgan", sgan=True)
  out = tmp_path / "compare"
  report.report([a, b], str(out), n_bootstrap=0)
  assert sorted(os.listdir(out)) == ["pr.png", "reliability.png", "roc.png",
                                     "training_curves.png"]
  roc = figures["roc.png"]["axes"][0]
  assert [l.split(":")[0] for l in roc if ":" in l] == ["luna_cnn", "luna_sgan"]
  loss = figures["training_curves.png"]["axes"][0]
  assert not any("g loss" in l for l in loss)  # only what both runs logged is overlaid


def test_user_errors(tmp_path):
  with pytest.raises(UserError, match="no such directory"):
    report.write_run_report(str(tmp_path / "missing"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(UserError, match="no metrics.jsonl"):
    report.write_run_report(str(tmp_path / "empty"))
  with pytest.raises(UserError, match="no run directories"):
    report.report([str(tmp_path / "empty")])
  with pytest.raises(UserError, match="expected one or more WORKDIRs"):
    report.report([])


def test_command_line(tmp_path):
  a, b = make_run(str(tmp_path / "a")), make_run(str(tmp_path / "b"), seed=1)
  cwd = os.path.join(os.path.dirname(__file__), "..")
  ok = subprocess.run([sys.executable, "-m", "medjax.report", a, b, f"--out={tmp_path / 'ab'}",
                       "--bootstrap=0"], capture_output=True, text=True, cwd=cwd)
  assert ok.returncode == 0, ok.stderr
  assert sorted(os.listdir(tmp_path / "ab")) == ["pr.png", "reliability.png", "roc.png",
                                                 "training_curves.png"]
  bad = subprocess.run([sys.executable, "-m", "medjax.report", str(tmp_path / "nope")],
                       capture_output=True, text=True, cwd=cwd)
  assert bad.returncode == 2
  assert bad.stderr.strip().splitlines() == [f"error: {tmp_path / 'nope'}: no such directory"]


def test_sample_grid_shows_real_beside_generated(tmp_path, figures):
  real = np.full((5, 8, 8, 1), 255, np.uint8)
  generated = -np.ones((4, 8, 8, 1), np.float32)  # tanh range: all black
  path = str(tmp_path / "samples.png")
  plots.save_sample_grid(path, generated, real, "luna_sgan, seed 0: epoch 3",
                         marks=plots.data_marks(synthetic=True))
  assert_png(path)
  assert figures["samples.png"]["title"] == "luna_sgan, seed 0: epoch 3  [SYNTHETIC DATA]"
  grid = plots.tile(generated, (-1, 1))
  assert grid.shape == (2 * 9 + 1, 2 * 9 + 1, 1) and grid[1:9, 1:9].max() == 0
  assert plots.tile(real).shape == (2 * 9 + 1, 3 * 9 + 1, 1)  # 5 images: 3 columns, 2 rows


@pytest.mark.parametrize("experiment", ["luna_cnn", "hip256_crop_resnet"])
def test_confusion_matrix_title_and_marks_fit_the_figure(tmp_path, figures, experiment):
  title = f"{experiment} seed 12: test, epoch 100"
  plots.save_confusion_matrix([[402, 15], [28, 55]], str(tmp_path / "cm.png"), title,
                              plots.data_marks(synthetic=True, smoke=True))
  shown = figures["cm.png"]
  assert shown["cut"] == [], shown
  assert title in shown["title"].replace("\n", " ")
  assert "SYNTHETIC DATA, SMOKE RUN" in shown["title"]
  assert [t.split("\n") for t in shown["texts"]] == [["TN", "402"], ["FP", "15"], ["FN", "28"],
                                                      ["TP", "55"]]


def test_a_read_only_workdir_says_to_pass_out(tmp_path, monkeypatch):
  run = make_run(str(tmp_path / "run"))
  real_access = os.access
  monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if os.path.abspath(path)
                      == os.path.abspath(run) and mode & os.W_OK else real_access(path, mode))
  with pytest.raises(UserError, match=f"cannot write the figures into {run}: read-only.*--out"):
    report.report([run])
  written = report.report([run], str(tmp_path / "figures"), n_bootstrap=0)
  assert all(p.startswith(str(tmp_path / "figures")) for p in written)


def test_a_figure_that_cannot_be_written_is_one_line_naming_it(tmp_path, monkeypatch):
  import errno
  from matplotlib.figure import Figure
  run = make_run(str(tmp_path / "run"))

  def refuse(self, path, *args, **kwargs):
    raise OSError(errno.EROFS, "Read-only file system", str(path))

  monkeypatch.setattr(Figure, "savefig", refuse)
  with pytest.raises(UserError, match=r"cannot write .*training_curves.png: Read-only file "
                                      r"system; pass --out=DIR"):
    report.report([run], n_bootstrap=0)


def test_a_damaged_results_or_config_file_names_it(tmp_path):
  run = make_run(str(tmp_path / "run"))
  with open(os.path.join(run, "results.json"), "w") as f:
    f.write('{"test": ')
  with pytest.raises(UserError, match=r"results.json: damaged"):
    report.report([run], n_bootstrap=0)


@pytest.mark.slow  # an end-to-end smoke run per model (shared with the other tools' tests)
@pytest.mark.parametrize("model", ["cnn", "resnet", "dbn", "sgan"])
def test_report_redraws_a_finished_run_of_each_model(finished_run, model, tmp_path):
  written = report.main([finished_run(model), f"--out={tmp_path}"])
  assert sorted(os.path.basename(p) for p in written) == [
      "pr.png", "reliability.png", "roc.png", "training_curves.png"]
  for path in written:
    with open(path, "rb") as f:
      assert f.read(8) == PNG_MAGIC
