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
