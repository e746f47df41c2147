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
  assert split.images.shape == (1, 50, 50, 1) and split.images.dtype == np.uint8


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
