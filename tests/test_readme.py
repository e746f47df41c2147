"""The README's result tables agree with the committed results files."""

import os

from medjax import readme

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_tables_are_generated_from_the_results_files():
  assert readme.stale_blocks() == [], "run `python -m medjax.readme`"


def test_every_generated_block_has_its_results_file():
  text = open(os.path.join(ROOT, "README.md")).read()
  names = [m.group(2) for m in readme.BLOCK.finditer(text)]
  assert sorted(names) == sorted(readme.BLOCKS)


def test_ci_runs_the_readme_test_command():
  text = open(os.path.join(ROOT, "README.md")).read()
  ci = open(os.path.join(ROOT, ".ci", "run")).read()
  command = 'pip install -e ".[test]" && python -m pytest -q'
  assert command in text
  assert 'pip install -q -e ".[test]" && python -m pytest -q' in ci


def test_a_disagreeing_table_is_detected(tmp_path):
  text = open(os.path.join(ROOT, "README.md")).read()
  block = next(m for m in readme.BLOCK.finditer(text) if m.group(2) == "synthetic_cpu")
  start, end = block.span(3)
  edited = text[start:end].replace("| `luna_cnn` |", "| `luna_cnn` (edited) |", 1)
  assert edited != text[start:end]
  path = tmp_path / "README.md"
  path.write_text(text[:start] + edited + text[end:])
  assert readme.stale_blocks(str(path)) == ["synthetic_cpu"]


def _write_table(path, rows):
  import csv
  fields = ["cell", "data", "kind", "seeds", "seed_list", "epochs", "accuracy", "accuracy_std",
            "auc", "sensitivity", "specificity", "majority", "train_minutes", "paper_accuracy"]
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fields)
    writer.writeheader()
    for row in rows:
      writer.writerow({k: row.get(k, "") for k in fields})


def test_paper_column_only_beside_real_data(tmp_path):
  row = dict(cell="luna_cnn", kind="seeds", seeds=3, seed_list="0 1 2", epochs=100,
             accuracy=0.9, accuracy_std=0.01, auc=0.95, sensitivity=0.7, specificity=0.96,
             majority=0.83, train_minutes=9.0, paper_accuracy=0.925)
  _write_table(tmp_path / "real.csv", [dict(row, data="real")])
  _write_table(tmp_path / "synthetic.csv", [dict(row, data="synthetic")])
  real = readme.results_table(str(tmp_path / "real.csv"))
  synthetic = readme.results_table(str(tmp_path / "synthetic.csv"))
  assert "paper %" in real and "| 92.5 |" in real
  assert "paper %" not in synthetic and "92.5" not in synthetic
  assert "| 90.0 ± 1.0 (3 seeds) |" in synthetic and "| 0 1 2 | 100 |" in synthetic


def test_columns_an_older_runner_did_not_write_are_left_out(tmp_path):
  _write_table(tmp_path / "old.csv", [dict(cell="luna_cnn", data="synthetic", seeds=1,
                                           accuracy=0.918, accuracy_std=0.0, auc=0.947,
                                           sensitivity=0.675, specificity=0.966)])
  text = readme.results_table(str(tmp_path / "old.csv"))
  assert "| cell | test accuracy % | AUC | sensitivity | specificity |" in text
  assert "| `luna_cnn` | 91.8 (1 seed) | 0.947 | 0.675 | 0.966 |" in text
