"""experiments/transfer.py: both arms of one cell, the same budget, one table."""

import json
import os

import pytest

from experiments import transfer
from medjax.errors import ConfigError

pytestmark = pytest.mark.slow  # end-to-end training runs


def test_both_arms_train_once_and_only_the_init_arm_starts_from_the_source(tmp_path):
  workdir = str(tmp_path / "transfer")
  args = ["--smoke", "--cell=hip128_crop_cnn", "--epochs=1", f"--workdir={workdir}"]
  rows = transfer.main(args)
  assert [r["arm"] for r in rows] == ["scratch", "init"]
  assert rows[1]["init_from"] == os.path.join(workdir, "source") and rows[0]["init_from"] == ""
  with open(os.path.join(workdir, "init", "seed0", "results.json")) as f:
    init = json.load(f)
  with open(os.path.join(workdir, "scratch", "seed0", "results.json")) as f:
    scratch = json.load(f)
  assert init["init_from"]["kind"] == "run" and "source" in init["init_from"]["from"]
  assert "init_from" not in scratch
  assert init["epochs"] == scratch["epochs"] == 1 and init["n_test"] == scratch["n_test"]
  table = open(os.path.join(workdir, "transfer.md")).read()
  assert "| scratch | 0 | 1 |" in table and "SMOKE RUN" in table
  stamp = os.path.getmtime(os.path.join(workdir, "init", "seed0", "results.json"))
  assert transfer.main(args) == rows  # nothing trained again
  assert os.path.getmtime(os.path.join(workdir, "init", "seed0", "results.json")) == stamp
  with pytest.raises(ConfigError, match="finished run of 1 epochs, not --epochs=2"):
    transfer.main(args[:2] + ["--epochs=2", f"--workdir={workdir}"])


def test_the_init_arm_needs_a_source_and_the_cell_must_exist(tmp_path):
  with pytest.raises(ConfigError, match="--init_from is required"):
    transfer.main([f"--workdir={tmp_path}"])
  with pytest.raises(ConfigError, match="--cell must be one of"):
    transfer.main(["--cell=hip64_crop_cnn", "--smoke", f"--workdir={tmp_path}"])


def test_the_smoke_source_fits_the_models_input():
  assert transfer.smoke_source("hip128_crop_resnet") == "luna_resnet"  # any input size
  assert transfer.smoke_source("hip256_full_cnn") == "luna_cnn"
  assert transfer.smoke_source("hip128_crop_dbn") == "hip128_full_dbn"  # weights fix the size
  assert transfer.smoke_source("hip256_full_sgan") == "hip256_crop_sgan"
  assert transfer.smoke_source("luna_sgan") == "luna_sgan"
