import json
import os

import pytest

from experiments import paper_table2
from medjax.errors import ConfigError, UserError, WorkdirError


pytestmark = pytest.mark.slow  # end-to-end training runs


def test_cells_follow_the_paper_grid():
  assert len(paper_table2.CELLS) == 18
  assert "hip256_crop_dbn" not in paper_table2.CELLS  # no DBN at 256, as in the paper
  assert paper_table2.select_cells("luna_*") == ["luna_cnn", "luna_resnet", "luna_dbn",
                                                 "luna_sgan"]
  with pytest.raises(ValueError, match="matches none"):
    paper_table2.select_cells("mnist_*")


def test_grid_writes_tables_and_does_not_rerun_finished_cells(tmp_path, caplog):
  workdir = str(tmp_path / "grid")
  args = ["--smoke", "--cells=luna_cnn", "--seeds=0,1", f"--workdir={workdir}", "--stack=on"]
  rows = paper_table2.main(args)
  assert [(r["cell"], r["kind"]) for r in rows] == [("luna_cnn", "seeds"),
                                                    ("luna_cnn", "ensemble")]
  assert rows[0]["seeds"] == 2 and rows[0]["smoke"] is True
  assert rows[0]["data"] == "synthetic" and rows[0]["paper_accuracy"] == pytest.approx(0.925)
  for name in ("table2.md", "table2.csv", "confusion_matrices.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0
  table = open(os.path.join(workdir, "table2.md")).read()
  assert "| luna | synthetic |" in table and "paper 92.5" in table
  assert "SMOKE RUN" in table and "SYNTHETIC DATA" in table
  assert "| luna_cnn (ensemble) |" in table
  assert rows[0]["learning_rate"] == pytest.approx(1e-4)  # the budget is said: epochs and lr
  assert "| luna_cnn | synthetic | 0 1 | 1 | 0.0001 |" in table
  assert os.path.exists(os.path.join(workdir, "luna_cnn", "ensemble", "results.json"))
  with open(os.path.join(workdir, "luna_cnn", "seed1", "results.json")) as f:
    assert json.load(f)["stacked_seeds"] == [0, 1]  # both seeds in one vmapped step
  stamp = os.path.getmtime(os.path.join(workdir, "luna_cnn", "seed1", "results.json"))
  again = paper_table2.main(args)
  assert os.path.getmtime(os.path.join(workdir, "luna_cnn", "seed1", "results.json")) == stamp
  assert again == rows
  # A seed kept as results.json alone (as results/ keeps older runs) has no predictions to
  # average: the ensemble written before for the same seeds is read back; without it the
  # seeds' row stays and the ensemble row goes, with a warning.
  os.remove(os.path.join(workdir, "luna_cnn", "seed0", "predictions.csv"))
  caplog.clear()
  caplog.set_level("INFO")
  assert paper_table2.main(args + ["--collect"]) == rows
  assert "written before is read back" in caplog.text
  os.remove(os.path.join(workdir, "luna_cnn", "ensemble", "results.json"))
  caplog.clear()
  assert paper_table2.main(args + ["--collect"]) == rows[:1]
  assert "no ensemble row: seed(s) [0]" in caplog.text


def test_an_explicit_workdir_is_used_as_given_and_one_seed_says_so(tmp_path):
  workdir = str(tmp_path / "table2")
  rows = paper_table2.main(["--smoke", "--cells=luna_dbn", f"--workdir={workdir}"])
  assert os.path.exists(os.path.join(workdir, "table2.md"))  # not renamed to table2-smoke
  assert [r["kind"] for r in rows] == ["seeds"]
  assert "(1 seed)" in open(os.path.join(workdir, "table2.md")).read()


def test_collect_writes_the_tables_from_finished_seeds_only(tmp_path):
  workdir = str(tmp_path / "grid")
  paper_table2.main(["--smoke", "--cells=luna_cnn", "--seeds=0", f"--workdir={workdir}"])
  rows = paper_table2.main(["--smoke", "--cells=luna_*", "--seeds=0,1", "--collect",
                            f"--workdir={workdir}"])
  assert [(r["cell"], r["seeds"]) for r in rows] == [("luna_cnn", 1)]
  assert not os.path.exists(os.path.join(workdir, "luna_cnn", "seed1"))  # nothing trained
  with pytest.raises(UserError, match="no finished runs"):
    paper_table2.main(["--cells=hip*", "--collect", f"--workdir={workdir}"])


def test_a_cell_at_other_epochs_is_an_entry_of_its_own():
  assert paper_table2.select_cells("luna_resnet@100,luna_*") == [
      "luna_cnn", "luna_resnet", "luna_dbn", "luna_sgan", "luna_resnet@100"]
  assert paper_table2.select_cells("luna_[cr]*@3") == ["luna_cnn@3", "luna_resnet@3"]
  assert paper_table2.split_name("luna_resnet@100") == ("luna_resnet", 100)
  for bad in ("luna_resnet@", "luna_resnet@0", "luna_resnet@x"):
    with pytest.raises(ConfigError, match="expected <cell pattern>@<epochs>"):
      paper_table2.select_cells(bad)
  with pytest.raises(ConfigError, match="'lunna_cnn' matches no cell"):
    paper_table2.select_cells("lunna_cnn@3")


def test_a_longer_run_of_a_cell_is_its_own_row_and_budgets_never_mix(tmp_path):
  workdir = str(tmp_path / "grid")
  rows = paper_table2.main(["--smoke", "--cells=luna_cnn,luna_cnn@2", "--epochs=1",
                            f"--workdir={workdir}"])
  assert [(r["cell"], r["epochs"]) for r in rows] == [("luna_cnn", 1), ("luna_cnn@2", 2)]
  assert rows[1]["model"] == "cnn" and rows[1]["paper_accuracy"] == pytest.approx(0.925)
  with open(os.path.join(workdir, "luna_cnn@2", "seed0", "results.json")) as f:
    assert json.load(f)["epochs"] == 2
  table = open(os.path.join(workdir, "table2.md")).read()
  assert "| luna_cnn@2 | synthetic | 0 | 2 |" in table
  grid = [line for line in table.splitlines() if line.startswith("| luna |")]
  # the paper's layout shows the plain cell only
  assert len(grid) == 1 and grid[0].split(" | ")[2] == (
      f"{100 * rows[0]['accuracy']:.1f} (1 seed); paper 92.5")
  # Asking for another budget than a finished seed's is an error naming the run, never a row
  # that mixes budgets.
  with pytest.raises(ConfigError, match=r"luna_cnn/seed0/results.json is a finished run of 1 "
                                        r"epochs, not the 3 asked for luna_cnn.*luna_cnn@3"):
    paper_table2.main(["--smoke", "--cells=luna_cnn", "--cell_epochs=luna_cnn=3", "--collect",
                       f"--workdir={workdir}"])
  with pytest.raises(ConfigError, match="has its epochs in its name"):
    paper_table2.main(["--smoke", "--cells=luna_cnn@2", "--cell_epochs=luna_cnn@2=3",
                       "--collect", f"--workdir={workdir}"])


def test_every_cells_pattern_must_match_a_cell():
  with pytest.raises(ConfigError, match=r"--cells pattern 'lunna_\*' matches no cell"):
    paper_table2.select_cells("luna_cnn,lunna_*")


@pytest.mark.parametrize("flags, message", [
    (["--cells=luna_cnn", "--cell_epochs=luna_dbn=3"],
     "--cell_epochs names luna_dbn, which --cells does not select"),
    (["--cells=hip128_*", "--luna_dir=/data/luna"], "--luna_dir is not used: no luna cell"),
    (["--cells=luna_*", "--hip_dir=/data/hip"], "--hip_dir is not used: no hip cell"),
    (["--seeds=0,0"], "--seeds: seed 0 is listed twice"),
    (["--seeds=-1"], "--seeds: seeds must be in 0.."),
])
def test_flags_the_grid_would_ignore_are_refused_before_anything_is_written(tmp_path, flags,
                                                                           message):
  workdir = tmp_path / "grid"
  with pytest.raises(ConfigError, match=message):
    paper_table2.main([f"--workdir={workdir}", "--collect", *flags])
  assert not workdir.exists()


def _finished_seed(workdir, cell, seed, accuracy):
  path = os.path.join(workdir, cell, f"seed{seed}")
  os.makedirs(path)
  with open(os.path.join(path, "results.json"), "w") as f:
    f.write(json.dumps({
        "experiment": cell, "seed": seed, "synthetic": True, "smoke": True, "epochs": 1,
        "n_train": 10, "n_test": 4, "majority_accuracy": 0.5, "train_seconds": 1.0,
        "test": {"accuracy": accuracy, "auc": 0.5, "sensitivity": 0.5, "specificity": 0.5,
                 "confusion_matrix": [[1, 1], [1, 1]]}}))  # json writes nan as NaN
  return os.path.join(path, "results.json")


def test_collect_refuses_a_diverged_or_damaged_run_naming_its_file(tmp_path):
  workdir = str(tmp_path / "grid")
  _finished_seed(workdir, "luna_cnn", 0, 0.75)
  diverged = _finished_seed(workdir, "luna_resnet", 0, float("nan"))
  args = ["--cells=luna_cnn,luna_resnet", "--collect", f"--workdir={workdir}"]
  with pytest.raises(WorkdirError, match=f"{diverged}: test.accuracy = nan"):
    paper_table2.main(args)
  with open(diverged, "w") as f:
    f.write('{"test": {"accur')
  with pytest.raises(WorkdirError, match=f"{diverged}: damaged results"):
    paper_table2.main(args)
  os.remove(diverged)
  rows = paper_table2.main(args)
  assert [r["cell"] for r in rows] == ["luna_cnn"]


def test_resnet_at_256_px_grows_from_its_128_px_cell_on_synthetic_hips(tmp_path):
  """Progressive resizing: the 256 px ResNet-50 starts from the 128 px run of its view and seed,
  the tables say so; without that run it is an error saying what to run, and --noprogressive
  or real hip data train it from scratch."""
  workdir = str(tmp_path / "grid")
  with pytest.raises(ConfigError, match="hip128_full_resnet.*--noprogressive"):
    paper_table2.main(["--smoke", "--cells=hip256_full_resnet", f"--workdir={workdir}"])
  rows = paper_table2.main(["--smoke", "--cells=hip128_full_resnet,hip256_full_resnet",
                            f"--workdir={workdir}"])
  assert [(r["cell"], r["init"]) for r in rows] == [("hip128_full_resnet", None),
                                                    ("hip256_full_resnet", "hip128_full_resnet")]
  with open(os.path.join(workdir, "hip256_full_resnet", "seed0", "results.json")) as f:
    assert "hip128_full_resnet/seed0" in json.load(f)["init_from"]["from"]
  assert "| 1 from hip128_full_resnet |" in open(os.path.join(workdir, "table2.md")).read()
  assert paper_table2.grow_source("hip256_full_resnet", {"hip": None}, False) is None
  assert paper_table2.grow_source("hip256_full_resnet", {"hip": "/data/hips"}, True) is None
  assert paper_table2.grow_source("hip256_full_resnet@9", {}, True) == "hip128_full_resnet"
  assert paper_table2.grow_source("hip256_full_sgan", {}, True) is None


def test_a_run_started_from_another_says_so_in_the_tables():
  """A cell's run with init_from (e.g. fine-tuned from another cell's run) is not a run from
  scratch of the same epochs: the row names where it started."""
  start = {"from": "run /grid/hip128_full_resnet/seed0 (epoch 5)", "kind": "run"}
  assert paper_table2._init_cell({"init_from": start}) == "hip128_full_resnet"
  assert paper_table2._init_cell({"init_from": {"from": "keras x.h5"}}) == "keras x.h5"
  assert paper_table2._init_cell({"init_from": None}) is None
  assert paper_table2._init_cell({}) is None


def test_cropping_gaps_pair_crop_and_full_cells_of_one_size():
  """Crop minus full, per model and size, beside the paper's; pairs need both cells, and a
  longer run of a cell (`@epochs`) or an ensemble row never stands in for the plain cell."""
  def row(dataset, model, acc, cell=None, kind="seeds"):
    return {"dataset": dataset, "model": model, "accuracy": acc, "kind": kind,
            "cell": cell or f"{dataset}_{model}"}
  rows = [row("hip128_crop", "cnn", 0.90), row("hip128_full", "cnn", 0.80),
          row("hip128_full", "cnn", 0.99, kind="ensemble"),
          row("hip256_crop", "resnet", 0.85), row("hip256_full", "resnet", 0.70),
          row("hip256_full", "resnet", 0.10, cell="hip256_full_resnet@9"),
          row("hip128_crop", "dbn", 0.75)]  # no full cell: no pair
  gaps = paper_table2.crop_gaps(rows)
  assert [(s, m) for s, m, _, _ in gaps] == [(128, "cnn"), (256, "resnet")]
  assert gaps[0][2] == pytest.approx(10.0) and gaps[0][3] == pytest.approx(89.2 - 82.6)
  assert gaps[1][2] == pytest.approx(15.0) and gaps[1][3] == pytest.approx(90.1 - 87.5)
  text = "\n".join(paper_table2._crop_lines(rows))
  assert "| 128 | cnn | +10.0 | +6.6 |" in text and "| mean of 2 pairs | | +12.5 | +4.6 |" in text
  assert paper_table2._crop_lines([row("luna", "cnn", 0.9)]) == []
  # a pair compares the same seeds: cells with different seeds are left out, and named
  seeded = [{**r, "seed_list": "0 1 2" if r["cell"] == "hip128_crop_cnn" else "0"} for r in rows]
  assert [(s, m) for s, m, _, _ in paper_table2.crop_gaps(seeded)] == [(256, "resnet")]
  text = "\n".join(paper_table2._crop_lines(seeded))
  assert "| 128 | cnn |" not in text and "| mean of 1 pairs | | +15.0 | +2.6 |" in text
  assert "Left out (the crop and full cells have different seeds, or one is missing): 128 cnn, 128 dbn." in text
