"""The hip_xray TFDS builder gives load_hip's splits and byte-identical images, offline."""

import csv
import os
import types

import numpy as np
import pytest
from PIL import Image

from medjax.data import hip_xray, synthetic_hip

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")

from medjax.data import pipeline  # noqa: E402
import medjax.data.tfds  # noqa: E402,F401  (registers the builders)

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
  """12 embedded synthetic radiographs (balanced, with crop boxes): ~1 s."""
  return synthetic_hip.hip_root(n=12, directory=str(tmp_path_factory.mktemp("hip")))


def _build(config, manual_dir, data_dir):
  builder = tfds.builder(f"hip_xray/{config}", data_dir=str(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def _examples(builder, split):
  """{path: example} of one split."""
  return {e["path"].decode(): e for e in tfds.as_numpy(builder.as_dataset(split=split))}


def _load_hip(root, crop, size):
  config = types.SimpleNamespace(dir=str(root), cache=False)
  return hip_xray.load_hip(config, 0, crop=crop, size=size)


@pytest.mark.parametrize("crop", [True, False], ids=["crop", "full"])
def test_builder_matches_load_hip(tmp_path, offline, synthetic_root, crop):
  builder = _build(f"128_{'crop' if crop else 'full'}", synthetic_root, tmp_path / "tfds")
  expected = _load_hip(synthetic_root, crop, 128)
  assert sorted(builder.info.splits) == sorted(SPLITS)
  assert builder.info.features["label"].names == ["normal", "fracture"]
  for name in SPLITS:
    want = getattr(expected, name)
    assert builder.info.splits[name].num_examples == len(want)
    got = _examples(builder, name)
    assert sorted(got) == sorted(want.names.tolist())
    for image, label, path in zip(want.images, want.labels, want.names):
      e = got[str(path)]
      assert e["image"].shape == (128, 128, 1) and e["image"].dtype == np.uint8
      np.testing.assert_array_equal(e["image"], image)  # byte-identical
      assert e["label"] == label and e["patient"] == b""
  batch = next(pipeline.tf_batches(builder.as_dataset(split="train"), 4, train=True,
                                   max_shift=2))
  assert batch["image"].shape == (4, 128, 128, 1) and batch["image"].dtype == np.uint8
  assert batch["label"].shape == (4,) and batch["label"].dtype == np.int32


def _patient_folder(root, n_patients=8, per_patient=2):
  """Small PNGs of two sizes with a labels.csv holding boxes and a patient column."""
  rng = np.random.default_rng(0)
  os.makedirs(root / "img")
  rows = []
  for p in range(n_patients):
    for k in range(per_patient):
      h, w = (40, 56) if k % 2 else (52, 36)
      Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8)).save(
          root / "img" / f"{p}_{k}.png")
      rows.append([f"img/{p}_{k}.png", p % 2, 4, 5, 30, 33, f"P{p}"])
  with open(root / "labels.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["path", "label", "x0", "y0", "x1", "y1", "patient"])
    writer.writerows(rows)
  return root


def test_split_is_by_patient_as_in_load_hip(tmp_path, offline):
  root = _patient_folder(tmp_path / "hips")
  builder = _build("128_crop", root, tmp_path / "tfds")
  expected = _load_hip(root, True, 128)
  seen = {}
  for name in SPLITS:
    want = getattr(expected, name)
    got = _examples(builder, name)
    assert sorted(got) == sorted(want.names.tolist())
    for image, path, patient in zip(want.images, want.names, want.meta["patient"]):
      np.testing.assert_array_equal(got[str(path)]["image"], image)
      assert got[str(path)]["patient"].decode() == patient
    for e in got.values():
      assert seen.setdefault(e["patient"], name) == name  # each patient in one split only
  assert len(seen) == 8


def test_custom_config_changes_the_seed(tmp_path, offline):
  root = _patient_folder(tmp_path / "hips")
  config = medjax.data.tfds.hip_xray.HipXrayConfig(name="32_full_seed3", crop=False, size=32,
                                                   seed=3)
  builder = tfds.builder("hip_xray", config=config, data_dir=str(tmp_path / "tfds"))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
  expected = hip_xray.load_hip(types.SimpleNamespace(dir=str(root), cache=False), 3, crop=False,
                               size=32)
  for name in SPLITS:
    assert sorted(_examples(builder, name)) == sorted(getattr(expected, name).names.tolist())


def test_not_a_hip_folder_is_a_clear_error(tmp_path, offline):
  (tmp_path / "other").mkdir()
  (tmp_path / "other" / "notes.txt").write_text("no labels.csv, no class folders\n")
  with pytest.raises(tfds.core.DatasetNotFoundError, match="positive/ and negative/"):
    _build("128_full", tmp_path / "other", tmp_path / "tfds")
  with pytest.raises(tfds.core.DatasetNotFoundError, match="does not exist or is empty"):
    _build("128_full", tmp_path / "missing", tmp_path / "tfds")


def test_bad_folder_content_is_a_data_error(tmp_path, offline):
  root = tmp_path / "hips"
  os.makedirs(root / "positive")
  os.makedirs(root / "negative")
  Image.fromarray(np.zeros((20, 30), np.uint8)).save(root / "positive" / "a.png")
  with pytest.raises(hip_xray.DataError, match="no images in negative/"):
    _build("128_full", root, tmp_path / "tfds")
  Image.fromarray(np.zeros((20, 30), np.uint8)).save(root / "negative" / "b.png")
  with pytest.raises(hip_xray.DataError, match="needs a crop box"):
    _build("128_crop", root, tmp_path / "tfds")
