"""The label-efficiency study (experiments/label_efficiency.py) on the embedded data."""

import json
import os

import pytest

from experiments import label_efficiency
from medjax.errors import ConfigError


def test_every_model_takes_the_sgans_number_of_labelled_steps():
  # SGAN: 5 epochs over 4,668 images of batch 20 = 1,165 steps; the CNN with 100 labels takes
  # 5 steps an epoch, so 233 epochs; with 500 labels 25 steps, so 47 epochs (1,175 steps)
  assert label_efficiency.epochs_for("sgan", 100, 4668, 20, 5) == 5
  assert label_efficiency.epochs_for("sgan_d", 100, 4668, 20, 5) == 5
  assert label_efficiency.epochs_for("cnn", 100, 4668, 20, 5) == 233
  assert label_efficiency.epochs_for("cnn", 500, 4668, 20, 5) == 47
  with pytest.raises(ConfigError, match="no batch of 20"):
    label_efficiency.epochs_for("cnn", 10, 4668, 20, 5)


@pytest.mark.slow
def test_smoke_study_labels_the_same_images_for_every_model_and_only_the_sgan_reads_the_rest(
    tmp_path):
  workdir = str(tmp_path / "le")
  rows = label_efficiency.main([f"--workdir={workdir}", "--smoke", "--labels=40",
                                "--seeds=0,1", "--sgan_epochs=1"])
  by_model = {(r["model"], r["labels"]): r for r in rows}
  assert set(by_model) == {("sgan", 40), ("sgan_d", 40), ("cnn", 40)}
  assert all(r["n_labelled"] == 40 and r["seeds"] == 2 for r in rows)
  assert by_model[("sgan", 40)]["n_unlabelled"] > 0
  assert by_model[("sgan_d", 40)]["n_unlabelled"] == 0 == by_model[("cnn", 40)]["n_unlabelled"]
  assert by_model[("cnn", 40)]["epochs"] > 1  # more epochs over fewer images: the same steps

  def train_names(model, seed):
    with open(os.path.join(workdir, "n40", model, f"seed{seed}", "data.json")) as f:
      return json.load(f)["train"]["names"]

  for seed in (0, 1):  # one labelled subset per seed, shared by the three models
    assert len({train_names(m, seed) for m in ("sgan", "sgan_d", "cnn")}) == 1
  assert train_names("cnn", 0) != train_names("cnn", 1)
  with open(os.path.join(workdir, "n40", "sgan_d", "seed0", "results.json")) as f:
    ablation = json.load(f)
  assert ablation["gan"] is False and ablation["generator"] is None
  assert not os.path.exists(os.path.join(workdir, "n40", "sgan_d", "seed0", "samples"))
  for name in ("label_efficiency.csv", "label_efficiency.md", "label_efficiency.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  # --collect writes the same table again without training
  again = label_efficiency.main([f"--workdir={workdir}", "--smoke", "--labels=40",
                                 "--seeds=0,1", "--sgan_epochs=1", "--collect"])
  assert again == rows
  # finished runs of another step budget are not mixed into the table
  with pytest.raises(ConfigError, match="use another --workdir"):
    label_efficiency.main([f"--workdir={workdir}", "--smoke", "--labels=40", "--seeds=0,1",
                           "--sgan_epochs=2", "--collect"])
