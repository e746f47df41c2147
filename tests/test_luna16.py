import logging
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from medjax import config as config_lib
from medjax.data import DataError, load_dataset, luna16, synthetic_ct

sitk = pytest.importorskip("SimpleITK")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  return synthetic_ct.luna16_root(n_scans=4)  # session cache (conftest)


def _options(**kw):
  kw.setdefault("val_fraction", 0.0)
  return luna16.Options(**kw)


def _tiny_root(path, shape=(6, 40, 40)):
  """A minimal raw layout: subset0 and subset1, one random volume each, 3 candidates per scan."""
  rows = []
  for i in range(2):
    uid = f"1.2.{i}"
    os.makedirs(path / f"subset{i}")
    volume = np.random.default_rng(i).integers(-1000, 400, shape).astype(np.int16)
    luna16.write_metaimage(str(path / f"subset{i}" / f"{uid}.mhd"), volume, (0, 0, 0), (1, 1, 1),
                           np.eye(3))
    rows += [f"{uid},20,20,3,1", f"{uid},10,10,2,0", f"{uid},30,25,4,0"]
  (path / "candidates.csv").write_text("seriesuid,coordX,coordY,coordZ,class\n" +
                                       "\n".join(rows) + "\n")
  return str(path)


_TINY = dict(size=8, val_fraction=0.0)


# --- geometry ----------------------------------------------------------------------------------

def _rotation(angles, flips):
  a, b, c = angles
  rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
  ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
  rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
  return rz @ ry @ rx @ np.diag([-1.0 if f else 1.0 for f in flips])


_coord = st.floats(-400, 400, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(origin=st.tuples(_coord, _coord, _coord),
       spacing=st.tuples(*[st.floats(0.3, 5.0)] * 3),
       angles=st.tuples(*[st.integers(-1800, 1800).map(lambda d: np.deg2rad(d / 10))] * 3),
       flips=st.tuples(st.booleans(), st.booleans(), st.booleans()),
       index=st.tuples(*[st.floats(-20, 80, allow_nan=False)] * 3))
def test_world_voxel_round_trip_matches_simpleitk(origin, spacing, angles, flips, index):
  direction = _rotation(angles, flips)
  image = sitk.Image(8, 8, 8, sitk.sitkInt16)
  image.SetOrigin(origin)
  image.SetSpacing(spacing)
  image.SetDirection(tuple(direction.ravel()))
  geom = luna16.Geometry(np.array(origin), np.array(spacing),
                         np.reshape(image.GetDirection(), (3, 3)))
  world = geom.index_to_world(index)
  np.testing.assert_allclose(world, image.TransformContinuousIndexToPhysicalPoint(index),
                             atol=1e-6)
  np.testing.assert_allclose(geom.world_to_index(world), index, atol=1e-6)
  np.testing.assert_allclose(geom.world_to_index(world),
                             image.TransformPhysicalPointToContinuousIndex(world), atol=1e-6)
  if np.all(np.abs(np.mod(index, 1) - 0.5) > 1e-4):  # rounding of exact halves is a coin toss
    assert tuple(geom.world_to_voxel(world)[::-1]) == image.TransformPhysicalPointToIndex(world)


# --- CSVs and files -----------------------------------------------------------------------------

def test_csv_columns_are_validated(tmp_path):
  path = tmp_path / "candidates.csv"
  path.write_text("seriesuid,coordX,coordY,coordZ,label\n1.2.3,1,2,3,0\n")
  with pytest.raises(DataError, match=r"missing column\(s\) class"):
    luna16.read_candidates(str(path))
  with pytest.raises(DataError, match="missing LUNA16 file"):
    luna16.read_annotations(str(tmp_path / "annotations.csv"))


def test_malformed_csv_rows_are_named(tmp_path):
  path = tmp_path / "candidates.csv"
  path.write_text("seriesuid,coordX,coordY,coordZ,class\n"
                  "1.2.3,1.5,-2,3,0\n"
                  "1.2.3,1.5,-2,3,2\n"
                  "1.2.3,abc,-2,3,1\n"
                  "1.2.3,1.5,-2\n"
                  ",1,2,3,1\n")
  with pytest.raises(DataError) as e:
    luna16.read_candidates(str(path))
  msg = str(e.value)
  assert "4 bad row(s)" in msg
  assert "candidates.csv:3: class must be 0 or 1, got '2'" in msg
  assert "candidates.csv:4: could not convert string to float: 'abc'" in msg
  assert "candidates.csv:5: 3 fields, header has 5" in msg
  assert "candidates.csv:6: empty seriesuid" in msg
  ann = tmp_path / "annotations.csv"
  ann.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2.3,1,2,3,-4\n")
  with pytest.raises(DataError, match="annotations.csv:2: diameter_mm must be"):
    luna16.read_annotations(str(ann))


def test_good_csv_keeps_rows_and_extra_columns_are_ignored(tmp_path):
  path = tmp_path / "annotations.csv"
  path.write_text("seriesuid,coordX,coordY,coordZ,diameter_mm,note\n"
                  "a,1,2,3,4.5,x\nb,-1,-2,-3,10,y\n")
  t = luna16.read_annotations(str(path))
  assert t.seriesuid.tolist() == ["a", "b"] and t.row.tolist() == [0, 1]
  np.testing.assert_array_equal(t.world[1], [-1, -2, -3])
  assert t.value.tolist() == [4.5, 10.0]


def test_csv_saved_by_excel_with_a_bom_reads_and_utf16_is_named(tmp_path):
  path = tmp_path / "candidates.csv"
  path.write_bytes("seriesuid,coordX,coordY,coordZ,class\r\n1.2.3,1,2,3,1\r\n"
                   .encode("utf-8-sig"))
  t = luna16.read_candidates(str(path))
  assert t.seriesuid.tolist() == ["1.2.3"] and t.value.tolist() == [1]
  path.write_bytes("seriesuid,coordX,coordY,coordZ,class\n1.2.3,1,2,3,1\n".encode("utf-16"))
  with pytest.raises(DataError, match=r"candidates.csv: not a UTF-8 CSV text file"):
    luna16.read_candidates(str(path))


def _write_volume(path, shape=(4, 6, 5)):
  image = sitk.GetImageFromArray(np.arange(np.prod(shape), dtype=np.int16).reshape(shape))
  sitk.WriteImage(image, str(path))


def test_truncated_or_missing_raw_is_a_clear_error(tmp_path):
  mhd = tmp_path / "scan.mhd"
  _write_volume(mhd)
  volume, geom = luna16.read_volume(str(mhd))
  assert volume.shape == (4, 6, 5) and geom.shape == (4, 6, 5)
  raw = tmp_path / "scan.raw"
  raw.write_bytes(raw.read_bytes()[:100])
  with pytest.raises(DataError, match=r"scan.raw is truncated: 100 bytes, expected 240"):
    luna16.read_volume(str(mhd))
  raw.unlink()
  with pytest.raises(DataError, match="data file scan.raw is missing"):
    luna16.read_volume(str(mhd))


# --- patches ------------------------------------------------------------------------------------

def test_patches_are_centred_and_border_candidates_padded():
  volume = np.arange(5 * 20 * 30, dtype=np.int16).reshape(5, 20, 30)
  patches, inside = luna16.cut_patches(volume, [[2, 10, 15], [0, 0, 29], [9, 10, 10]], size=8,
                                       slices=3, pad_value=-1)
  assert patches.shape == (3, 8, 8, 3) and inside.tolist() == [True, True, False]
  assert patches[0, 4, 4, 1] == volume[2, 10, 15]  # centre at [size // 2], middle channel
  np.testing.assert_array_equal(patches[0, ..., 0], volume[1, 6:14, 11:19])
  np.testing.assert_array_equal(patches[0, ..., 2], volume[3, 6:14, 11:19])
  corner = patches[1]
  assert corner[4, 4, 1] == volume[0, 0, 29]
  assert (corner[..., 0] == -1).all()          # slice -1 does not exist
  assert (corner[:4] == -1).all() and (corner[:, 5:] == -1).all()
  np.testing.assert_array_equal(corner[4:, :5, 1], volume[0, 0:4, 25:30])
  assert (patches[2] == -1).all()


def test_hu_window_maps_to_unit_interval():
  out = luna16.window_hu(np.array([-2000, -1000, -300, 400, 3000]))
  np.testing.assert_allclose(out, [0, 0, 0.5, 1, 1])
  np.testing.assert_allclose(luna16.window_hu(np.array([0.0]), (-100, 100)), [0.5])


def test_patches_centre_on_planted_nodules(root):
  ann = luna16.read_annotations(os.path.join(root, "annotations.csv"))
  scans = luna16.find_scans(root)
  flipped_checked = 0
  for uid, (_, path) in scans.items():
    volume, geom = luna16.read_volume(path)
    image = sitk.ReadImage(path)
    sel = ann.seriesuid == uid
    for world in ann.world[sel]:
      assert tuple(geom.world_to_voxel(world)[::-1]) == \
          image.TransformPhysicalPointToIndex(tuple(world))
    patches, inside = luna16.cut_patches(volume, geom.world_to_voxel(ann.world[sel]), 50)
    assert inside.all()
    hu = patches[..., 0].astype(np.float32)
    centre = hu[:, 24:27, 24:27].mean(axis=(1, 2))
    background = np.percentile(hu.reshape(len(hu), -1), 10, axis=1)
    assert np.all(centre > background + 200), (uid, centre, background)
    flipped_checked += bool((np.diag(geom.direction) < 0).any())
  assert flipped_checked >= 2


# --- the pipeline -------------------------------------------------------------------------------

def test_split_by_scan_follows_the_subset_folds(root, caplog):
  scans = luna16.find_scans(root)
  for fold in (0, 3):
    splits = luna16.prepare(root, _options(fold=fold, val_fraction=0.34), cache=False,
                            workers=1)
    uids = {name: set(s.meta["seriesuid"]) for name, s in splits.items()}
    assert uids["test"] == {u for u, (sub, _) in scans.items() if sub == fold}
    assert not (uids["train"] & uids["test"]) and not (uids["train"] & uids["val"])
    assert not (uids["val"] & uids["test"]) and len(uids["val"]) == 1
  with pytest.raises(DataError, match="fold 7 tests on subset7, which has no scans"):
    luna16.prepare(root, _options(fold=7), cache=False)
  with caplog.at_level(logging.WARNING):
    leaky = luna16.prepare(root, _options(split="random"), cache=False, workers=1)
  assert "LEAKY" in caplog.text
  assert set(leaky["train"].meta["seriesuid"]) & set(leaky["test"].meta["seriesuid"])


def test_negatives_subsampled_per_split_and_seeded(root):
  cand = luna16.read_candidates(os.path.join(root, "candidates.csv"))
  splits = luna16.prepare(root, _options(neg_ratio=2, test_neg_ratio=0), cache=False, workers=1)
  neg, pos = splits["train"].class_counts
  assert neg == 2 * pos
  test = splits["test"]
  test_uids = set(test.meta["seriesuid"])
  assert len(test) == np.isin(cand.seriesuid, list(test_uids)).sum()  # every candidate
  # Meta: world coordinates and rows point back into candidates.csv.
  np.testing.assert_allclose(test.meta["world"], cand.world[test.meta["row"]])
  np.testing.assert_array_equal(test.labels, cand.value[test.meta["row"]])
  again = luna16.prepare(root, _options(neg_ratio=2, test_neg_ratio=0), cache=False, workers=1)
  np.testing.assert_array_equal(again["train"].meta["row"], splits["train"].meta["row"])


def test_augmentation_reaches_the_training_split_only(root):
  plain = luna16.prepare(root, _options(val_fraction=0.34), cache=False, workers=1)
  aug = luna16.prepare(root, _options(val_fraction=0.34, augment_positives=2), cache=False,
                       workers=1)
  train = aug["train"]
  n_pos = plain["train"].class_counts[1]
  assert train.meta["augmented"].sum() == 2 * n_pos
  assert np.all(train.labels[train.meta["augmented"]] == 1)
  for name in ("val", "test"):
    assert not aug[name].meta["augmented"].any()
    np.testing.assert_array_equal(aug[name].images, plain[name].images)
    assert len(set(aug[name].names)) == len(aug[name])
  orig = train.meta["augmented"] == 0
  np.testing.assert_array_equal(train.images[orig], plain["train"].images)
  # Copies are rotated/flipped/shifted, not identical to their source.
  assert not any((train.images[train.meta["augmented"]] == img).all()
                 for img in plain["train"].images[plain["train"].labels == 1][:5])


def test_parallel_extraction_matches_in_process_and_logs_progress(root, caplog):
  with caplog.at_level(logging.INFO):
    one = luna16.prepare(root, _options(), cache=False, workers=1)
    two = luna16.prepare(root, _options(), cache=False, workers=2)
  for name in one:
    np.testing.assert_array_equal(one[name].images, two[name].images)
  assert "4/4 scans" in caplog.text and "candidates/s" in caplog.text and "ETA" in caplog.text


def test_prepared_patches_cache_and_load_without_the_raw_data(root, tmp_path, monkeypatch):
  monkeypatch.setenv("MEDJAX_CACHE_DIR", str(tmp_path / "cache"))
  first = luna16.prepare(root, _options(slices=3), workers=1)
  assert first["train"].images.shape[1:] == (50, 50, 3)
  [cached] = os.listdir(tmp_path / "cache")
  monkeypatch.setattr(luna16.pool, "run_tasks", None)  # a second call must not touch the volumes
  again = luna16.prepare(root, _options(slices=3), workers=1)
  np.testing.assert_array_equal(first["test"].images, again["test"].images)
  assert again["test"].meta["seriesuid"].tolist() == first["test"].meta["seriesuid"].tolist()

  config = config_lib.base_config("luna", "cnn")
  config.data.dir = str(tmp_path / "cache" / cached)
  data = load_dataset("luna", config.data, seed=0)
  assert len(data.test) == len(first["test"]) and data.train.meta is not None


def test_cache_is_rebuilt_when_a_volume_changes(tmp_path, monkeypatch):
  monkeypatch.setenv("MEDJAX_CACHE_DIR", str(tmp_path / "cache"))
  root = _tiny_root(tmp_path / "luna")
  first = luna16.prepare(root, _options(**_TINY), workers=1)
  raw = tmp_path / "luna" / "subset1" / "1.2.1.raw"  # train scan; same size, other voxels
  raw.write_bytes(np.full(6 * 40 * 40, 300, np.int16).tobytes())
  stat = os.stat(raw)
  os.utime(raw, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
  again = luna16.prepare(root, _options(**_TINY), workers=1)
  assert not np.array_equal(again["train"].images, first["train"].images)
  np.testing.assert_array_equal(
      again["train"].images, luna16.prepare(root, _options(**_TINY), cache=False,
                                            workers=1)["train"].images)
  np.testing.assert_array_equal(again["test"].images, first["test"].images)
  assert len(os.listdir(tmp_path / "cache")) == 2


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "medjax.data.luna16", *args], capture_output=True,
                        text=True, cwd=os.path.dirname(os.path.dirname(__file__)),
                        env={**os.environ, "MEDJAX_DEBUG": ""})


def test_cli_failure_keeps_the_old_output_and_prints_one_error_line(tmp_path):
  root = _tiny_root(tmp_path / "luna")
  out = tmp_path / "out" / "patches.npz"
  ok = _cli(root, str(out), "--size=8", "--val_fraction=0", "--workers=1")
  assert ok.returncode == 0, ok.stderr
  assert "train: 3 patches (1 positive, 2 negative)" in ok.stdout
  assert luna16.load_splits(str(out))["test"].images.shape == (3, 8, 8, 1)
  before = out.read_bytes()
  raw = tmp_path / "luna" / "subset1" / "1.2.1.raw"
  raw.write_bytes(raw.read_bytes()[:100])  # fails while cutting, in a worker process
  failed = _cli(root, str(out), "--size=8", "--val_fraction=0", "--workers=2")
  assert failed.returncode == 2
  assert failed.stderr == f"error: {raw} is truncated: 100 bytes, expected 19,200 for DimSize " \
      "40 40 6 of MET_SHORT\n"
  assert out.read_bytes() == before and os.listdir(out.parent) == ["patches.npz"]
  usage = _cli(root)
  assert usage.returncode == 2 and usage.stderr.startswith("error: expected LUNA16_DIR OUT.npz")


def test_load_luna_detects_the_raw_layout(root, tmp_path, monkeypatch):
  monkeypatch.setenv("MEDJAX_CACHE_DIR", str(tmp_path))
  config = config_lib.base_config("luna", "cnn")
  config.data.dir = root
  config.data.fold = 1
  data = load_dataset("luna", config.data, seed=0)
  assert not data.synthetic and "raw CT" in data.source
  uids = [set(s.meta["seriesuid"]) for s in (data.train, data.val, data.test)]
  assert not (uids[0] & uids[2]) and not (uids[1] & uids[2])
  config.data.candidates = "v2"
  with pytest.raises(DataError, match="candidates_V2.csv"):
    load_dataset("luna", config.data, seed=0)


def test_numpy_metaimage_reader_matches_simpleitk(root, tmp_path, monkeypatch):
  image = sitk.GetImageFromArray(np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5) - 30)
  image.SetOrigin((1.5, -2.0, 300.25))
  image.SetSpacing((0.5, 0.75, 2.5))
  image.SetDirection(tuple(_rotation((0.3, -1.1, 2.0), (True, False, False)).ravel()))
  sitk.WriteImage(image, str(tmp_path / "oblique.mhd"))
  paths = [str(tmp_path / "oblique.mhd")] + [p for _, p in luna16.find_scans(root).values()]
  for path in paths:
    want, want_geom = luna16.read_volume(path)
    got, geom = luna16.read_metaimage(path)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype and geom.shape == want_geom.shape
    for field in ("origin", "spacing", "direction"):
      np.testing.assert_allclose(getattr(geom, field), getattr(want_geom, field), atol=1e-12)
  # Without SimpleITK (JAX-only machines) read_volume falls back to numpy.
  monkeypatch.setitem(__import__("sys").modules, "SimpleITK", None)
  np.testing.assert_array_equal(luna16.read_volume(paths[1])[0], luna16.read_metaimage(paths[1])[0])


def test_candidates_outside_their_volume_stop_with_a_clear_error(root):
  import dataclasses
  table = luna16.read_candidates(os.path.join(root, "candidates.csv"))
  scans = luna16.find_scans(root)
  rows = np.flatnonzero(table.seriesuid == table.seriesuid[0])[:3]
  world = table.world.copy()
  world[rows[1]] += 10_000.0  # 10 m away: a coordinate or CSV error
  moved = dataclasses.replace(table, world=world)
  with pytest.raises(DataError, match=rf"1 candidate\(s\) lie outside their volume: row {rows[1]}"):
    luna16.extract(moved, rows, scans, _options(), workers=1)
  assert luna16.extract(table, rows, scans, _options(), workers=1).shape == (3, 50, 50, 1)


def test_header_that_does_not_match_the_data_is_a_clear_error(tmp_path):
  mhd = tmp_path / "scan.mhd"
  _write_volume(mhd)  # 4 x 6 x 5 int16 = 240 bytes
  text = mhd.read_text()
  mhd.write_text(text.replace("MET_SHORT", "MET_CHAR"))
  with pytest.raises(DataError, match=r"has 240 bytes but the header describes 120 .*MET_CHAR"):
    luna16.read_volume(str(mhd))
  mhd.write_text(text.replace("DimSize = 5 6 4", "DimSize = 5 6 8"))
  with pytest.raises(DataError, match="is truncated: 240 bytes, expected 480"):
    luna16.read_volume(str(mhd))
