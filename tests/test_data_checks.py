"""Wrong data must not train silently: duplicates and leakage, bit depth, label-file encodings,
fixed hip splits (medjax.data.checks and the two folder loaders that use it)."""

import codecs
import csv
import logging
import os
import types

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from medjax.data import checks, hip_xray, luna16_patches
from medjax.errors import ConfigError, DataError

from conftest import LUNA_PATCHES, requires_luna_patches

SIZE = 8


def _png(path, pixels, sbit=None):
  """Writes a PNG (whatever the suffix); uint16 pixels give a 16-bit grey PNG."""
  info = None
  if sbit is not None:
    info = PngImagePlugin.PngInfo()
    info.add(b"sBIT", bytes([sbit]))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(pixels).save(path, format="PNG", pnginfo=info)


def _distinct(i, dtype=np.uint8):
  return (np.arange(SIZE * SIZE).reshape(SIZE, SIZE) + 3 * i).astype(dtype)


def _patches(root, splits, lines=None, encoding="utf-8"):
  """splits: {split: [(file name, label)]}; each file distinct. lines: label-file text per split
  (default: the listed files)."""
  n = 0
  for split, files in splits.items():
    for name, _ in files:
      _png(str(root / split / name), _distinct(n))
      n += 1
    text = (lines or {}).get(split) or "".join(f"{split}/{name} {label}\n" for name, label in files)
    (root / f"{split}datalabels.txt").write_bytes(text.encode(encoding))
  return str(root)


def _load(root, **kw):
  return luna16_patches.load_patch_folder(root, image_size=SIZE, **kw)


TWO_SPLITS = {"train": [("image_1.jpg", 0), ("image_2.jpg", 1), ("image_3.jpg", 0)],
              "val": [("image_5.jpg", 0), ("image_6.jpg", 1)]}


# 1. Duplicates and leakage: LUNA16 patch folder.

def test_val_image_listed_in_train_is_leakage(tmp_path):
  root = _patches(tmp_path, TWO_SPLITS, lines={
      "train": "train/image_1.jpg 0\ntrain/image_2.jpg 1\nval/image_5.jpg 0\n"})
  with pytest.raises(DataError, match=r"1 file of val also listed in train: val/image_5\.jpg.*"
                     r"allow_duplicates=True"):
    _load(root)


def test_line_twice_in_a_split_and_normalised_paths(tmp_path):
  root = _patches(tmp_path, TWO_SPLITS, lines={
      "train": "train/image_1.jpg 0\ntrain/image_2.jpg 1\n./train//image_1.jpg 0\n"})
  with pytest.raises(DataError, match=r"1 file listed more than once in train: "
                     r"train/image_1\.jpg \(2 times\)"):
    _load(root)
  with pytest.raises(DataError, match="listed more than once in train"):  # one split alone too
    luna16_patches.load_split(root, "train", image_size=SIZE)


def test_one_image_with_two_labels_is_an_error_even_when_duplicates_are_allowed(tmp_path):
  root = _patches(tmp_path, TWO_SPLITS, lines={
      "train": "train/image_1.jpg 0\ntrain/image_2.jpg 1\ntrain/image_1.jpg 1\n"})
  for allow in (False, True):
    with pytest.raises(DataError, match=r"train/image_1\.jpg is listed with labels 0 "
                       r"\(traindatalabels\.txt:1\) and 1 \(traindatalabels\.txt:3\)"):
      _load(root, allow_duplicates=allow)


def test_same_bytes_under_another_name_within_and_across_splits(tmp_path, caplog):
  root = _patches(tmp_path, TWO_SPLITS)
  train, val = tmp_path / "train", tmp_path / "val"
  (train / "image_3.jpg").write_bytes((train / "image_1.jpg").read_bytes())
  (val / "image_5.jpg").write_bytes((train / "image_2.jpg").read_bytes())
  expected = (r"1 image of train repeated under another name \(same bytes\): "
              r"train/image_3\.jpg = train/image_1\.jpg; 1 image of val also in train under "
              r"another name \(same bytes\): val/image_5\.jpg = train/image_2\.jpg "
              r"\(labels 0 and 1\)")
  with pytest.raises(DataError, match=expected):
    _load(root)
  with caplog.at_level(logging.WARNING):
    splits = _load(root, allow_duplicates=True)
  assert len(splits["train"]) == 3 and len(splits["val"]) == 2  # kept, as listed
  assert "image_3.jpg = train/image_1.jpg" in caplog.text and "allow_duplicates=True" in caplog.text


def test_find_duplicates_counts_each_kind():
  def x(split, name, label=0, digest=None, patient=None):
    return checks.Listed(split, name, name.lstrip("./"), label, digest or name, patient=patient)
  found = checks.find_duplicates([
      x("train", "a"), x("train", "b"), x("train", "./a"), x("train", "c", digest="b"),
      x("train", "g"), x("val", "a"), x("val", "d", digest="b"), x("val", "f", patient="p"),
      x("test", "e", patient="p"), x("test", "g", label=1)])
  assert [(f.kind, f.count) for f in found] == [
      ("conflict", 1), ("repeated", 1), ("same_file", 1), ("same_content", 1),
      ("same_content", 1), ("patient", 1)]
  assert [f.message for f in found][1:] == [
      "1 file listed more than once in train: a (2 times)", "1 file of val also listed in train: a",
      "1 image of train repeated under another name (same bytes): c = b",
      "1 image of val also in train under another name (same bytes): d = b",
      "1 patient of test also in val: p (e, f)"]
  assert not checks.find_duplicates([x("train", "a"), x("val", "b"), x("test", "c")])


@requires_luna_patches
def test_paper_patch_set_has_no_exact_duplicates():
  splits = luna16_patches.load_patch_folder(LUNA_PATCHES, include_rotated=True)
  assert splits["train"].images.dtype == np.uint8 and len(splits["train"]) == 4341 + 3 * 845


# 1. Duplicates and leakage: hip folder.

def _hip(root, n=12, *, extra=(), columns=(), values=None):
  """n distinct small PNGs, alternating labels, in labels.csv with optional extra columns."""
  rows = []
  for i in range(n):
    pixels = np.random.default_rng(i).integers(0, 256, (20, 24), np.uint8)
    _png(str(root / "img" / f"{i}.png"), pixels)
    rows.append([f"img/{i}.png", i % 2] + ([values(i)] if values else []))
  with open(root / "labels.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["path", "label", *columns])
    writer.writerows(rows + list(extra))
  return str(root)


def _hip_config(root, **kw):
  values = dict(dir=root, val_fraction=0.2, test_fraction=0.25, cache=False)
  values.update(kw)
  return types.SimpleNamespace(**values)


def test_hip_same_file_under_another_spelling_and_same_bytes_are_errors(tmp_path):
  root = _hip(tmp_path / "a", extra=[["./img//0.png", 0]])
  with pytest.raises(DataError, match=r"1 file listed more than once in labels\.csv: img/0\.png"):
    hip_xray.load_hip(_hip_config(root), 0, crop=False, size=16)
  root = _hip(tmp_path / "b", extra=[["img/copy.png", 1]])
  (tmp_path / "b" / "img" / "copy.png").write_bytes((tmp_path / "b" / "img" / "3.png").read_bytes())
  with pytest.raises(DataError, match=r"1 image of labels\.csv repeated under another name "
                     r"\(same bytes\): img/copy\.png = img/3\.png"):
    hip_xray.load_hip(_hip_config(root), 0, crop=False, size=16)


def test_hip_class_folders_same_bytes_in_both_classes(tmp_path):
  for cls, n in (("negative", 3), ("positive", 3)):
    for i in range(n):
      _png(str(tmp_path / cls / f"{i}.png"), _distinct(i + 10 * (cls == "positive")))
  (tmp_path / "positive" / "2.png").write_bytes((tmp_path / "negative" / "0.png").read_bytes())
  with pytest.raises(DataError, match=r"class folders repeated under another name.*"
                     r"positive/2\.png = negative/0\.png \(labels 1 and 0\)"):
    hip_xray.load_hip(_hip_config(str(tmp_path)), 0, crop=False, size=16)


def test_hip_allowed_copies_stay_in_one_split(tmp_path, caplog):
  copies = [[f"img/copy{i}.png", i % 2] for i in range(6)]
  root = _hip(tmp_path, 18, extra=copies)
  for i in range(6):
    (tmp_path / "img" / f"copy{i}.png").write_bytes((tmp_path / "img" / f"{i}.png").read_bytes())
  for seed in range(4):
    with caplog.at_level(logging.WARNING):
      ds = hip_xray.load_hip(_hip_config(root, allow_duplicates=True), seed, crop=False, size=16)
    assert "6 images of labels.csv repeated under another name" in caplog.text
    split_of = {n: s for s in ("train", "val", "test") for n in getattr(ds, s).names}
    assert all(split_of[f"img/{i}.png"] == split_of[f"img/copy{i}.png"] for i in range(6))


# 2. Bit depth.

def test_16_bit_patches_keep_their_range(tmp_path, caplog):
  twelve = (np.arange(SIZE * SIZE).reshape(SIZE, SIZE) * 60).astype(np.uint16)  # up to 3780
  _png(str(tmp_path / "train" / "image_1.jpg"), twelve)
  _png(str(tmp_path / "train" / "image_2.jpg"), twelve[::-1].copy(), sbit=12)
  _png(str(tmp_path / "train" / "image_3.jpg"), _distinct(7))  # 8 bit
  (tmp_path / "traindatalabels.txt").write_text(
      "train/image_1.jpg 0\ntrain/image_2.jpg 1\ntrain/image_3.jpg 0\n")
  _png(str(tmp_path / "val" / "image_4.jpg"), _distinct(8))
  _png(str(tmp_path / "val" / "image_5.jpg"), _distinct(9))
  (tmp_path / "valdatalabels.txt").write_text("val/image_4.jpg 0\nval/image_5.jpg 1\n")
  with caplog.at_level(logging.WARNING):
    splits = _load(str(tmp_path))
  images = splits["train"].images[..., 0]
  assert images.dtype == np.float32 and splits["val"].images.dtype == np.float32
  np.testing.assert_allclose(images[0], twelve / 65535, atol=1e-7)  # no depth declared: 16 bit
  np.testing.assert_allclose(images[1], twelve[::-1] / 4095, atol=1e-7)  # sBIT 12
  np.testing.assert_allclose(images[2], _distinct(7) / 255, atol=1e-7)
  np.testing.assert_allclose(splits["val"].images[0, ..., 0], _distinct(8) / 255, atol=1e-7)
  assert "train: 1 of 2 images deeper than 8 bits use under 1/16 of their range" in caplog.text
  assert "image_1.jpg: brightest pixel 3780 of 65535" in caplog.text
  assert "--config.data.bit_depth=12" in caplog.text
  caplog.clear()
  with caplog.at_level(logging.WARNING):
    configured = _load(str(tmp_path), bit_depth=12)["train"].images[..., 0]
  np.testing.assert_allclose(configured[0], twelve / 4095, atol=1e-7)
  assert "bit_depth" not in caplog.text
  with pytest.raises(DataError, match=r"image_1\.jpg: pixel values up to 3780 do not fit "
                     r"data\.bit_depth=10"):
    _load(str(tmp_path), bit_depth=10)
  with pytest.raises(ConfigError, match="between 1 and 16"):
    _load(str(tmp_path), bit_depth=17)


def test_8_bit_patch_folders_stay_uint8(tmp_path):
  splits = _load(_patches(tmp_path, TWO_SPLITS))
  assert {s.images.dtype for s in splits.values()} == {np.dtype(np.uint8)}


def test_hip_12_bit_png_in_16_bits_uses_its_declared_or_configured_depth(tmp_path, caplog):
  twelve = (np.arange(20 * 24).reshape(20, 24) * 8).astype(np.uint16)  # up to 3832
  _png(str(tmp_path / "plain.png"), twelve)
  _png(str(tmp_path / "sbit.png"), twelve, sbit=12)
  _png(str(tmp_path / "shifted.png"), twelve * 16, sbit=12)  # the PNG spec's layout: high bits
  np.testing.assert_allclose(hip_xray.read_image(str(tmp_path / "plain.png")), twelve / 65535,
                             atol=1e-7)
  np.testing.assert_allclose(hip_xray.read_image(str(tmp_path / "sbit.png")), twelve / 4095,
                             atol=1e-7)
  np.testing.assert_allclose(hip_xray.read_image(str(tmp_path / "shifted.png")),
                             twelve * 16 / 65535, atol=1e-7)
  np.testing.assert_allclose(hip_xray.read_image(str(tmp_path / "plain.png"), bit_depth=12),
                             twelve / 4095, atol=1e-7)
  assert len(np.unique(hip_xray.preprocess(hip_xray.read_image(
      str(tmp_path / "sbit.png")), crop=False, size=16))) > 100  # not 16 grey levels
  root = _hip(tmp_path / "folder", 8)
  for i in range(8):
    _png(str(tmp_path / "folder" / "img" / f"{i}.png"), (twelve + i).astype(np.uint16))
  with caplog.at_level(logging.WARNING):
    ds = hip_xray.load_hip(_hip_config(root), 0, crop=False, size=16)
  assert "train: 4 of 4 images deeper than 8 bits use under 1/16" in caplog.text
  assert "--config.data.bit_depth=12" in caplog.text
  configured = hip_xray.load_hip(_hip_config(root, bit_depth=12), 0, crop=False, size=16)
  assert configured.train.images.max() > 200 > ds.train.images.max()


def test_hip_dicom_depth_override_and_warning(tmp_path, caplog):
  pytest.importorskip("pydicom")
  from test_hip_xray import _write_dicom
  pixels = np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 30  # up to 3570
  _write_dicom(str(tmp_path / "a.dcm"), pixels, 16)
  np.testing.assert_allclose(hip_xray.read_image(str(tmp_path / "a.dcm")), pixels / 65535,
                             atol=1e-6)
  np.testing.assert_allclose(hip_xray.read_image(str(tmp_path / "a.dcm"), bit_depth=12),
                             pixels / 4095, atol=1e-6)
  with pytest.raises(DataError, match=r"a\.dcm: pixel values 0\.\.3570 do not fit "
                     r"data\.bit_depth=8"):
    hip_xray.read_image(str(tmp_path / "a.dcm"), bit_depth=8)


# 3. Label-file encodings.

@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_label_file_with_bom_loads(tmp_path, encoding):
  splits = _load(_patches(tmp_path, TWO_SPLITS, encoding=encoding))
  assert list(splits["train"].names) == ["train/image_1.jpg", "train/image_2.jpg",
                                         "train/image_3.jpg"]


@pytest.mark.parametrize("data, match", [
    ("train/image_1.jpg 0\ntrain/imagé_2.jpg 1\n".encode("latin-1"),
     r"traindatalabels\.txt:2: not UTF-8 text \(byte 0xe9"),
    ("train/image_1.jpg 0\n".encode("utf-16-le"), "NUL characters"),
    (codecs.BOM_UTF32_LE + "x 0\n".encode("utf-32-le"), "UTF-32"),
])
def test_label_file_in_another_encoding_names_file_and_encoding(tmp_path, data, match):
  _patches(tmp_path, TWO_SPLITS)
  (tmp_path / "traindatalabels.txt").write_bytes(data)
  with pytest.raises(DataError, match=match):
    _load(str(tmp_path))


def test_hip_labels_csv_in_utf16_loads_and_latin1_is_named(tmp_path):
  root = _hip(tmp_path)
  text = (tmp_path / "labels.csv").read_text()
  (tmp_path / "labels.csv").write_bytes(text.encode("utf-16"))
  assert len(hip_xray.list_entries(root)) == 12
  (tmp_path / "labels.csv").write_bytes((text + "img/é.png,1\n").encode("latin-1"))
  with pytest.raises(DataError, match=r"labels\.csv:14: not UTF-8 text"):
    hip_xray.list_entries(root)


# 4. Fixed hip splits.

def test_hip_split_column_is_used_as_given(tmp_path):
  split_of = lambda i: ("train", "train", "val", "test")[i // 2 % 4]  # noqa: E731
  root = _hip(tmp_path, 16, columns=["split"], values=lambda i: split_of(i).upper())
  for seed in (0, 1):
    ds = hip_xray.load_hip(_hip_config(root), seed, crop=False, size=16)
    for name in ("train", "val", "test"):
      assert sorted(getattr(ds, name).names) == sorted(
          f"img/{i}.png" for i in range(16) if split_of(i) == name)
  assert "split column" in ds.source


def test_hip_split_column_without_val_holds_out_from_train(tmp_path):
  root = _hip(tmp_path, 16, columns=["split"], values=lambda i: "test" if i < 4 else "train")
  ds = hip_xray.load_hip(_hip_config(root), 0, crop=False, size=16)
  assert sorted(ds.test.names) == [f"img/{i}.png" for i in range(4)]
  assert len(ds.val) and len(ds.train) + len(ds.val) == 12
  assert not set(ds.val.names) & set(ds.train.names)


@pytest.mark.parametrize("value, match", [
    ("training", r"labels\.csv:3: split must be train, val or test, got 'training'"),
    ("", r"labels\.csv:3: split must be train, val or test, got ''"),
])
def test_hip_bad_split_value_names_the_line(tmp_path, value, match):
  root = _hip(tmp_path, 4, columns=["split"], values=lambda i: value if i == 1 else "train")
  with pytest.raises(DataError, match=match):
    hip_xray.list_entries(root)


def test_hip_split_column_without_test_is_an_error(tmp_path):
  root = _hip(tmp_path, 4, columns=["split"], values=lambda i: "train")
  with pytest.raises(DataError, match="split column names no test images"):
    hip_xray.load_hip(_hip_config(root), 0, crop=False, size=16)


def test_hip_fixed_splits_are_checked_for_leakage(tmp_path, caplog):
  split_of = lambda i: ("train", "train", "test")[i % 3]  # noqa: E731
  root = _hip(tmp_path, 12, columns=["split", "patient"],
              extra=[["img/0.png", 0, "test", "p0"], ["img/copy.png", 1, "test", "p20"],
                     ["img/4.png", 0, "val", "p4"], ["img/extra.png", 1, "val", "p3"]],
              values=lambda i: f"{split_of(i)},p{i}")
  with open(root + "/labels.csv") as f:  # _hip writes the two cells as one: split them
    text = f.read().replace('"', "")
  (tmp_path / "labels.csv").write_text(text)
  (tmp_path / "img" / "copy.png").write_bytes((tmp_path / "img" / "1.png").read_bytes())
  _png(str(tmp_path / "img" / "extra.png"), _distinct(0))
  expected = (r"1 file of val also listed in train: img/4\.png; 1 file of test also listed in "
              r"train: img/0\.png; 1 image of test also in train under another name \(same "
              r"bytes\): img/copy\.png = img/1\.png; 1 patient of val also in train: p3 "
              r"\(img/extra\.png, img/3\.png\)")
  with pytest.raises(DataError, match=expected):
    hip_xray.load_hip(_hip_config(root), 0, crop=False, size=16)
  with caplog.at_level(logging.WARNING):
    ds = hip_xray.load_hip(_hip_config(root, allow_duplicates=True), 0, crop=False, size=16)
  assert "img/0.png" in ds.test.names and "img/0.png" in ds.train.names  # as given
  assert "1 patient of val also in train" in caplog.text


# 4. Fixed splits in a patch folder's label files.

def test_patch_split_column_is_honoured_as_given(tmp_path):
  root = _patches(tmp_path, TWO_SPLITS, lines={
      "train": "train/image_1.jpg 0\ntrain/image_2.jpg 1 test\ntrain/image_3.jpg 0 TEST\n",
      "val": "val/image_5.jpg 0\nval/image_6.jpg 1 train\n"})
  splits = _load(root)
  assert sorted(splits) == ["test", "train", "val"]
  assert list(splits["train"].names) == ["train/image_1.jpg", "val/image_6.jpg"]
  assert list(splits["test"].names) == ["train/image_2.jpg", "train/image_3.jpg"]
  assert list(splits["val"].names) == ["val/image_5.jpg"]


def test_patch_split_column_leakage_is_still_caught(tmp_path):
  root = _patches(tmp_path, TWO_SPLITS, lines={
      "train": "train/image_1.jpg 0\ntrain/image_2.jpg 1\n",
      "val": "val/image_5.jpg 0\ntrain/image_2.jpg 1 test\n"})
  with pytest.raises(DataError, match=r"also listed in train: train/image_2\.jpg"):
    _load(root)


def test_patch_bad_split_value_names_the_line(tmp_path):
  root = _patches(tmp_path, TWO_SPLITS, lines={
      "train": "train/image_1.jpg 0\ntrain/image_2.jpg 1 holdout\n"})
  with pytest.raises(DataError, match=r"traindatalabels\.txt:2: the split column must be"):
    _load(root)
