import csv
import os
import sys
import types

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from medjax.data import hip_xray, synthetic_hip
from medjax.data.base import DataError


def _config(root=None, **overrides):
  values = dict(dir=root, val_fraction=0.2, test_fraction=0.25, cache=True)
  values.update(overrides)
  return types.SimpleNamespace(**values)


def _image(rng, h=40, w=56):
  return rng.integers(0, 256, (h, w), dtype=np.uint8)


def _write_csv_folder(root, n=12, *, boxes=True, patients=None, extra_rows=()):
  """n small PNGs (alternating labels) with a labels.csv; the box frames a bright square."""
  rng = np.random.default_rng(0)
  os.makedirs(root / "img", exist_ok=True)
  header = ["path", "label"] + (["x0", "y0", "x1", "y1"] if boxes else []) + \
      (["patient"] if patients is not None else [])
  rows = []
  for i in range(n):
    img = _image(rng) // 4
    img[10:30, 20:40] = 250
    Image.fromarray(img).save(root / "img" / f"{i}.png")
    row = [f"img/{i}.png", i % 2] + ([20, 10, 40, 30] if boxes else []) + \
        ([patients[i]] if patients is not None else [])
    rows.append(row)
  with open(root / "labels.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows + list(extra_rows))
  return str(root)


def test_csv_layout_all_four_variants(tmp_path):
  root = _write_csv_folder(tmp_path)
  for crop in (True, False):
    for size in (32, 64):
      ds = hip_xray.load_hip(_config(root), 0, crop=crop, size=size)
      assert ds.name == f"hip{size}_{'crop' if crop else 'full'}" and not ds.synthetic
      assert ds.image_shape == (size, size, 1) and ds.train.images.dtype == np.uint8
      assert ds.train.labels.dtype == np.int32
      names = np.concatenate([ds.train.names, ds.val.names, ds.test.names])
      assert sorted(names) == sorted(f"img/{i}.png" for i in range(12))
  cropped = hip_xray.load_hip(_config(root), 0, crop=True, size=32)
  assert cropped.train.images.min() >= 245  # the box holds only the bright square


def test_split_by_image_is_stratified_seeded_and_disjoint(tmp_path):
  labels = np.array([0] * 30 + [1] * 10, np.int32)
  idx = hip_xray.split_indices(labels, 3, val_fraction=0.1, test_fraction=0.2)
  assert sorted(np.concatenate(list(idx.values()))) == list(range(40))
  assert [labels[idx["test"]].sum(), len(idx["test"])] == [2, 8]
  again = hip_xray.split_indices(labels, 3, val_fraction=0.1, test_fraction=0.2)
  other = hip_xray.split_indices(labels, 4, val_fraction=0.1, test_fraction=0.2)
  assert np.array_equal(idx["test"], again["test"]) and not np.array_equal(idx["test"], other["test"])


def test_split_by_patient_keeps_each_patient_in_one_split(tmp_path):
  patients = [f"p{i // 3}" for i in range(30)]  # 10 patients of 3 images
  root = _write_csv_folder(tmp_path, 30, patients=patients)
  for seed in range(3):
    ds = hip_xray.load_hip(_config(root), seed, crop=False, size=32)
    assert "by patient" in ds.source
    seen = [set(split.meta["patient"]) for split in (ds.train, ds.val, ds.test)]
    assert all(seen) and not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert set.union(*seen) == set(patients)


def test_folder_layout_with_jpeg_and_nested_folders(tmp_path):
  rng = np.random.default_rng(1)
  for cls, n in (("positive", 3), ("negative", 5)):
    os.makedirs(tmp_path / cls / "patient_a")
    for i in range(n):
      sub = "patient_a/" if i == 0 else ""
      Image.fromarray(_image(rng)).save(tmp_path / cls / f"{sub}{i}.jpg", quality=95)
  (tmp_path / "negative" / "notes.txt").write_text("not an image")
  ds = hip_xray.load_hip(_config(str(tmp_path), val_fraction=0.0), 0, crop=False, size=32)
  assert ds.val is None
  names = set(np.concatenate([ds.train.names, ds.test.names]))
  assert "positive/patient_a/0.jpg" in names and len(names) == 8
  assert sum(s.class_counts[1] for s in (ds.train, ds.test)) == 3
  with pytest.raises(DataError, match="crop box"):
    hip_xray.load_hip(_config(str(tmp_path)), 0, crop=True, size=32)


def test_crop_box_outside_the_image_names_file_and_box(tmp_path):
  root = _write_csv_folder(tmp_path, 4, extra_rows=[["img/0b.png", 1, 30, 5, 70, 25]])
  Image.fromarray(np.zeros((40, 56), np.uint8)).save(tmp_path / "img" / "0b.png")
  with pytest.raises(DataError, match=r"0b\.png.*30,5,70,25.*outside the 56x40 image"):
    hip_xray.load_hip(_config(root, cache=False), 0, crop=True, size=32)
  with pytest.raises(DataError, match="is empty"):
    hip_xray.crop_to_box(np.zeros((10, 10)), (5, 2, 5, 8), "x.png")
  # The full-image variant ignores the boxes.
  assert len(hip_xray.load_hip(_config(root, cache=False), 0, crop=False, size=32).train)


@pytest.mark.parametrize("content, match", [
    ("path,x0\na.png,1\n", "missing column.*label"),
    ("path,label,x0,y0\na.png,1,0,0\n", "needs all of x0,y0,x1,y1"),
    ("path,label\na.png,2\nb.png,0\n", r"labels\.csv:2: label must be 0 or 1, got '2'"),
    ("path,label\na.png,0\nb.png,0\n", "no positive"),
    ("path,label\na.png,1\na.png,0\n", "listed twice"),
    ("path,label,patient\na.png,1,p1\nb.png,0,\n", "empty patient"),
])
def test_bad_csv_is_a_clear_error(tmp_path, content, match):
  (tmp_path / "labels.csv").write_text(content)
  with pytest.raises(DataError, match=match):
    hip_xray.list_entries(str(tmp_path))


def test_missing_folder_missing_files_undecodable_and_empty_class(tmp_path):
  with pytest.raises(DataError, match="does not exist"):
    hip_xray.load_hip(_config(str(tmp_path / "nope")), 0, crop=False, size=32)
  with pytest.raises(DataError, match="not a hip X-ray folder"):
    hip_xray.list_entries(str(tmp_path))
  root = _write_csv_folder(tmp_path / "a", 4, extra_rows=[["img/gone.png", 1, 0, 0, 5, 5]])
  with pytest.raises(DataError, match="1 listed image.*missing: img/gone.png"):
    hip_xray.load_hip(_config(root), 0, crop=False, size=32)
  root = _write_csv_folder(tmp_path / "b", 4, extra_rows=[["img/bad.png", 1, 0, 0, 5, 5]])
  (tmp_path / "b" / "img" / "bad.png").write_bytes(b"\x89PNG not really")
  with pytest.raises(DataError, match="cannot decode image .*bad.png"):
    hip_xray.load_hip(_config(root), 0, crop=False, size=32)
  os.makedirs(tmp_path / "c" / "positive")
  os.makedirs(tmp_path / "c" / "negative")
  Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "c" / "negative" / "n.png")
  with pytest.raises(DataError, match="no images in positive/"):
    hip_xray.list_entries(str(tmp_path / "c"))


def test_16_bit_png_keeps_its_precision(tmp_path):
  rng = np.random.default_rng(2)
  v8 = _image(rng)
  Image.fromarray(v8).save(tmp_path / "a8.png")
  Image.fromarray(v8.astype(np.uint16) * 257).save(tmp_path / "a16.png")  # 255 -> 65535
  fine = (rng.integers(0, 4096, v8.shape) * 16).astype(np.uint16)  # 12-bit detail in 16 bits
  Image.fromarray(fine).save(tmp_path / "b16.png")
  a8 = hip_xray.read_image(str(tmp_path / "a8.png"))
  a16 = hip_xray.read_image(str(tmp_path / "a16.png"))
  np.testing.assert_allclose(a16, a8, atol=1e-6)
  np.testing.assert_allclose(hip_xray.read_image(str(tmp_path / "b16.png")), fine / 65535, atol=1e-6)
  assert np.abs(hip_xray.preprocess(a16, crop=False, size=32).astype(int)
                - hip_xray.preprocess(a8, crop=False, size=32)).max() <= 1


def _write_dicom(path, pixels, bits, photometric="MONOCHROME2"):
  pydicom = pytest.importorskip("pydicom")
  from pydicom.dataset import FileMetaDataset
  from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
  meta.MediaStorageSOPInstanceUID = generate_uid()
  meta.TransferSyntaxUID = ExplicitVRLittleEndian
  ds = pydicom.Dataset()
  ds.file_meta = meta
  ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
  ds.Rows, ds.Columns = pixels.shape
  ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
  ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, bits, bits - 1, 0
  ds.PixelData = pixels.astype("<u2").tobytes()
  ds.save_as(path, enforce_file_format=True)


def test_dicom_is_scaled_by_bits_stored_and_monochrome1_inverted(tmp_path):
  pixels = np.arange(12 * 10, dtype=np.uint16).reshape(12, 10) * 30  # up to 3570 of 4095
  _write_dicom(str(tmp_path / "a.dcm"), pixels, 12)
  _write_dicom(str(tmp_path / "b.dcm"), pixels, 12, "MONOCHROME1")
  np.testing.assert_allclose(hip_xray.read_image(str(tmp_path / "a.dcm")), pixels / 4095, atol=1e-6)
  np.testing.assert_allclose(hip_xray.read_image(str(tmp_path / "b.dcm")), 1 - pixels / 4095,
                             atol=1e-6)


def test_dicom_without_pydicom_says_so(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "pydicom", None)
  (tmp_path / "a.dcm").write_bytes(b"")
  with pytest.raises(DataError, match="needs pydicom"):
    hip_xray.read_image(str(tmp_path / "a.dcm"))


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 400), w=st.integers(1, 400), size=st.sampled_from((128, 256)),
       pad=st.sampled_from(("border", "zero")))
def test_pad_and_resize_give_exactly_square_outputs(h, w, size, pad):
  image = np.random.default_rng(h * 401 + w).random((h, w)).astype(np.float32)
  square = hip_xray.pad_to_square(image, pad)
  side = max(h, w)
  assert square.shape == (side, side)
  top, left = (side - h) // 2, (side - w) // 2
  np.testing.assert_array_equal(square[top:top + h, left:left + w], image)  # centred, not stretched
  out = hip_xray.preprocess(image, crop=False, size=size, pad=pad)
  assert out.shape == (size, size) and out.dtype == np.uint8


@settings(max_examples=40, deadline=None)
@given(h=st.integers(2, 300), w=st.integers(2, 300), data=st.data())
def test_crop_to_box_shapes_and_bounds(h, w, data):
  x0 = data.draw(st.integers(0, w - 1))
  x1 = data.draw(st.integers(x0 + 1, w))
  y0 = data.draw(st.integers(0, h - 1))
  y1 = data.draw(st.integers(y0 + 1, h))
  image = np.zeros((h, w), np.float32)
  assert hip_xray.crop_to_box(image, (x0, y0, x1, y1)).shape == (y1 - y0, x1 - x0)
  assert hip_xray.preprocess(image, (x0, y0, x1, y1), crop=True, size=128).shape == (128, 128)
  with pytest.raises(DataError, match="outside"):
    hip_xray.crop_to_box(image, (x0, y0, x1, h + 1))


def test_preprocessed_images_are_cached(tmp_path, monkeypatch):
  root = _write_csv_folder(tmp_path, 6)
  first = hip_xray.load_hip(_config(root), 0, crop=True, size=32)

  def fail(*args, **kwargs):
    raise AssertionError("read despite the cache")

  monkeypatch.setattr(hip_xray, "_read_pixels", fail)
  again = hip_xray.load_hip(_config(root), 0, crop=True, size=32)
  np.testing.assert_array_equal(first.test.images, again.test.images)
  with pytest.raises(AssertionError):  # another variant is another cache entry
    hip_xray.load_hip(_config(root), 0, crop=False, size=32)


def test_synthetic_folder_is_deterministic_and_has_real_pngs(tmp_path):
  a = synthetic_hip.generate_hip_folder(str(tmp_path / "a"), n=4, seed=7)
  synthetic_hip.generate_hip_folder(str(tmp_path / "b"), n=4, seed=7)
  text = (tmp_path / "a" / "labels.csv").read_text()
  assert text == (tmp_path / "b" / "labels.csv").read_text()
  assert text.splitlines()[0] == ",".join(synthetic_hip.COLUMNS)
  entries = hip_xray.list_entries(a)
  assert [e.label for e in entries].count(1) == 2
  for e in entries:
    assert (tmp_path / "a" / e.path).read_bytes() == (tmp_path / "b" / e.path).read_bytes()
    with Image.open(os.path.join(a, e.path)) as im:
      assert im.format == "PNG" and im.mode == "L" and (im.height, im.width) in synthetic_hip.SHAPES
  assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp folder left


def test_synthetic_boxes_frame_the_head_and_the_fracture():
  for i in range(6):
    image, info = synthetic_hip.render_hip(np.random.default_rng([1, i]), positive=i % 3 != 0)
    x0, y0, x1, y1 = info["box"]
    h, w = image.shape
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    (hx, hy), r = info["head"], info["head_radius"]
    assert x0 <= hx - r and hx + r <= x1 and y0 <= hy - r and hy + r <= y1
    if i % 3 != 0:
      fx, fy = info["fracture"]
      assert x0 + 5 <= fx <= x1 - 5 and y0 + 5 <= fy <= y1 - 5
    else:
      assert info["fracture"] is None


# sha256 (16 hex digits) of synthetic_hip v3's image 0 (seed 0, positive) as 8 bits, from the
# generator before v4 existed (main at b2ef021).
V3_SEED0_SHA256 = "ab27ac9b2e80afc7"


def _same_patient(seed):
  """The radiograph of one synthetic patient with and without the fracture, and its metadata."""
  fractured, info = synthetic_hip.render_hip(np.random.default_rng([seed]), True)
  intact, intact_info = synthetic_hip.render_hip(np.random.default_rng([seed]), False)
  return fractured, intact, info, intact_info


def _first_of_each_kind(kinds, seeds=range(60)):
  """{kind: seed} of the first positive of each fracture kind asked for."""
  found = {}
  for seed in seeds:
    _, info = synthetic_hip.render_hip(np.random.default_rng([seed]), True)
    found.setdefault(info["fracture_kind"], seed)
    if set(kinds) <= set(found):
      return {k: found[k] for k in kinds}
  raise AssertionError(f"no positive of each kind {kinds} in {seeds}")


def test_synthetic_same_patient_with_and_without_the_fracture():
  """One random stream, either label: the same radiograph except around the fractured femur."""
  for seed in range(3):
    fractured, intact, info, intact_info = _same_patient(seed)
    assert fractured.shape == intact.shape
    assert info["distractors"] == intact_info["distractors"]
    assert intact_info["fracture"] is None and intact_info["fracture_kind"] is None
    differs = np.abs(fractured - intact) > 0
    ys, xs = np.nonzero(differs)
    (hx, hy), r = info["head"], info["head_radius"]
    assert len(xs) and np.abs(xs - hx).max() <= 5 * r and ys.min() >= hy - 2 * r


def test_synthetic_distractors_come_at_the_same_rates_for_both_labels():
  """The fracture-like distractors are drawn before the label matters: equal on both classes."""
  seen = dict.fromkeys(("scar", "channel", "ward", "wall", "fold"), 0)
  for seed in range(8):
    _, _, info, intact_info = _same_patient(100 + seed)
    assert info["distractors"] == intact_info["distractors"]
    for name, count in info["distractors"].items():
      seen[name] += count
  assert all(seen.values()), seen  # every kind occurs


def test_synthetic_displaced_fractures_show_in_the_full_image_and_more_in_the_crop():
  """Garden III/IV: the gap or the shift is >= 2 pixels at 128 px full; the crop shows more."""
  for kind, seed in _first_of_each_kind(("varus", "overriding")).items():
    fractured, intact, info, _ = _same_patient(seed)
    to_128_full = 128 / max(fractured.shape)
    size = info["fracture_gap"] if kind == "varus" else info["fracture_shift"]
    assert size * to_128_full >= 2.0, (kind, size)
    changed = {}
    for crop in (True, False):
      a, b = (hip_xray.preprocess(x, info["box"], crop=crop, size=128).astype(int)
              for x in (fractured, intact))
      changed[crop] = int((np.abs(a - b) > 8).sum())
    assert changed[False] >= 40 and changed[True] > 2 * changed[False], (kind, changed)


def test_synthetic_displaced_fractures_carry_the_coarse_signs_at_128_px_full():
  """v5, Garden III/IV: the leg shortened by >= 3 px and the neck foreshortened, at 128 px full;
  Garden I/II change the full image far less than the crop (the crop's advantage)."""
  kinds = _first_of_each_kind(("varus", "overriding", "undisplaced", "impacted"), range(80))
  for kind, seed in kinds.items():
    fractured, intact, info, _ = _same_patient(seed)
    to_128_full = 128 / max(fractured.shape)
    changed = {}
    for crop in (True, False):
      a, b = (hip_xray.preprocess(x, info["box"], crop=crop, size=128).astype(int)
              for x in (fractured, intact))
      changed[crop] = int((np.abs(a - b) > 8).sum())
    if kind in ("varus", "overriding"):
      assert info["fracture_rise"] * to_128_full >= 3.0, (kind, info["fracture_rise"])
      assert info["fracture_rotation"] <= 0.75
      assert changed[False] >= 150, (kind, changed)
    else:
      assert info["fracture_rise"] * to_128_full < 1.5 and info["fracture_rotation"] == 1.0
      assert changed[True] > 3 * changed[False], (kind, changed)


def test_synthetic_label_is_not_a_global_statistic():
  """The same patient with and without the fracture: mean, spread and percentiles of the 128 px
  full image move far less than they vary between patients (no brightness threshold)."""
  def stats(image):
    x = hip_xray.preprocess(image, None, crop=False, size=128).astype(float)
    return np.array([x.mean(), x.std(), *np.percentile(x, [5, 50, 95])])

  pairs = [_same_patient(300 + seed)[:2] for seed in range(6)]
  fractured = np.array([stats(a) for a, _ in pairs])
  intact = np.array([stats(b) for _, b in pairs])
  between = np.concatenate([fractured, intact]).std(axis=0)
  within = np.abs(fractured - intact).mean(axis=0)
  assert (within < 0.1 * between + 0.5).all(), (within, between)


def test_synthetic_version_3_renders_as_before():
  """v3 is kept bit for bit (rounded to the 8-bit PNG it is saved as)."""
  import hashlib
  image, _ = synthetic_hip.render_hip(np.random.default_rng([0, 0, 3]), True, version=3)
  png = np.round(image * 255).astype(np.uint8)
  assert hashlib.sha256(png.tobytes()).hexdigest()[:16] == V3_SEED0_SHA256


def test_synthetic_version_3_is_still_rendered_on_request():
  image, info = synthetic_hip.render_hip(np.random.default_rng([0]), True, version=3)
  assert image.shape in synthetic_hip.SHAPES and "fracture_kind" not in info
  with pytest.raises(ValueError, match="version"):
    synthetic_hip.render_hip(np.random.default_rng([0]), True, version=2)


def test_load_hip_defaults_to_the_embedded_synthetic_folder():
  ds = hip_xray.load_hip(_config(None, synthetic_n=8, test_fraction=0.25, val_fraction=0.0),
                         0, crop=True, size=64)
  assert ds.synthetic and "synthetic" in ds.source and ds.image_shape == (64, 64, 1)
  assert len(ds.train) + len(ds.test) == 8 and ds.test.class_counts == (1, 1)


def test_exif_orientation_is_applied_so_the_box_cuts_the_region_a_viewer_shows(tmp_path):
  # The photo as displayed: 40 high, 56 wide, bright square at rows 10:30, columns 20:40. The
  # camera stored it rotated (transposed), with EXIF Orientation 5 saying how to show it.
  shown = np.full((40, 56), 30, np.uint8)
  shown[10:30, 20:40] = 250
  exif = Image.Exif()
  exif[0x0112] = 5  # Orientation: transpose
  os.makedirs(tmp_path / "img")
  for i in range(8):
    shown[0, :i + 1] = 0  # distinct files
    Image.fromarray(shown.T.copy()).save(tmp_path / "img" / f"{i}.jpg", quality=95, exif=exif)
  with open(tmp_path / "labels.csv", "w") as f:
    f.write("path,label,x0,y0,x1,y1\n" + "".join(f"img/{i}.jpg,{i % 2},20,10,40,30\n"
                                                for i in range(8)))
  image = hip_xray.read_image(str(tmp_path / "img" / "0.jpg"))
  assert image.shape == (40, 56)  # as displayed, not as stored (56 x 40)
  ds = hip_xray.load_hip(_config(str(tmp_path)), 0, crop=True, size=32)
  assert ds.train.images.min() >= 235  # the box holds the bright square, not the background


@pytest.mark.parametrize("box, match", [
    ("inf,10,40,30", r"labels.csv:3: crop box x0,y0,x1,y1 must be finite numbers >= 0"),
    ("nan,10,40,30", r"labels.csv:3: crop box x0,y0,x1,y1 must be finite numbers >= 0"),
    ("-5,10,40,30", r"labels.csv:3: crop box x0,y0,x1,y1 must be finite numbers >= 0"),
    ("20,30,40,10", r"labels.csv:3: crop box .* is empty"),
    ("1e400,10,40,30", r"labels.csv:3: crop box x0,y0,x1,y1 must be finite numbers >= 0"),
])
def test_a_bad_crop_box_is_refused_naming_its_row(tmp_path, box, match):
  root = _write_csv_folder(tmp_path, 4)
  lines = (tmp_path / "labels.csv").read_text().splitlines()
  lines[2] = f"img/1.png,1,{box}"
  (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
  with pytest.raises(DataError, match=match):
    hip_xray.list_entries(root)


def test_a_crop_box_outside_its_image_names_the_row(tmp_path):
  root = _write_csv_folder(tmp_path, 4, extra_rows=[["img/0.png", 0, 20, 10, 400, 30]])
  with pytest.raises(DataError, match=r"labels.csv:6.*img/0.png.*outside the 56x40 image"):
    hip_xray.load_hip(_config(root, allow_duplicates=True), 0, crop=True, size=32)


def test_a_decompression_bomb_is_a_data_error_naming_the_file(tmp_path, monkeypatch):
  root = _write_csv_folder(tmp_path, 4)
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 56x40 = 2240 px: over the limit
  with pytest.raises(DataError, match=r"img/0.png: Image size \(2240 pixels\) exceeds limit.*"
                                      r"decompression bomb"):
    hip_xray.read_image(os.path.join(root, "img", "0.png"))
  monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # over the limit, under twice it
  with pytest.raises(DataError, match=r"img/0.png: Image size \(2240 pixels\)"):
    hip_xray.load_hip(_config(root, cache=False), 0, crop=False, size=32)


def test_an_image_of_several_frames_is_refused(tmp_path):
  frames = [Image.fromarray(np.full((8, 8), v, np.uint8)) for v in (0, 255)]
  path = tmp_path / "anim.png"
  frames[0].save(path, save_all=True, append_images=frames[1:])
  with pytest.raises(DataError, match="anim.png: holds 2 frames"):
    hip_xray.read_image(str(path))


def test_data_dir_pointing_at_the_labels_file_says_so(tmp_path):
  root = _write_csv_folder(tmp_path, 4)
  with pytest.raises(DataError, match=r"labels.csv is a file; data.dir must be the folder "
                                      r"holding labels.csv"):
    hip_xray.load_hip(_config(os.path.join(root, "labels.csv")), 0, crop=False, size=32)
