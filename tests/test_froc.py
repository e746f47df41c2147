import numpy as np
import pytest

from medjax.eval import froc


def _f(rows):
  uids, xyz, vals = zip(*[(u, (x, y, z), v) for u, x, y, z, v in rows]) if rows else ((), (), ())
  return froc.Findings(np.asarray(uids, dtype=object), np.asarray(xyz, float).reshape(-1, 3),
                       np.asarray(vals, float))


NODULES = _f([("s1", 0, 0, 0, 10), ("s1", 50, 50, 50, 6), ("s2", 10, 10, 10, 8),
              ("s2", -30, 0, 0, 20)])


def test_perfect_detector_has_cpm_one():
  preds = _f([(u, *xyz, 1.0) for u, xyz in zip(NODULES.seriesuid, NODULES.xyz)])
  result = froc.evaluate(preds, NODULES, ["s1", "s2"], n_bootstrap=50)
  assert result["cpm"] == 1.0 and result["n_false_positives"] == 0
  assert result["cpm_ci95"] == [1.0, 1.0]


def test_known_partial_case():
  preds = _f([
      ("s1", 1, 1, 1, 0.9),      # hits nodule 1 (radius 5): TP
      ("s1", 2, 0, 0, 0.3),      # second hit on nodule 1: ignored, not an FP
      ("s1", 100, 0, 0, 0.85),   # FP
      ("s2", 10, 14, 10, 0.8),   # 4 mm from nodule 3 (radius 4): not a hit -> FP
      ("s2", -30, 9, 0, 0.7),    # 9 mm from nodule 4 (radius 10): TP
      ("s2", 200, 0, 0, 0.1),    # FP
  ])
  result = froc.evaluate(preds, NODULES, ["s1", "s2"], n_bootstrap=0)
  assert result["n_detected"] == 2 and result["n_false_positives"] == 3
  # Thresholds: 0.9 TP (0 FP, 1/4) | 0.85 FP (0.5 FP/scan) | 0.8 FP (1.0) | 0.7 TP (1.0, 2/4)
  # | 0.1 FP (1.5). Sensitivity with <= 1/8, 1/4: 0.25; <= 1/2: 0.25; <= 1, 2, 4, 8: 0.5.
  np.testing.assert_allclose(result["sensitivity"], [0.25, 0.25, 0.25, 0.5, 0.5, 0.5, 0.5])
  assert result["cpm"] == pytest.approx((0.25 * 3 + 0.5 * 4) / 7)


def test_excluded_findings_count_neither_way():
  preds = _f([("s1", 0, 0, 0, 0.9), ("s1", 300, 0, 0, 0.95)])
  nodules = _f([("s1", 0, 0, 0, 10)])
  without = froc.evaluate(preds, nodules, ["s1"], n_bootstrap=0)
  assert without["n_false_positives"] == 1 and without["sensitivity"][0] == 0.0
  excluded = _f([("s1", 302, 0, 0, -1)])  # no diameter: 10 mm, as the official script
  with_excl = froc.evaluate(preds, nodules, ["s1"], excluded, n_bootstrap=0)
  assert with_excl["n_false_positives"] == 0 and with_excl["cpm"] == 1.0
  assert with_excl["n_nodules"] == 1  # the excluded finding is not a nodule to find


def test_scans_without_candidates_count_for_the_fp_rate_and_missed_nodules():
  preds = _f([("s1", 0, 0, 0, 0.9), ("s1", 100, 0, 0, 0.8)])
  nodules = _f([("s1", 0, 0, 0, 10), ("s3", 0, 0, 0, 10)])
  result = froc.evaluate(preds, nodules, ["s1", "s2", "s3", "s4"], n_bootstrap=0)
  # One FP over 4 scans = 0.25 FP/scan; one of two nodules found.
  assert result["curve"]["fps_per_scan"][-1] == 0.25
  assert result["sensitivity"][1] == 0.5


def test_submission_round_trip(tmp_path):
  path = tmp_path / "sub.csv"
  froc.write_submission(str(path), ["a", "b"], np.array([[1, 2, 3], [4, 5, 6.5]]), [0.1, 0.9])
  back = froc.read_csv(str(path), "probability")
  assert list(back.seriesuid) == ["a", "b"]
  np.testing.assert_allclose(back.xyz, [[1, 2, 3], [4, 5, 6.5]])
  np.testing.assert_allclose(back.value, [0.1, 0.9])


def test_command_writes_json_and_plot(tmp_path, capsys):
  pred = tmp_path / "pred.csv"
  ann = tmp_path / "ann.csv"
  froc.write_submission(str(pred), ["s1", "s1"], np.array([[0, 0, 0], [9, 9, 9]]), [0.9, 0.2])
  ann.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\ns1,0,0,0,5\n")
  result = froc.main([f"--predictions={pred}", f"--annotations={ann}", "--bootstrap=20",
                      f"--out={tmp_path}"])
  assert result["cpm"] == 1.0
  assert (tmp_path / "froc.png").stat().st_size > 0 and (tmp_path / "froc.json").exists()
  assert "CPM 1.0000" in capsys.readouterr().out


def test_bad_csv_is_a_clear_error(tmp_path):
  p = tmp_path / "bad.csv"
  p.write_text("seriesuid,coordX,coordY\ns1,0,0\n")
  with pytest.raises(ValueError, match="missing column"):
    froc.read_csv(str(p), "probability")
  p.write_text("seriesuid,coordX,coordY,coordZ,probability\ns1,0,zero,0,0.5\n")
  with pytest.raises(ValueError, match="bad.csv:2: non-numeric"):
    froc.read_csv(str(p), "probability")
