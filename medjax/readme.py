"""The README's result tables, generated from the committed results files.

    python -m medjax.readme            # rewrite the generated blocks of README.md
    python -m medjax.readme --check    # exit 1 if README.md disagrees with results/

A generated block sits between `<!-- generated: NAME -->` and `<!-- end generated -->`; every
figure inside it comes from a table2.csv written by the grid runner (`experiments.paper_table2`)
and committed under results/. Figures elsewhere in the documents point to those files instead
of quoting them. `tests/test_readme.py` fails when README.md and results/ disagree.
"""

from __future__ import annotations

import csv
import os
import re
import sys
from typing import Callable

from absl import flags

from medjax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BLOCK = re.compile(r"(<!-- generated: (\w+) -->\n)(.*?)(<!-- end generated -->)", re.S)


def read_table(path: str) -> list[dict[str, str]]:
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def _pct(value: str | None, digits: int = 1) -> str:
  return "—" if value in (None, "", "None") else f"{100 * float(value):.{digits}f}"


def _num(value: str | None) -> str:
  return "—" if value in (None, "", "None") else f"{float(value):.3f}"


def _accuracy(row: dict[str, str]) -> str:
  seeds = int(row["seeds"])
  if row.get("kind") == "ensemble":
    return f"{_pct(row['accuracy'])} (ensemble of {seeds})"
  if seeds < 2:
    return f"{_pct(row['accuracy'])} (1 seed)"
  return f"{_pct(row['accuracy'])} ± {_pct(row['accuracy_std'])} ({seeds} seeds)"


def _minutes(row: dict[str, str]) -> str:
  value = row.get("train_minutes")
  if value in (None, "", "None"):
    return "—"
  per_seed = float(value) / (int(row["seeds"]) if row.get("kind") == "ensemble" else 1)
  return f"{per_seed:.1f}"


def results_table(path: str) -> str:
  """One line per cell (and seed ensemble) of a committed table2.csv."""
  rows = read_table(os.path.join(ROOT, path))
  # The paper's figures are of real images: beside synthetic results they would compare unlike
  # with unlike, so a table of synthetic cells leaves them out.
  paper = not all(r.get("data") == "synthetic" for r in rows)
  header = ["cell", "seeds", "epochs", "lr", "test accuracy %", "AUC", "sensitivity",
            "specificity", "majority %", "train min / seed"] + (["paper %"] if paper else [])
  table = []
  for r in rows:
    name = r["cell"] + (" ensemble" if r.get("kind") == "ensemble" else "")
    lr = r.get("learning_rate")
    epochs = r.get("epochs") or "—"
    if r.get("init") not in (None, "", "None"):
      epochs = f"{epochs} from `{r['init']}`"
    table.append([f"`{name}`", r.get("seed_list") or "—", epochs,
                  f"{float(lr):g}" if lr not in (None, "", "None") else "—", _accuracy(r),
                  _num(r["auc"]), _num(r["sensitivity"]), _num(r["specificity"]),
                  _pct(r.get("majority")), _minutes(r)]
                 + ([_pct(r["paper_accuracy"])] if paper else []))
  # Columns an older runner did not write (all "—") are left out.
  keep = [j for j in range(len(header)) if any(row[j] != "—" for row in table)]
  lines = [f"From [`{path}`]({path}):", "",
           "| " + " | ".join(header[j] for j in keep) + " |", "|" + "---|" * len(keep)]
  lines += ["| " + " | ".join(row[j] for j in keep) + " |" for row in table]
  return "\n".join(lines) + "\n"


def label_efficiency_table(path: str) -> str:
  """One line per (labelled budget, model) of a committed label_efficiency.csv."""
  rows = read_table(os.path.join(ROOT, path))
  lines = [f"From [`{path}`]({path}):", "",
           "| labelled images | model | seeds | epochs | test accuracy % | AUC | majority % | "
           "unlabelled images used |", "|---|---|---|---|---|---|---|---|"]
  for r in rows:
    multi = int(r["seeds"]) > 1
    acc = _pct(r["accuracy"]) + (f" ± {_pct(r['accuracy_std'])}" if multi else " (1 seed)")
    auc = _num(r["auc"]) + (f" ± {_num(r['auc_std'])}" if multi else "")
    lines.append(f"| {r['labels']} | `{r['model']}` | {r['seed_list']} | {r['epochs']} | {acc} | "
                 f"{auc} | {_pct(r['majority'])} | {r['n_unlabelled']} |")
  return "\n".join(lines) + "\n"


# Block name -> the function that writes its content.
BLOCKS: dict[str, Callable[[], str]] = {
    "luna16_patches": lambda: results_table("results/luna16_patches/table2.csv"),
    "synthetic_cpu": lambda: results_table("results/synthetic_cpu/table2.csv"),
    "luna16_label_efficiency": lambda: label_efficiency_table(
        "results/luna16_label_efficiency/label_efficiency.csv"),
}


def render(text: str) -> str:
  """`text` (README.md) with every generated block rewritten."""
  def replace(m: re.Match) -> str:
    name = m.group(2)
    if name not in BLOCKS:
      raise KeyError(f"README.md has a generated block {name!r} that medjax.readme does not "
                     f"know; known: {sorted(BLOCKS)}")
    return m.group(1) + BLOCKS[name]() + m.group(4)
  return BLOCK.sub(replace, text)


def stale_blocks(path: str = README) -> list[str]:
  """Names of the generated blocks of `path` that disagree with the results files."""
  with open(path) as f:
    text = f.read()
  return [m.group(2) for m in BLOCK.finditer(text)
          if m.group(3) != BLOCKS[m.group(2)]()]


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_bool("check", False, "Only check: exit status 1 when README.md disagrees with "
                    "the results files.", flag_values=fv)


def main(argv: list[str] | None = None) -> int:
  fv = cli.parse_flags(define_flags, argv, __doc__)
  if fv.check:
    stale = stale_blocks()
    if stale:
      print(f"README.md disagrees with results/ in: {', '.join(stale)}; run "
            "`python -m medjax.readme`", file=sys.stderr)
      return 1
    return 0
  with open(README) as f:
    text = f.read()
  new = render(text)
  if new != text:
    with open(README, "w") as f:
      f.write(new)
  print(f"README.md: {len(BLOCK.findall(new))} generated blocks up to date")
  return 0


if __name__ == "__main__":
  cli.run(main)
