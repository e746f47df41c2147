"""Fuzzing: readers fed random bytes or random-but-plausible input either work or raise the
project's own errors (DataError / ValueError), never crash or hang."""

import os

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from medjax.data import DataError, luna16_patches
from medjax.eval import froc

FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

plausible_label_lines = st.lists(
    st.one_of(
        st.builds(lambda n, l: f"train/image_{n}.jpg {l}", st.integers(0, 9), st.sampled_from(
            ["0", "1", "2", "-1", "x", "", "0 1"])),
        st.text(max_size=30),
    ), max_size=6)


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), plausible_label_lines.map(
    lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass"))))
def test_label_file_reader_never_crashes(tmp_path, data):
  path = tmp_path / "traindatalabels.txt"
  path.write_bytes(data)
  try:
    entries = luna16_patches.read_label_file(str(path))
  except (DataError, UnicodeDecodeError):
    return
  assert all(label in (0, 1) for _, label in entries)


@FUZZ
@given(content=st.one_of(
    st.binary(max_size=400),
    st.tuples(st.integers(1, 70), st.integers(1, 70), st.sampled_from(["L", "RGB", "I;16", "F"]),
              st.sampled_from(["PNG", "JPEG", "TIFF", "BMP"]))))
def test_patch_loader_on_random_files_and_images(tmp_path, content):
  root = tmp_path / f"case{abs(hash(str(content))) % 10**8}"
  os.makedirs(root / "train", exist_ok=True)
  path = root / "train" / "image_1.jpg"
  if isinstance(content, bytes):
    path.write_bytes(content)
  else:
    h, w, mode, fmt = content
    writable = {"PNG": ("L", "RGB", "I;16"), "JPEG": ("L", "RGB"), "BMP": ("L", "RGB"),
                "TIFF": ("L", "RGB", "I;16", "F")}
    mode = mode if mode in writable[fmt] else "L"
    arr = np.random.default_rng(h * w).integers(0, 255, (h, w, 3) if mode == "RGB" else (h, w))
    Image.fromarray(arr.astype(np.uint8)).convert(mode).save(path, format=fmt)
  (root / "traindatalabels.txt").write_text("train/image_1.jpg 1\n")
  try:
    split = luna16_patches.load_split(str(root), "train")
  except DataError:
    return
  assert split.images.shape == (1, 50, 50, 1) and split.images.dtype in (np.uint8, np.float32)


@FUZZ
@given(data=st.one_of(
    st.binary(max_size=300),
    st.lists(st.lists(st.sampled_from(["s1", "1.5", "-3", "nan", "", "x", "1e400"]),
                      min_size=0, max_size=6), max_size=5).map(
        lambda rows: ("seriesuid,coordX,coordY,coordZ,probability\n" +
                      "\n".join(",".join(r) for r in rows)).encode())))
def test_submission_reader_never_crashes(tmp_path, data):
  path = tmp_path / "pred.csv"
  path.write_bytes(data)
  try:
    f = froc.read_csv(str(path), "probability")
  except (ValueError, UnicodeDecodeError):
    return
  assert f.xyz.shape == (len(f.seriesuid), 3)


header_lines = st.lists(st.one_of(
    st.sampled_from(["ObjectType = Image", "NDims = 3", "NDims = 2", "NDims = x",
                     "BinaryData = True", "BinaryDataByteOrderMSB = False",
                     "BinaryDataByteOrderMSB = True", "CompressedData = True",
                     "ElementType = MET_SHORT", "ElementType = MET_FLOAT", "ElementType = MET_BOGUS",
                     "ElementSpacing = 1 1 1", "ElementSpacing = 0 -1 nan", "Offset = 0 0 0",
                     "TransformMatrix = 1 0 0 0 1 0 0 0 1", "TransformMatrix = 0 0 0",
                     "ElementDataFile = v.raw", "ElementDataFile = LOCAL",
                     "ElementDataFile = missing.raw"]),
    st.builds(lambda a, b, c: f"DimSize = {a} {b} {c}", st.integers(-2, 6), st.integers(0, 6),
              st.integers(0, 6)),
    st.text(max_size=20)), max_size=12)


@FUZZ
@given(header=st.one_of(st.binary(max_size=200), header_lines.map(
    lambda ls: "\n".join(ls).encode("utf-8", "surrogatepass"))),
       raw=st.binary(max_size=500))
def test_metaimage_reader_never_crashes(tmp_path, header, raw):
  from medjax.data import luna16
  (tmp_path / "v.mhd").write_bytes(header)
  (tmp_path / "v.raw").write_bytes(raw)
  try:
    volume, geometry = luna16.read_volume(str(tmp_path / "v.mhd"))
  except DataError:
    return
  assert volume.ndim == 3 and geometry.shape == volume.shape


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), st.lists(st.lists(st.sampled_from(
    ["1.2.3", "10.5", "-3", "nan", "", "x", "1", "0", "2"]), max_size=6), max_size=5).map(
        lambda rows: ("seriesuid,coordX,coordY,coordZ,class\n" +
                      "\n".join(",".join(r) for r in rows)).encode())))
def test_candidates_reader_never_crashes(tmp_path, data):
  from medjax.data import luna16
  path = tmp_path / "candidates.csv"
  path.write_bytes(data)
  try:
    table = luna16.read_candidates(str(path))
  except DataError:
    return
  assert table.world.shape == (len(table), 3)


@FUZZ
@given(data=st.one_of(st.binary(max_size=300), st.tuples(
    st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]),
    st.lists(st.lists(st.sampled_from(["1.2.3", "1.5", "-3", "é", "", "x", "1", "0"]),
                      min_size=5, max_size=5), max_size=3)).map(
        lambda c: ("seriesuid,coordX,coordY,coordZ,diameter_mm\n" +
                   "\n".join(",".join(r) for r in c[1])).encode(c[0]))))
def test_annotations_reader_on_any_encoding(tmp_path, data):
  from medjax.data import luna16
  path = tmp_path / "annotations.csv"
  path.write_bytes(data)
  try:
    table = luna16.read_annotations(str(path))
  except DataError:
    return
  assert table.world.shape == (len(table), 3) and (table.value >= 0).all()


def _npz_bytes(tmp_path, cut):
  path = tmp_path / "valid.npz"
  np.savez(path, **{"train/images": np.zeros((2, 4, 4, 1), np.uint8),
                    "train/labels": np.array([0, 1]), "train/names": np.array(["a", "b"])})
  data = path.read_bytes()
  return data[:cut % (len(data) + 1)]


@FUZZ
@given(data=st.one_of(st.binary(max_size=400), st.integers(0, 10**6)))
def test_prepared_npz_reader_never_crashes(tmp_path, data):
  from medjax.data import luna16
  path = tmp_path / "patches.npz"
  path.write_bytes(data if isinstance(data, bytes) else _npz_bytes(tmp_path, data))
  try:
    splits = luna16.load_splits(str(path))
  except DataError:
    return
  assert splits["train"].images.shape == (2, 4, 4, 1)
