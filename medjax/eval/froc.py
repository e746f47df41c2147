"""LUNA16 FROC and CPM, computed as the challenge's `noduleCADEvaluationLUNA16.py` computes them.

- Only the scans of the evaluated list count (the challenge's `seriesuids.csv`); marks on other
  scans are ignored (and counted). A scan with more than 100 marks keeps only the marks strictly
  more probable than its 101st most probable mark (marks tied at the cut all go).
- A mark hits a finding when its squared distance to the finding's centre is below the squared
  radius; a diameter below 0 counts as 10 mm (for nodules and excluded findings alike).
- Marks that hit a finding of annotations_excluded.csv (and no nodule) count neither as true nor
  as false positives. Several hits on one nodule count once, with the highest probability; the
  other hits count neither way. Nodules no mark hits still count in the sensitivity.
- FROC: the ROC curve of the detected nodules against the false positives (marks of equal
  probability form one point), rescaled to FPs per scan and sensitivity; CPM: the mean of its
  linear interpolation at 1/8, 1/4, 1/2, 1, 2, 4 and 8 FPs per scan. A bootstrap over scans gives
  a 95% band.

    python -m medjax.eval.froc --predictions=submission_luna16.csv --annotations=annotations.csv \
        [--excluded=annotations_excluded.csv] [--seriesuids=seriesuids.csv] [--out=DIR]
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Iterable, Sequence

import numpy as np
from absl import flags

from medjax import cli
from medjax.data.luna16 import tables
from medjax.errors import DataError, UserError
from medjax.eval.plots import data_marks, marked_title, plt
from medjax.rundir import write_csv, write_json, write_text

log = logging.getLogger(__name__)

FP_RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
FP_RATE_LABELS = ("1/8", "1/4", "1/2", "1", "2", "4", "8")
SUBMISSION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "probability")
MAX_MARKS_PER_SCAN = 100
UNKNOWN_DIAMETER_MM = 10.0  # the challenge's size for findings with a negative diameter
CURVE_MAX_FPS = 16.0  # froc.json keeps the curve up to here: enough to interpolate up to 8


@dataclasses.dataclass(frozen=True)
class Findings:
  """Points in world mm per scan: seriesuid [N], xyz [N, 3], and diameter_mm or probability."""
  seriesuid: np.ndarray
  xyz: np.ndarray
  value: np.ndarray


def read_csv(path: str, value_column: str, parse=None) -> Findings:
  """Reads seriesuid,coordX,coordY,coordZ,<value_column> rows (extra columns are ignored) with
  the LUNA16 CSV reader (`medjax.data.luna16.tables`): every number finite (the value checked
  by `parse`, default any finite number), bad rows named."""
  columns = {"seriesuid": tables.text, "coordX": tables.number, "coordY": tables.number,
             "coordZ": tables.number, value_column: parse or tables.number}
  what = "predictions file" if value_column == "probability" else "annotations file"
  cols = tables.read_csv(path, columns, what=what)
  xyz = np.stack([cols["coordX"], cols["coordY"], cols["coordZ"]], axis=-1) if cols["coordX"] \
      else np.zeros((0, 3))
  return Findings(np.asarray(cols["seriesuid"], dtype=object), np.asarray(xyz, np.float64),
                  np.asarray(cols[value_column], np.float64))


def read_annotations(path: str, *, excluded: bool = False) -> Findings:
  """annotations.csv (nodules: a diameter > 0, else no mark can hit it) or, `excluded`,
  annotations_excluded.csv (also a negative diameter: size unknown, scored as 10 mm)."""
  return read_csv(path, "diameter_mm",
                  tables.excluded_diameter if excluded else tables.diameter)


def read_seriesuids(path: str) -> list[str]:
  """The scans to evaluate: one uid a line (the challenge's seriesuids.csv), or the same under a
  `seriesuid` header. Duplicates are dropped (they do not change the challenge's result)."""
  rows = tables.read_seriesuids(path)
  if not rows:
    raise DataError(f"{path}: no seriesuid in the scan list")
  return list(dict.fromkeys(rows))


def write_seriesuids(path: str, seriesuids: Iterable[str]) -> None:
  """The challenge's scan list: one uid a line, no header."""
  write_text(path, "".join(f"{u}\n" for u in seriesuids))


def write_submission(path: str, seriesuid: Iterable[str], xyz: np.ndarray,
                     probability: np.ndarray) -> None:
  """The challenge's submission format: seriesuid,coordX,coordY,coordZ,probability. Numbers are
  written exactly (repr), so that rounding creates no ties the model did not make."""
  write_csv(path, SUBMISSION_COLUMNS, (
      (uid, repr(float(x)), repr(float(y)), repr(float(z)), repr(float(p)))
      for uid, (x, y, z), p in zip(seriesuid, np.asarray(xyz, np.float64),
                                   np.asarray(probability, np.float64))))


def _group(findings: Findings | None) -> dict[str, np.ndarray]:
  """seriesuid -> row indices."""
  groups: dict[str, list[int]] = {}
  if findings is not None:
    for i, uid in enumerate(findings.seriesuid):
      groups.setdefault(uid, []).append(i)
  return {uid: np.asarray(rows) for uid, rows in groups.items()}


def keep_most_probable(prob: np.ndarray, max_marks: int | None = MAX_MARKS_PER_SCAN) -> np.ndarray:
  """Mask of the marks of one scan the challenge scores: all when there are at most `max_marks`,
  else those strictly more probable than the (max_marks + 1)-th most probable mark."""
  if max_marks is None or len(prob) <= max_marks:
    return np.ones(len(prob), bool)
  cut = np.sort(prob)[::-1][max_marks]
  return prob > cut


def _radius2(diameter: np.ndarray) -> np.ndarray:
  return (np.where(diameter < 0, UNKNOWN_DIAMETER_MM, diameter) / 2) ** 2


def _hits(cand_xyz: np.ndarray, xyz: np.ndarray, diameter: np.ndarray) -> np.ndarray:
  """[candidates, findings]: the candidate lies strictly inside the finding's sphere."""
  d2 = ((cand_xyz[:, None, :] - xyz[None, :, :]) ** 2).sum(-1)
  return d2 < _radius2(diameter)[None, :]


@dataclasses.dataclass(frozen=True)
class ScanScore:
  """One scan: each nodule's best hit probability (-inf if missed), the false positives'
  probabilities, and how many marks hit only excluded findings or were extra hits on a nodule."""
  nodule_prob: np.ndarray
  fp_prob: np.ndarray
  excluded_hits: int
  extra_hits: int


def score_scan(cand_xyz, cand_prob, nodule_xyz, nodule_diam, excl_xyz, excl_diam) -> ScanScore:
  """Matches the (already capped) marks of one scan against its nodules and excluded findings."""
  cand_xyz, cand_prob = np.asarray(cand_xyz, np.float64).reshape(-1, 3), np.asarray(cand_prob)
  hits = _hits(cand_xyz, np.asarray(nodule_xyz).reshape(-1, 3), np.asarray(nodule_diam))
  nodule_prob = np.where(hits, cand_prob[:, None], -np.inf).max(0, initial=-np.inf)
  on_nodule = hits.any(1)
  on_excluded = _hits(cand_xyz, np.asarray(excl_xyz).reshape(-1, 3), np.asarray(excl_diam)).any(1)
  excluded_only = on_excluded & ~on_nodule
  return ScanScore(nodule_prob, cand_prob[~(on_nodule | on_excluded)], int(excluded_only.sum()),
                   int(np.maximum(hits.sum(0) - 1, 0).sum()))


def froc_curve(nodule_prob: np.ndarray, fp_prob: np.ndarray, n_scans: int):
  """(FPs per scan, sensitivity) at (0, 0) and at each distinct probability, highest first.

  nodule_prob: every nodule's best hit probability, -inf for the missed ones. The arithmetic is
  the challenge's (sklearn's rates rescaled: k / n_fp * n_fp / n_scans), so that the numbers agree
  to the last bit (k / 49 * 49 is not k)."""
  detected = nodule_prob[np.isfinite(nodule_prob)]
  n_nodules, n_det, n_fp = len(nodule_prob), len(detected), len(fp_prob)
  scores = np.concatenate([detected, fp_prob])
  is_tp = np.r_[np.ones(n_det), np.zeros(n_fp)]
  order = np.argsort(-scores, kind="stable")
  scores, is_tp = scores[order], is_tp[order]
  last_of_tie = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, bool)
  tps = np.r_[0.0, np.cumsum(is_tp)[last_of_tie]]
  fps = np.r_[0.0, np.cumsum(1 - is_tp)[last_of_tie]]
  fps_per_scan = fps / n_fp * n_fp / n_scans if n_fp else np.zeros_like(fps)
  # No nodule detected: the challenge gets NaN (0/0 in sklearn's TPR); the sensitivity is 0.
  sens = tps / n_det * n_det / n_nodules if n_det else np.zeros_like(tps)
  return fps_per_scan, sens


def sensitivity_at(fps_per_scan, sens, rates=FP_RATES) -> np.ndarray:
  """The curve's linear interpolation at `rates` FPs per scan (np.interp, as the challenge):
  ties between hits and false positives are diagonal segments; at a vertical step it reads the
  top; beyond the curve's end, its last value."""
  return np.interp(rates, fps_per_scan, sens)


def evaluate(predictions: Findings, annotations: Findings, seriesuids: Sequence[str] | None = None,
             excluded: Findings | None = None, *,
             max_marks_per_scan: int | None = MAX_MARKS_PER_SCAN,
             n_bootstrap: int = 1000, seed: int = 0) -> dict:
  """FROC, CPM and a bootstrap (over scans) 95% band of `predictions` on the scans `seriesuids`
  (default: every scan with an annotation or a prediction). Marks on other scans are ignored."""
  uids = list(dict.fromkeys(seriesuids)) if seriesuids is not None else sorted(
      set(annotations.seriesuid) | set(predictions.seriesuid))
  if not uids:
    raise DataError("no scans to evaluate")
  bad = ~np.isfinite(predictions.value)
  if bad.any():
    i = int(np.flatnonzero(bad)[0])
    raise DataError(f"prediction {i} ({predictions.seriesuid[i]}): probability "
                    f"{predictions.value[i]} is not a finite number")
  marks, nodules, excl = _group(predictions), _group(annotations), _group(excluded)
  listed = set(uids)
  n_outside = sum(len(rows) for uid, rows in marks.items() if uid not in listed)
  if not len(predictions.seriesuid):
    raise DataError("no predictions to evaluate")
  if n_outside == len(predictions.seriesuid):
    raise DataError(f"none of the {len(marks)} scans with predictions is among the {len(uids)} "
                    f"evaluated scans (e.g. {uids[0]!r}): wrong seriesuids list?")
  if n_outside:
    log.warning("%d marks on %d scans outside the %d evaluated scans are ignored", n_outside,
                len(set(marks) - listed), len(uids))
  none, empty = np.zeros(0, int), np.zeros(0)
  per_scan, n_marks, n_over_cap = [], 0, 0
  for uid in uids:
    m, n, e = marks.get(uid, none), nodules.get(uid, none), excl.get(uid, none)
    prob = predictions.value[m]
    keep = keep_most_probable(prob, max_marks_per_scan)
    n_marks, n_over_cap = n_marks + len(m), n_over_cap + int((~keep).sum())
    e_xyz, e_diam = (excluded.xyz[e], excluded.value[e]) if excluded is not None else (empty, empty)
    per_scan.append(score_scan(predictions.xyz[m][keep], prob[keep], annotations.xyz[n],
                               annotations.value[n], e_xyz, e_diam))
  n_nodules = sum(len(s.nodule_prob) for s in per_scan)
  if not n_nodules:
    raise DataError(f"no annotated nodule on the {len(uids)} evaluated scans: "
                    f"the sensitivity is undefined")

  def curve(indices):
    nod = np.concatenate([per_scan[i].nodule_prob for i in indices])
    fp = np.concatenate([per_scan[i].fp_prob for i in indices])
    return froc_curve(nod, fp, len(indices)) if len(nod) else None

  fps_per_scan, sens = curve(range(len(uids)))
  at = sensitivity_at(fps_per_scan, sens)
  shown = np.searchsorted(fps_per_scan, CURVE_MAX_FPS, side="right") + 1
  result = {
      "n_scans": len(uids), "n_nodules": int(n_nodules),
      "n_detected": int(sum(np.isfinite(s.nodule_prob).sum() for s in per_scan)),
      "n_marks": n_marks, "n_marks_over_cap": n_over_cap,
      "n_marks_outside_list": n_outside,
      "n_false_positives": int(sum(len(s.fp_prob) for s in per_scan)),
      "n_excluded_hits": sum(s.excluded_hits for s in per_scan),
      "n_extra_hits": sum(s.extra_hits for s in per_scan),
      "max_marks_per_scan": max_marks_per_scan,
      "fp_rates": list(FP_RATES), "sensitivity": at.tolist(), "cpm": float(at.mean()),
      "curve": {"fps_per_scan": fps_per_scan[:shown].tolist(),
                "sensitivity": sens[:shown].tolist()},
  }
  if n_bootstrap:
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_bootstrap):
      c = curve(rng.integers(0, len(uids), len(uids)))
      if c is not None:  # a resample without nodules has no sensitivity
        boot.append(sensitivity_at(*c))
    if boot:
      boot = np.asarray(boot)
      result["n_bootstrap"] = len(boot)
      result["sensitivity_ci95"] = np.quantile(boot, [0.025, 0.975], axis=0).T.tolist()
      result["cpm_ci95"] = np.quantile(boot.mean(1), [0.025, 0.975]).tolist()
  return result


def plot_froc(result: dict, path: str, title: str = "FROC", *, synthetic: bool = False) -> None:
  """The FROC curve on log-scaled FPs per scan (1/8..8), the 7 operating points and the band."""
  fig, ax = plt.subplots(figsize=(6, 5), dpi=120)
  curve = result["curve"]
  lo_x, hi_x = FP_RATES[0] / 1.5, FP_RATES[-1] * 1.5
  # The curve as np.interp reads it (ties are straight in linear, not log, x), corners exact.
  xp = np.asarray(curve["fps_per_scan"])
  x = np.union1d(np.geomspace(lo_x, hi_x, 400), xp[(xp > lo_x) & (xp < hi_x)])
  ci = result.get("cpm_ci95")
  cpm = f"CPM {result['cpm']:.3f}" + (f" (95% CI {ci[0]:.3f}-{ci[1]:.3f})" if ci else "")
  ax.plot(x, np.interp(x, curve["fps_per_scan"], curve["sensitivity"]), color="C0", lw=2,
          label=f"FROC, {cpm}")
  if "sensitivity_ci95" in result:
    lo, hi = np.asarray(result["sensitivity_ci95"]).T
    ax.fill_between(result["fp_rates"], lo, hi, color="C0", alpha=0.2,
                    label=f"95% band (bootstrap over {result['n_scans']} scans)")
  ax.plot(result["fp_rates"], result["sensitivity"], "o", color="C1",
          label="sensitivity at 1/8 ... 8 FPs/scan")
  ax.set_xscale("log", base=2)
  ax.set_xticks(FP_RATES, FP_RATE_LABELS)
  ax.minorticks_off()
  ax.set_xlim(lo_x, hi_x)
  ax.set_ylim(0, 1)
  ax.set_xlabel("average false positives per scan")
  ax.set_ylabel("sensitivity")
  n_scans, n_nodules = result["n_scans"], result["n_nodules"]
  counts = f"{n_scans} scan{'s' * (n_scans != 1)}, {n_nodules} nodule{'s' * (n_nodules != 1)}"
  ax.set_title(f"{marked_title(title, data_marks(synthetic))}\n{counts}",
               color="C3" if synthetic else "black")
  ax.grid(True, alpha=0.3)
  ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def write_run_froc(workdir: str, seriesuids: Sequence[str], world: np.ndarray,
                   probs: np.ndarray, annotations_csv: str, excluded_csv: str | None = None, *,
                   synthetic: bool, title: str, n_bootstrap: int = 1000) -> dict:
  """A run's LUNA16 scoring in `workdir`: submission_luna16.csv (one mark per tested candidate:
  `seriesuids`, `world` [N, 3] x, y, z mm, `probs`), submission_seriesuids.csv (the tested scans,
  the challenge's format), froc.json and froc.png. The written submission is read back and scored
  on the tested scans; returns what froc.json holds. DataError when they hold no nodule."""
  sub = os.path.join(workdir, "submission_luna16.csv")
  uids = sorted(set(np.asarray(seriesuids).tolist()))
  write_submission(sub, seriesuids, world, probs)
  write_seriesuids(os.path.join(workdir, "submission_seriesuids.csv"), uids)
  result = evaluate(read_csv(sub, "probability"), read_annotations(annotations_csv), uids,
                    read_annotations(excluded_csv, excluded=True) if excluded_csv else None,
                    n_bootstrap=n_bootstrap)
  result = {"title": title, "synthetic": synthetic, **result}
  write_json(os.path.join(workdir, "froc.json"), result)
  plot_froc(result, os.path.join(workdir, "froc.png"), title, synthetic=synthetic)
  return result


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string("predictions", None, "Submission CSV: seriesuid,coordX,coordY,coordZ,"
                      "probability (required).", flag_values=fv)
  flags.DEFINE_string("annotations", None, "annotations.csv: seriesuid,coordX,coordY,coordZ,"
                      "diameter_mm (required).", flag_values=fv)
  flags.DEFINE_string("excluded", None, "annotations_excluded.csv: findings whose hits count "
                      "neither way (default: none).", flag_values=fv)
  flags.DEFINE_string("seriesuids", None, "The scans to evaluate, one uid a line, with or "
                      "without a `seriesuid` header (default: every scan with an annotation or a "
                      "prediction).", flag_values=fv)
  flags.DEFINE_integer("bootstrap", 1000, "Bootstrap resamples over scans for the 95% band "
                       "(0: none).", lower_bound=0, flag_values=fv)
  flags.DEFINE_string("out", ".", "Directory for froc.json and froc.png.", flag_values=fv)
  flags.DEFINE_string("title", "FROC", "Title of froc.png.", flag_values=fv)


def main(argv: Sequence[str] | None = None) -> dict:
  """Scores a submission file; `argv` are the flags (default: sys.argv[1:]). Raises UserError
  (absl's flag errors are turned into one) for anything the user can fix."""
  fv = cli.parse_flags(define_flags, argv, __doc__)
  for name in ("predictions", "annotations"):
    if not fv[name].value:
      raise UserError(f"--{name} is required")
  result = evaluate(read_csv(fv.predictions, "probability"),
                    read_annotations(fv.annotations),
                    read_seriesuids(fv.seriesuids) if fv.seriesuids else None,
                    read_annotations(fv.excluded, excluded=True) if fv.excluded else None,
                    n_bootstrap=fv.bootstrap)
  os.makedirs(fv.out, exist_ok=True)
  write_json(os.path.join(fv.out, "froc.json"), result)
  plot_froc(result, os.path.join(fv.out, "froc.png"), fv.title)
  sens = ", ".join(f"{r}: {s:.3f}" for r, s in zip(FP_RATE_LABELS, result["sensitivity"]))
  print(f"{result['n_scans']} scans, {result['n_nodules']} nodules "
        f"({result['n_detected']} hit by a mark), {result['n_marks']} marks "
        f"({result['n_marks_over_cap']} over the {MAX_MARKS_PER_SCAN}-per-scan cap, "
        f"{result['n_marks_outside_list']} on scans outside the list, ignored), "
        f"{result['n_false_positives']} FPs, {result['n_excluded_hits']} on excluded findings")
  print(f"sensitivity at FPs/scan {sens}")
  ci = result.get("cpm_ci95")
  print(f"CPM {result['cpm']:.4f}" + (f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else ""))
  return result


def console_main() -> None:
  """The `medjax-froc` console script and `python -m medjax.eval.froc`."""
  cli.run(main)


if __name__ == "__main__":
  console_main()
