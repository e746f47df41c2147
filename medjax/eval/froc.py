"""LUNA16 FROC and CPM, following the challenge's evaluation rules.

- A candidate hits a nodule when its distance to the nodule's centre is below the nodule's radius.
- Candidates that hit a finding of annotations_excluded.csv (and no counted nodule) count neither
  as true nor as false positives (excluded findings without a diameter get 10 mm, as in the
  official script).
- Several hits on one nodule count once, with the highest probability; the other hits are
  neither true nor false positives. Nodules no candidate hits still count in the sensitivity.
- FROC: sensitivity against the mean number of false positives per scan; CPM: the mean
  sensitivity at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false positives per scan (linear interpolation on
  the staircase curve), with a bootstrap confidence band over scans.

    python -m medjax.eval.froc --predictions=predictions_luna16.csv --annotations=annotations.csv \
        [--excluded=annotations_excluded.csv] [--seriesuids=seriesuids.csv] [--out=DIR]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
from typing import Iterable, Sequence

import numpy as np

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
SUBMISSION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "probability")
EXCLUDED_DEFAULT_DIAMETER_MM = 10.0


@dataclasses.dataclass(frozen=True)
class Findings:
  """Points in world mm per scan: seriesuid [N], xyz [N, 3], and diameter_mm or probability."""
  seriesuid: np.ndarray
  xyz: np.ndarray
  value: np.ndarray


def read_csv(path: str, value_column: str) -> Findings:
  """Reads seriesuid,coordX,coordY,coordZ,<value_column> rows (extra columns are ignored)."""
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    need = ("seriesuid", "coordX", "coordY", "coordZ", value_column)
    missing = [c for c in need if c not in (reader.fieldnames or [])]
    if missing:
      raise ValueError(f"{path}: missing column(s) {missing}; has {reader.fieldnames}")
    uids, xyz, values = [], [], []
    for lineno, row in enumerate(reader, 2):
      try:
        xyz.append([float(row["coordX"]), float(row["coordY"]), float(row["coordZ"])])
        values.append(float(row[value_column]))
      except (TypeError, ValueError):
        raise ValueError(f"{path}:{lineno}: non-numeric value in {row}") from None
      uids.append(row["seriesuid"])
  return Findings(np.asarray(uids, dtype=object), np.asarray(xyz, np.float64).reshape(-1, 3),
                  np.asarray(values, np.float64))


def write_submission(path: str, seriesuid: Iterable[str], xyz: np.ndarray,
                     probability: np.ndarray) -> None:
  """The challenge's submission format: seriesuid,coordX,coordY,coordZ,probability."""
  tmp = path + ".tmp"
  with open(tmp, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(SUBMISSION_COLUMNS)
    for uid, (x, y, z), p in zip(seriesuid, np.asarray(xyz), np.asarray(probability)):
      w.writerow([uid, f"{x:.4f}", f"{y:.4f}", f"{z:.4f}", f"{p:.6f}"])
  os.replace(tmp, path)


def _per_scan(findings: Findings | None, uid: str):
  if findings is None:
    return np.zeros((0, 3)), np.zeros(0)
  m = findings.seriesuid == uid
  return findings.xyz[m], findings.value[m]


def score_scan(cand_xyz, cand_prob, nodule_xyz, nodule_diam, excl_xyz, excl_diam):
  """One scan -> (probability of each nodule's best hit, -inf if missed; FP probabilities)."""
  if len(cand_xyz) == 0:
    return np.full(len(nodule_xyz), -np.inf), np.zeros(0)
  best = np.full(len(nodule_xyz), -np.inf)
  hit_any = np.zeros(len(cand_xyz), bool)
  if len(nodule_xyz):
    d2 = ((cand_xyz[:, None, :] - nodule_xyz[None, :, :]) ** 2).sum(-1)
    hits = d2 < (nodule_diam[None, :] / 2) ** 2  # [candidates, nodules]
    hit_any = hits.any(1)
    probs = np.where(hits, cand_prob[:, None], -np.inf)
    best = probs.max(0)
  ignored = hit_any.copy()
  if len(excl_xyz):
    diam = np.where(excl_diam > 0, excl_diam, EXCLUDED_DEFAULT_DIAMETER_MM)
    d2 = ((cand_xyz[:, None, :] - excl_xyz[None, :, :]) ** 2).sum(-1)
    ignored |= (d2 < (diam[None, :] / 2) ** 2).any(1)
  return best, cand_prob[~ignored]


def froc_curve(tp_probs: np.ndarray, fp_probs: np.ndarray, n_nodules: int, n_scans: int):
  """(fps per scan, sensitivity) at every threshold, from (0, 0) upwards."""
  detected = tp_probs[np.isfinite(tp_probs)]
  scores = np.concatenate([detected, fp_probs])
  is_tp = np.concatenate([np.ones(len(detected)), np.zeros(len(fp_probs))])
  order = np.argsort(-scores, kind="mergesort")
  scores, is_tp = scores[order], is_tp[order]
  tps, fps = np.cumsum(is_tp), np.cumsum(1 - is_tp)
  last_of_tie = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, bool)
  fps_rate = np.r_[0.0, fps[last_of_tie] / n_scans]
  sens = np.r_[0.0, tps[last_of_tie] / max(n_nodules, 1)]
  return fps_rate, sens


def sensitivity_at(fps_rate, sens, rates=FP_RATES) -> np.ndarray:
  """The sensitivity reached with at most `rate` FPs per scan: the curve is a staircase (FPs move
  right, hits move up), so this equals the official linear interpolation between its corners;
  at a corner it takes the top. Beyond the curve's end: its last value."""
  idx = np.searchsorted(fps_rate, rates, side="right") - 1
  return np.asarray(sens)[idx]


def evaluate(predictions: Findings, annotations: Findings, seriesuids: Sequence[str] | None = None,
             excluded: Findings | None = None, *, n_bootstrap: int = 1000, seed: int = 0) -> dict:
  """FROC, CPM and a bootstrap (over scans) 95% band. `seriesuids`: the scans evaluated
  (default: all scans with an annotation or a prediction); predictions outside it are ignored."""
  uids = list(seriesuids) if seriesuids is not None else sorted(
      set(annotations.seriesuid) | set(predictions.seriesuid))
  if not uids:
    raise ValueError("no scans to evaluate")
  per_scan = []
  for uid in uids:
    c_xyz, c_prob = _per_scan(predictions, uid)
    n_xyz, n_diam = _per_scan(annotations, uid)
    e_xyz, e_diam = _per_scan(excluded, uid)
    per_scan.append(score_scan(c_xyz, c_prob, n_xyz, n_diam, e_xyz, e_diam))

  def curve(indices):
    tp = np.concatenate([per_scan[i][0] for i in indices])
    fp = np.concatenate([per_scan[i][1] for i in indices])
    return froc_curve(tp, fp, len(tp), len(indices))

  fps_rate, sens = curve(range(len(uids)))
  at = sensitivity_at(fps_rate, sens)
  n_nodules = sum(len(s[0]) for s in per_scan)
  rng = np.random.default_rng(seed)
  boot = np.array([sensitivity_at(*curve(rng.integers(0, len(uids), len(uids))))
                   for _ in range(n_bootstrap)]) if n_bootstrap else np.zeros((0, len(FP_RATES)))
  result = {
      "n_scans": len(uids), "n_nodules": int(n_nodules),
      "n_detected": int(sum(np.isfinite(s[0]).sum() for s in per_scan)),
      "n_false_positives": int(sum(len(s[1]) for s in per_scan)),
      "fp_rates": list(FP_RATES), "sensitivity": at.tolist(), "cpm": float(at.mean()),
      "curve": {"fps_per_scan": fps_rate.tolist(), "sensitivity": sens.tolist()},
  }
  if n_bootstrap:
    result["sensitivity_ci95"] = np.quantile(boot, [0.025, 0.975], axis=0).T.tolist()
    result["cpm_ci95"] = np.quantile(boot.mean(1), [0.025, 0.975]).tolist()
  return result


def plot_froc(result: dict, path: str, title: str = "FROC") -> None:
  from medjax.eval.plots import plt
  fig, ax = plt.subplots(figsize=(5, 4), dpi=120)
  curve = result["curve"]
  ax.plot(curve["fps_per_scan"], curve["sensitivity"], color="C0",
          label=f"CPM {result['cpm']:.3f}")
  if "sensitivity_ci95" in result:
    lo, hi = np.asarray(result["sensitivity_ci95"]).T
    ax.fill_between(result["fp_rates"], lo, hi, color="C0", alpha=0.2, label="95% band (scans)")
  ax.plot(result["fp_rates"], result["sensitivity"], "o", color="C0")
  ax.set_xscale("log", base=2)
  ax.set_xlim(1 / 8 / 1.5, 8 * 1.5)
  ax.set_ylim(0, 1)
  ax.set_xlabel("false positives per scan")
  ax.set_ylabel("sensitivity")
  ax.set_title(title)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(loc="lower right")
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def read_seriesuids(path: str) -> list[str]:
  with open(path) as f:
    rows = [r.strip().split(",")[0] for r in f if r.strip()]
  return rows[1:] if rows and rows[0] == "seriesuid" else rows


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description="LUNA16 FROC / CPM of a submission file.")
  p.add_argument("--predictions", required=True)
  p.add_argument("--annotations", required=True)
  p.add_argument("--excluded", default=None)
  p.add_argument("--seriesuids", default=None)
  p.add_argument("--bootstrap", type=int, default=1000)
  p.add_argument("--out", default=".")
  args = p.parse_args(argv)
  result = evaluate(read_csv(args.predictions, "probability"),
                    read_csv(args.annotations, "diameter_mm"),
                    read_seriesuids(args.seriesuids) if args.seriesuids else None,
                    read_csv(args.excluded, "diameter_mm") if args.excluded else None,
                    n_bootstrap=args.bootstrap)
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "froc.json"), "w") as f:
    json.dump(result, f, indent=2)
  plot_froc(result, os.path.join(args.out, "froc.png"))
  sens = ", ".join(f"{r:g}: {s:.3f}" for r, s in zip(result["fp_rates"], result["sensitivity"]))
  lo, hi = result.get("cpm_ci95", (float("nan"), float("nan")))
  print(f"{result['n_scans']} scans, {result['n_nodules']} nodules "
        f"({result['n_detected']} hit by a candidate), {result['n_false_positives']} FPs")
  print(f"sensitivity at FPs/scan {sens}")
  print(f"CPM {result['cpm']:.4f} (95% CI {lo:.4f}-{hi:.4f})")
  return result


if __name__ == "__main__":
  main()
