import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medjax.errors import DataError, UserError
from medjax.eval import froc


def _f(rows):
  uids, xyz, vals = zip(*[(u, (x, y, z), v) for u, x, y, z, v in rows]) if rows else ((), (), ())
  return froc.Findings(np.asarray(uids, dtype=object), np.asarray(xyz, float).reshape(-1, 3),
                       np.asarray(vals, float))


def _write(path, header, rows):
  path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
  return str(path)


NODULES = _f([("s1", 0, 0, 0, 10), ("s1", 50, 50, 50, 6), ("s2", 10, 10, 10, 8),
              ("s2", -30, 0, 0, 20)])
SCANS16 = [f"s{i}" for i in range(16)]  # 1 FP per scan = 16 FPs in all


def test_perfect_detector_has_cpm_one():
  preds = _f([(u, *xyz, 1.0) for u, xyz in zip(NODULES.seriesuid, NODULES.xyz)])
  result = froc.evaluate(preds, NODULES, ["s1", "s2"], n_bootstrap=50)
  assert result["cpm"] == 1.0 and result["n_false_positives"] == 0
  assert result["cpm_ci95"] == [1.0, 1.0]


def test_known_partial_case_without_ties():
  preds = _f([
      ("s1", 1, 1, 1, 0.9),      # hits nodule 1 (radius 5): TP
      ("s1", 2, 0, 0, 0.3),      # second hit on nodule 1: neither TP nor FP
      ("s1", 100, 0, 0, 0.85),   # FP
      ("s2", 10, 14, 10, 0.8),   # 4 mm from nodule 3 (radius 4): not a hit -> FP
      ("s2", -30, 9, 0, 0.7),    # 9 mm from nodule 4 (radius 10): TP
      ("s2", 200, 0, 0, 0.1),    # FP
  ])
  result = froc.evaluate(preds, NODULES, ["s1", "s2"], n_bootstrap=0)
  assert result["n_detected"] == 2 and result["n_false_positives"] == 3
  # Curve: (0, 0) | 0.9 TP (0, 1/4) | 0.85 FP (0.5, 1/4) | 0.8 FP (1, 1/4) | 0.7 TP (1, 2/4)
  # | 0.1 FP (1.5, 2/4). No ties: steps only; at 1 FP/scan the top of the step.
  np.testing.assert_allclose(result["sensitivity"], [0.25, 0.25, 0.25, 0.5, 0.5, 0.5, 0.5])
  assert result["cpm"] == pytest.approx((0.25 * 3 + 0.5 * 4) / 7)
  assert result["n_extra_hits"] == 1


def test_a_tie_between_a_hit_and_a_false_positive_is_a_diagonal_segment():
  nodules = _f([("s1", 0, 0, 0, 10), ("s1", 50, 50, 50, 10)])
  preds = _f([("s1", 1, 0, 0, 0.9),      # TP
              ("s1", 200, 0, 0, 0.5),    # FP, tied with
              ("s1", 50, 50, 51, 0.5)])  # TP
  result = froc.evaluate(preds, nodules, ["s1"], n_bootstrap=0)
  # Curve (0, 0), (0, 1/2) at 0.9, (1, 1) at 0.5: one straight segment from (0, 1/2) to (1, 1),
  # sensitivity 1/2 + x/2 at x FPs/scan: 1/8 -> 0.5625, 1/4 -> 0.625, 1/2 -> 0.75, then 1.
  # CPM = (0.5625 + 0.625 + 0.75 + 4) / 7 = 5.9375 / 7. (A staircase would read 0.5 at 1/8..1/2.)
  assert result["sensitivity"] == [0.5625, 0.625, 0.75, 1.0, 1.0, 1.0, 1.0]
  assert result["cpm"] == pytest.approx(5.9375 / 7)
  assert result["curve"] == {"fps_per_scan": [0.0, 0.0, 1.0], "sensitivity": [0.0, 0.5, 1.0]}


def _crowded_scan(n_fp_above: int, hit_probs, fp_probs=()):
  """Scan s0 of SCANS16 with one nodule, `n_fp_above` FPs at 0.99, 0.989, ..., hits on the nodule
  and further FPs with the given probabilities; scan s1's nodule is found at 1.0 (sensitivity 1/2
  from 0 FPs on: with nothing detected the challenge's script would get NaN)."""
  rows = [("s1", 0, 0, 0, 1.0)]
  rows += [("s0", 100 + 10 * i, 0, 0, 0.99 - 0.001 * i) for i in range(n_fp_above)]
  rows += [("s0", 0, 0, 0.1 * i, p) for i, p in enumerate(hit_probs)]
  rows += [("s0", -300, 10 * i, 0, p) for i, p in enumerate(fp_probs)]
  return _f(rows), _f([("s0", 0, 0, 0, 10), ("s1", 0, 0, 0, 10)])


def test_marks_tied_at_the_100_mark_cut_all_go():
  # s0: 101 marks, 99 FPs, then a hit and an FP both at 0.5. The 101st most probable is 0.5, so
  # only marks above 0.5 stay: the nodule is missed, sensitivity 1/2 throughout. Uncut, the tie
  # would run from (99/16, 1/2) to (100/16, 1) and give 1 at 8 FPs/scan (CPM 4/7).
  preds, nodules = _crowded_scan(99, [0.5], [0.5])
  result = froc.evaluate(preds, nodules, SCANS16, n_bootstrap=0)
  assert result["sensitivity"] == [0.5] * 7 and result["cpm"] == 0.5
  assert result["n_marks"] == 102 and result["n_marks_over_cap"] == 2
  # 100 marks (98 FPs): no cut. Hit and FP tied: diagonal from (98/16, 1/2) to (99/16, 1).
  preds, nodules = _crowded_scan(98, [0.5], [0.5])
  result = froc.evaluate(preds, nodules, SCANS16, n_bootstrap=0)
  assert result["sensitivity"] == [0.5] * 6 + [1.0] and result["n_marks_over_cap"] == 0
  # Ties above the cut stay: 100 marks at 0.6 (99 FPs and the hit), a 101st at 0.5.
  preds, nodules = _crowded_scan(0, [0.6], [0.6] * 99 + [0.5])
  result = froc.evaluate(preds, nodules, SCANS16, n_bootstrap=0)
  assert result["n_marks_over_cap"] == 1 and result["n_detected"] == 2
  # All 100 at 0.6 in one point: (0, 1/2) -> (99/16, 1); at 4 FPs/scan 1/2 + 1/2 * 4 / (99/16).
  assert result["sensitivity"][5] == pytest.approx(0.5 + 32 / 99)


@pytest.mark.parametrize("rank,cpm", [(100, 4 / 7), (101, 0.5)])
def test_a_scan_with_more_than_100_confident_marks_keeps_its_100_most_probable(rank, cpm):
  # s0: 120 marks, all above 0.87; the hit is the rank-th most probable. Rank 100: 99 FPs before
  # it (99/16 = 6.19 FPs/scan): sensitivity 1 at 8 FPs/scan only, 1/2 below (CPM 4/7). Rank 101:
  # cut, never detected: 1/2 throughout (uncut: 1 at 8 FPs/scan, CPM 4/7).
  above = rank - 1
  preds, nodules = _crowded_scan(above, [0.99 - 0.001 * above + 0.0001],
                                 [0.99 - 0.001 * i for i in range(above, 119)])
  result = froc.evaluate(preds, nodules, SCANS16, n_bootstrap=0)
  assert result["cpm"] == pytest.approx(cpm)
  assert result["n_marks"] == 121 and result["n_marks_over_cap"] == 20


def test_excluded_findings_count_neither_way():
  preds = _f([("s1", 0, 0, 0, 0.9), ("s1", 300, 0, 0, 0.95)])
  nodules = _f([("s1", 0, 0, 0, 10)])
  without = froc.evaluate(preds, nodules, ["s1"], n_bootstrap=0)
  assert without["n_false_positives"] == 1 and without["sensitivity"][0] == 0.0
  excluded = _f([("s1", 302, 0, 0, -1)])  # no diameter: 10 mm, as the official script
  with_excl = froc.evaluate(preds, nodules, ["s1"], excluded, n_bootstrap=0)
  assert with_excl["n_false_positives"] == 0 and with_excl["cpm"] == 1.0
  assert with_excl["n_nodules"] == 1 and with_excl["n_excluded_hits"] == 1


def test_diameter_rules_of_the_challenge():
  nodules = _f([("s1", 0, 0, 0, -1)])  # negative diameter: 10 mm for nodules too
  excluded = _f([("s1", 100, 0, 0, -1),   # 10 mm
                 ("s1", 200, 0, 0, 0),    # diameter 0: radius 0, nothing hits it
                 ("s1", 0, 0, 1, 2)])     # overlaps the nodule
  preds = _f([("s1", 4, 0, 0, 0.9),       # 4 mm from the nodule: TP
              ("s1", 0, 0, 1.5, 0.4),     # on the nodule and the overlapping finding: extra hit
              ("s1", 102, 0, 0, 0.95),    # on an excluded finding: ignored
              ("s1", 200, 0, 0, 0.8)])    # at the centre of the 0 mm finding: FP
  result = froc.evaluate(preds, nodules, ["s1"], excluded, n_bootstrap=0)
  assert (result["n_detected"], result["n_false_positives"]) == (1, 1)
  assert (result["n_excluded_hits"], result["n_extra_hits"]) == (1, 1)
  # Curve (0, 0), (0, 1) at 0.9, (1, 1) at 0.8.
  assert result["cpm"] == 1.0


def test_one_mark_on_two_overlapping_nodules_detects_both():
  nodules = _f([("s1", 0, 0, 0, 10), ("s1", 3, 0, 0, 10)])
  preds = _f([("s1", 1.5, 0, 0, 0.7), ("s1", 1.5, 0, 1, 0.2)])  # both marks hit both nodules
  result = froc.evaluate(preds, nodules, ["s1"], n_bootstrap=0)
  assert result["n_detected"] == 2 and result["n_false_positives"] == 0
  assert result["cpm"] == 1.0 and result["n_extra_hits"] == 2


def test_scans_without_marks_count_for_the_fp_rate_and_missed_nodules():
  preds = _f([("s1", 0, 0, 0, 0.9), ("s1", 100, 0, 0, 0.8)])
  nodules = _f([("s1", 0, 0, 0, 10), ("s3", 0, 0, 0, 10)])
  result = froc.evaluate(preds, nodules, ["s1", "s2", "s3", "s4"], n_bootstrap=0)
  # One FP over 4 scans = 0.25 FP/scan; one of two nodules found: (0, 0), (0, 1/2), (1/4, 1/2).
  assert result["curve"]["fps_per_scan"] == [0.0, 0.0, 0.25]
  assert result["sensitivity"] == [0.5] * 7 and result["n_scans"] == 4


def test_nothing_detected_is_sensitivity_zero_and_no_nodule_is_an_error():
  nodules = _f([("s1", 0, 0, 0, 10)])
  result = froc.evaluate(_f([("s1", 100, 0, 0, 0.9)]), nodules, ["s1"], n_bootstrap=10)
  assert result["cpm"] == 0.0  # the challenge's script gets NaN (0/0) here
  with pytest.raises(DataError, match="no annotated nodule"):
    froc.evaluate(_f([("s2", 0, 0, 0, 0.9)]), nodules, ["s2"], n_bootstrap=0)


def test_marks_outside_the_list_are_ignored_and_counted(caplog):
  preds = _f([("s1", 0, 0, 0, 0.9), ("other", 100, 0, 0, 0.99), ("other", 5, 0, 0, 0.8)])
  result = froc.evaluate(preds, NODULES, ["s1"], n_bootstrap=0)
  assert result["n_marks_outside_list"] == 2 and result["n_marks"] == 1
  assert result["n_false_positives"] == 0 and result["sensitivity"][0] == 0.5
  assert "2 marks on 1 scans outside" in caplog.text


def test_no_overlap_and_nan_are_rejected(tmp_path):
  with pytest.raises(DataError, match="none of the 1 scans with predictions"):
    froc.evaluate(_f([("x", 0, 0, 0, 0.9)]), NODULES, ["s1", "s2"], n_bootstrap=0)
  with pytest.raises(DataError, match=r"prediction 1 \(s1\): probability nan"):
    froc.evaluate(_f([("s1", 0, 0, 0, 0.9), ("s1", 0, 0, 0, np.nan)]), NODULES, n_bootstrap=0)
  path = _write(tmp_path / "pred.csv", ",".join(froc.SUBMISSION_COLUMNS),
                [("s1", 0, 0, 0, 0.5), ("s1", 0, 0, 0, "nan"), ("s1", 0, 0, 0, "inf")])
  with pytest.raises(DataError, match=r"pred.csv:3: probability must be finite, got 'nan'"):
    froc.read_csv(path, "probability")


def test_seriesuid_lists_with_and_without_header_and_a_bom(tmp_path):
  plain, header, bom = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
  plain.write_text("s1\ns2\n\ns1\n")
  header.write_text("seriesuid\ns1\r\ns2\r\n")
  bom.write_bytes("seriesuid\ns1\ns2\n".encode("utf-8-sig"))
  for path in (plain, header, bom):
    assert froc.read_seriesuids(str(path)) == ["s1", "s2"]
  froc.write_seriesuids(str(plain), ["s1", "s2"])
  assert plain.read_text() == "s1\ns2\n"  # the challenge's seriesuids.csv: no header
  (tmp_path / "empty.csv").write_text("seriesuid\n")
  with pytest.raises(DataError, match="empty.csv: no seriesuid"):
    froc.read_seriesuids(str(tmp_path / "empty.csv"))


def test_csv_with_a_bom_and_undecodable_csv(tmp_path):
  path = tmp_path / "pred.csv"
  path.write_bytes("seriesuid,coordX,coordY,coordZ,probability\ns1,1,2,3,0.5\n"
                   .encode("utf-8-sig"))
  back = froc.read_csv(str(path), "probability")
  assert list(back.seriesuid) == ["s1"] and back.value.tolist() == [0.5]
  path.write_bytes(b"seriesuid,coordX,coordY,coordZ,probability\ns\xff1,1,2,3,0.5\n")
  with pytest.raises(DataError, match="pred.csv: not a UTF-8"):
    froc.read_csv(str(path), "probability")
  with pytest.raises(DataError, match="pred.csv: not a UTF-8"):
    froc.read_seriesuids(str(path))


def test_submission_round_trip_is_exact(tmp_path):
  path = tmp_path / "sub.csv"
  probs = np.array([0.1, 0.9999999], np.float32)  # %.6f would make these 1.000000, a tie
  froc.write_submission(str(path), ["a", "b"], np.array([[1, 2, 3], [4, 5, 6.5]]), probs)
  back = froc.read_csv(str(path), "probability")
  assert list(back.seriesuid) == ["a", "b"]
  assert back.xyz.tolist() == [[1, 2, 3], [4, 5, 6.5]] and back.value.tolist() == probs.tolist()


def test_bad_csv_is_a_clear_error(tmp_path):
  p = tmp_path / "bad.csv"
  p.write_text("seriesuid,coordX,coordY\ns1,0,0\n")
  with pytest.raises(DataError, match="missing column"):
    froc.read_csv(str(p), "probability")
  p.write_text("seriesuid,coordX,coordY,coordZ,probability\ns1,0,zero,0,0.5\n")
  with pytest.raises(DataError, match="bad.csv:2: could not convert"):
    froc.read_csv(str(p), "probability")
  with pytest.raises(DataError, match="missing .*missing.csv"):
    froc.read_csv(str(tmp_path / "missing.csv"), "probability")


@st.composite
def _submissions(draw):
  rows = []
  for s in range(draw(st.integers(1, 4))):
    n = draw(st.sampled_from([0, 3, 10, 101, 104] if s else [3, 104]))
    probs = draw(st.lists(st.sampled_from([0.1, 0.3, 0.5, 0.7, 0.9, 1.0]), min_size=n, max_size=n))
    near = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    for i, (p, hit) in enumerate(zip(probs, near)):
      rows.append((f"s{s}", float(i % 3) if hit else 100.0 + i, 0.0, 0.0, p))
  return rows


@settings(max_examples=25, deadline=None)
@given(rows=_submissions(), order=st.randoms(use_true_random=False))
def test_cpm_does_not_depend_on_the_order_of_rows(rows, order):
  nodules = _f([(f"s{s}", 0, 0, 0, 10) for s in range(4)] + [("s1", 2, 0, 0, 4)])
  excluded = _f([("s2", 105, 0, 0, -1)])
  scans = [f"s{s}" for s in range(5)]
  result = froc.evaluate(_f(rows), nodules, scans, excluded, n_bootstrap=0)
  shuffled = list(rows)
  order.shuffle(shuffled)
  again = froc.evaluate(_f(shuffled), nodules, scans, excluded, n_bootstrap=0)
  assert again["cpm"] == result["cpm"] and again["sensitivity"] == result["sensitivity"]
  assert again["curve"] == result["curve"]


def test_write_run_froc(tmp_path):
  ann = _write(tmp_path / "annotations.csv", "seriesuid,coordX,coordY,coordZ,diameter_mm",
               [("s1", 0, 0, 0, 10), ("s2", 0, 0, 0, 10), ("s9", 0, 0, 0, 10)])
  excl = _write(tmp_path / "excluded.csv", "seriesuid,coordX,coordY,coordZ,diameter_mm",
                [("s2", 100, 0, 0, -1)])
  run = tmp_path / "run"
  run.mkdir()
  world = np.array([[0, 0, 0], [50, 0, 0], [101, 0, 0], [1, 0, 0]], np.float32)
  result = froc.write_run_froc(str(run), np.array(["s1", "s1", "s2", "s2"]), world,
                               np.array([0.9, 0.5, 0.8, 0.5], np.float32), ann, excl,
                               synthetic=True, title="luna_cnn (test)", n_bootstrap=20)
  assert (run / "submission_seriesuids.csv").read_text() == "s1\ns2\n"  # tested scans only
  assert (run / "submission_luna16.csv").read_text().startswith(
      "seriesuid,coordX,coordY,coordZ,probability\ns1,0.0,0.0,0.0,0.8999999761581421\n")
  assert json.loads((run / "froc.json").read_text()) == result
  assert result["synthetic"] and result["n_scans"] == 2 and result["n_nodules"] == 2
  assert (result["n_excluded_hits"], result["n_false_positives"]) == (1, 1)
  # FP (s1, 0.5) tied with the hit on s2 (0.5): (0, 1/2) -> (1/2, 1); 1/8 -> 5/8.
  assert result["sensitivity"][:3] == [0.625, 0.75, 1.0] and "cpm_ci95" in result
  assert (run / "froc.png").stat().st_size > 10_000


def test_command_writes_json_and_plot(tmp_path, capsys):
  pred = tmp_path / "pred.csv"
  ann = _write(tmp_path / "ann.csv", "seriesuid,coordX,coordY,coordZ,diameter_mm",
               [("s1", 0, 0, 0, 5)])
  uids = tmp_path / "uids.csv"
  uids.write_text("seriesuid\ns1\n")
  froc.write_submission(str(pred), ["s1", "s1"], np.array([[0, 0, 0], [9, 9, 9]]), [0.9, 0.2])
  result = froc.main([f"--predictions={pred}", f"--annotations={ann}", f"--seriesuids={uids}",
                      "--bootstrap=20", f"--out={tmp_path}"])
  assert result["cpm"] == 1.0 and result["n_scans"] == 1
  assert (tmp_path / "froc.png").stat().st_size > 0 and (tmp_path / "froc.json").exists()
  assert "CPM 1.0000" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    ([], "--predictions is required"),
    (["--predictions=nowhere.csv", "--annotations=a.csv"], "missing predictions file: nowhere.csv"),
    (["--bootstrap=-1"], "-1"),
    (["--nosuchflag"], "nosuchflag"),
])
def test_command_user_errors_are_one_line(args, message):
  with pytest.raises(UserError) as err:
    froc.main(args)
  assert message in str(err.value) and "\n" not in str(err.value)


def test_module_runs_as_a_command(tmp_path):
  env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(__file__))}
  env.pop("MEDJAX_DEBUG", None)
  done = subprocess.run([sys.executable, "-m", "medjax.eval.froc", "--predictions=nowhere.csv",
                         "--annotations=a.csv"], capture_output=True, text=True, env=env,
                        cwd=tmp_path)
  assert done.returncode == 2 and done.stderr == "error: missing predictions file: nowhere.csv\n"
  done = subprocess.run([sys.executable, "-m", "medjax.eval.froc", "--help"], capture_output=True,
                        text=True, env=env, cwd=tmp_path)
  assert done.returncode == 0 and "--seriesuids" in done.stdout


@pytest.mark.parametrize("row, message", [
    (("s1", 0, 0, 0, 0), r"ann.csv:3: diameter_mm must be a finite number > 0 \(mm\), got '0'"),
    (("s1", 0, 0, 0, -4), r"ann.csv:3: diameter_mm must be a finite number > 0 \(mm\), got '-4'"),
    (("s1", 0, 0, 0, "nan"), r"ann.csv:3: diameter_mm must be a finite number > 0"),
    (("s1", "nan", 0, 0, 5), r"ann.csv:3: coordX must be finite, got 'nan'"),
    (("s1", 0, "inf", 0, 5), r"ann.csv:3: coordY must be finite, got 'inf'"),
])
def test_annotations_with_a_diameter_nothing_can_hit_or_a_bad_centre_name_the_row(
    tmp_path, row, message):
  path = _write(tmp_path / "ann.csv", "seriesuid,coordX,coordY,coordZ,diameter_mm",
                [("s1", 5, 5, 5, 6), row])
  with pytest.raises(DataError, match=message):
    froc.read_annotations(path)


def test_excluded_findings_may_have_an_unknown_diameter_but_not_zero(tmp_path):
  header = "seriesuid,coordX,coordY,coordZ,diameter_mm"
  ok = froc.read_annotations(_write(tmp_path / "a.csv", header, [("s1", 0, 0, 0, -1)]),
                             excluded=True)  # as in the challenge's annotations_excluded.csv
  assert ok.value.tolist() == [-1.0]
  with pytest.raises(DataError, match=r"b.csv:2: diameter_mm must be a finite number > 0 \(mm\) "
                                      r"or negative \(unknown: 10 mm\), got '0'"):
    froc.read_annotations(_write(tmp_path / "b.csv", header, [("s1", 0, 0, 0, 0)]), excluded=True)


def test_command_refuses_a_zero_diameter_as_one_line(tmp_path):
  pred = _write(tmp_path / "pred.csv", ",".join(froc.SUBMISSION_COLUMNS), [("s1", 0, 0, 0, 0.9)])
  ann = _write(tmp_path / "ann.csv", "seriesuid,coordX,coordY,coordZ,diameter_mm",
               [("s1", 0, 0, 0, 0)])
  with pytest.raises(DataError, match="ann.csv:2: diameter_mm must be a finite number > 0"):
    froc.main([f"--predictions={pred}", f"--annotations={ann}", f"--out={tmp_path}"])
