"""A user's own hip X-ray folder as the paper's four variants: cropped or full, 128 or 256 pixels.

Two layouts (the paper's set is private, so medjax reads the user's):
  - `labels.csv` (UTF-8, or UTF-16 with a BOM) with columns `path,label` (label 1 = fracture),
    optionally a crop box `x0,y0,x1,y1` in pixels of the image as a viewer shows it (EXIF
    orientation applied; x1, y1 exclusive), a `patient` column and a `split` column
    (train/val/test); other columns are ignored. Paths are relative to the folder.
  - no CSV: class sub-folders `positive/` and `negative/` (searched recursively); no crop boxes.
Images: PNG or JPEG, 8 or 16 bit, as displayed (EXIF orientation applied), and DICOM when
pydicom is installed. 16-bit images are scaled to [0, 1] by `data.bit_depth`, else the depth the
file declares (PNG sBIT, DICOM BitsStored), else 65535, so their precision is kept until the
final 8-bit quantisation; images using under 1/16 of that range are logged with the fix.

Preprocessing, as small functions: `read_image` -> `crop_to_box` (cropped variants) ->
`pad_to_square` -> `resize` -> `to_uint8`. Images are padded to a square, never stretched, so
anatomy keeps its aspect ratio. Augmentation (flips, small translations) is not done here: the
training step applies it on device, to training batches only.

Splits are stratified and seeded: by image, or by patient when the CSV has a `patient` column
(no patient then appears in two splits); a `split` column is used as given instead. A file
listed twice or the same bytes under two names is a DataError (`data.allow_duplicates=True`
keeps them, in one split when medjax splits). Preprocessed images and file hashes are cached as
.npz, keyed by the file list (with sizes and modification times) and the variant.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import os

import numpy as np
from PIL import Image

from medjax.data import checks, synthetic_hip
from medjax.data.base import DataError, Dataset, Split, check_both_classes, save_npz_atomic
from medjax.data.base import cache_dir, capped

log = logging.getLogger(__name__)

VERSION = 3  # 2: 16-bit images scaled by their bit depth; 3: EXIF orientation applied
SIZES = (128, 256)  # the paper's
LABELS_CSV = "labels.csv"
CLASS_FOLDERS = (("negative", 0), ("positive", 1))
BOX_COLUMNS = ("x0", "y0", "x1", "y1")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
DICOM_SUFFIXES = (".dcm", ".dicom")
VAL_FRACTION, TEST_FRACTION = 0.1, 0.2  # load_hip's defaults (and the TFDS builder's)
SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True)
class Entry:
  """One listed image: path relative to the folder, label, optional crop box, patient and split,
  and where it is listed (`labels.csv:7`)."""
  path: str
  label: int
  box: tuple[int, int, int, int] | None = None
  patient: str | None = None
  split: str | None = None
  source: str | None = None


def read_labels_csv(path: str) -> list[Entry]:
  """Parses labels.csv; raises DataError naming the line of the first bad row.

  A file listed twice with two labels is an error here; listed twice with one label, it is left
  to `check_duplicates` (data.allow_duplicates may keep it).
  """
  reader = csv.reader(io.StringIO(checks.read_text(path), newline=""))
  header = [c.strip().lower() for c in next(reader, [])]
  missing = [c for c in ("path", "label") if c not in header]
  if missing:
    raise DataError(f"{path}: missing column(s) {', '.join(missing)} (expected "
                    f"path,label[,x0,y0,x1,y1][,patient][,split]; found {','.join(header)})")
  has_box = [c in header for c in BOX_COLUMNS]
  if any(has_box) and not all(has_box):
    raise DataError(f"{path}: a crop box needs all of {','.join(BOX_COLUMNS)}; found only "
                    f"{','.join(c for c, h in zip(BOX_COLUMNS, has_box) if h)}")
  col = {name: header.index(name) for name in header}
  root = os.path.dirname(path)
  entries, seen = [], {}
  for row in reader:
    if not any(cell.strip() for cell in row):
      continue
    row = [cell.strip() for cell in row] + [""] * (len(header) - len(row))
    where = f"{path}:{reader.line_num}"
    rel, label = row[col["path"]], row[col["label"]]
    if not rel:
      raise DataError(f"{where}: empty path")
    if label not in ("0", "1"):
      raise DataError(f"{where}: label must be 0 or 1, got {label!r}")
    key = checks.same_file_key(root, rel)
    if key in seen and seen[key][0] != label:
      raise DataError(f"{where}: {rel} is listed twice, with labels {seen[key][0]} (line "
                      f"{seen[key][1]}) and {label}; give each file one label")
    seen.setdefault(key, (label, reader.line_num))
    box = None
    if all(has_box):
      cells = [row[col[c]] for c in BOX_COLUMNS]
      if any(cells):
        box = _parse_box(cells, where)
    patient = None
    if "patient" in col:
      patient = row[col["patient"]]
      if not patient:
        raise DataError(f"{where}: empty patient (the patient column splits by patient: fill it "
                        "for every row, or drop the column to split by image)")
    split = None
    if "split" in col:
      split = row[col["split"]].lower()
      if split not in SPLITS:
        raise DataError(f"{where}: split must be train, val or test, got {row[col['split']]!r}")
    entries.append(Entry(rel, int(label), box, patient, split, where))
  if not entries:
    raise DataError(f"{path}: no rows")
  return entries


def _parse_box(cells: list[str], where: str) -> tuple[int, int, int, int]:
  """x0,y0,x1,y1 as pixel indices: finite numbers >= 0 (rounded), x0 < x1 and y0 < y1."""
  try:
    values = [float(c) for c in cells]
  except ValueError:
    raise DataError(f"{where}: crop box must be four numbers x0,y0,x1,y1, got {cells}") from None
  if not all(np.isfinite(v) and v >= 0 for v in values):
    raise DataError(f"{where}: crop box x0,y0,x1,y1 must be finite numbers >= 0 (pixels), got "
                    f"{','.join(cells)}")
  x0, y0, x1, y1 = (int(round(v)) for v in values)
  if x1 <= x0 or y1 <= y0:
    raise DataError(f"{where}: crop box x0,y0,x1,y1 = {x0},{y0},{x1},{y1} is empty (need "
                    "x0 < x1 and y0 < y1)")
  return x0, y0, x1, y1


def scan_class_folders(root: str) -> list[Entry]:
  """Entries of the `negative/` and `positive/` sub-folders (recursive, sorted)."""
  entries = []
  for folder, label in CLASS_FOLDERS:
    found = []
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, folder)):
      dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
      for name in sorted(filenames):
        if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES + DICOM_SUFFIXES):
          found.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    if not found:
      raise DataError(f"{root}: no images in {folder}/ (PNG, JPEG or DICOM; both classes are needed)")
    entries += [Entry(rel, label) for rel in found]
  return entries


def list_entries(root: str) -> list[Entry]:
  """The folder's images, from labels.csv if present, else from the class sub-folders."""
  checks.data_folder(root, f"{LABELS_CSV} or the sub-folders positive/ and negative/ (a hip "
                     "X-ray folder)")
  csv_path = os.path.join(root, LABELS_CSV)
  if os.path.isfile(csv_path):
    entries = read_labels_csv(csv_path)
    labels = {e.label for e in entries}
    for cls, name in ((0, "negative (0)"), (1, "positive (1)")):
      if cls not in labels:
        raise DataError(f"{csv_path}: no {name} images; both classes are needed")
    return entries
  if any(os.path.isdir(os.path.join(root, f)) for f, _ in CLASS_FOLDERS):
    return scan_class_folders(root)
  raise DataError(f"{root} is not a hip X-ray folder: expected {LABELS_CSV} (path,label"
                  "[,x0,y0,x1,y1][,patient]) or sub-folders positive/ and negative/")


def to_unit(pixels: np.ndarray) -> np.ndarray:
  """float32 in [0, 1], scaled by the range of the integer dtype (uint16: /65535, not clipped)."""
  if pixels.dtype == np.bool_:
    return pixels.astype(np.float32)
  if np.issubdtype(pixels.dtype, np.integer):
    info = np.iinfo(pixels.dtype)
    return ((pixels.astype(np.float64) - info.min) / (info.max - info.min)).astype(np.float32)
  return np.clip(pixels, 0.0, 1.0).astype(np.float32)


def _read_dicom(path: str, bit_depth: int | None = None) -> tuple[np.ndarray, int, int]:
  """DICOM pixels scaled by BitsStored, or `bit_depth` when set (a 12-bit image fills [0, 1]);
  MONOCHROME1 inverted. Returns (image, brightest stored value, full scale) as `_read_pixels`.

  The file's VOI window is not applied: the network sees the full stored range.
  """
  try:
    import pydicom
  except ImportError:
    raise DataError(f"{path}: reading DICOM needs pydicom (pip install pydicom)") from None
  try:
    ds = pydicom.dcmread(path)
    pixels = np.asarray(ds.pixel_array)
  except FileNotFoundError:
    raise DataError(f"listed image is missing: {path}") from None
  except Exception as e:  # pydicom raises many types for bad or unsupported files
    raise DataError(f"cannot decode DICOM {path}: {e}") from None
  if int(ds.get("SamplesPerPixel", 1)) > 1:
    pixels = pixels.mean(axis=-1)
  if pixels.ndim != 2:
    raise DataError(f"{path}: expected one 2-D frame, got pixel array of shape {pixels.shape}")
  bits = bit_depth or int(ds.get("BitsStored", 8 * pixels.dtype.itemsize))
  low = -(2 ** (bits - 1)) if int(ds.get("PixelRepresentation", 0)) == 1 else 0
  full = 2 ** bits - 1
  stored = pixels.astype(np.float64) - low
  if bit_depth is not None and (stored.min() < 0 or stored.max() > full):
    raise DataError(f"{path}: pixel values {int(pixels.min())}..{int(pixels.max())} do not fit "
                    f"data.bit_depth={bit_depth}; set the depth the data has, or unset it")
  image = np.clip(stored / full, 0, 1).astype(np.float32)
  if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":  # low values are bright
    image = 1.0 - image
  return image, int(stored.max()), full


def _read_pixels(path: str, bit_depth: int | None = None) -> tuple[np.ndarray, int, int]:
  """(float32 [H, W] in [0, 1], brightest stored value, full scale); the last two are 0 for
  8-bit images. PNG/JPEG as displayed (`checks.read_pixels`: EXIF orientation applied; 16-bit
  scaled by `checks.full_scale`: bit_depth, else PNG sBIT)."""
  if path.lower().endswith(DICOM_SUFFIXES):
    return _read_dicom(path, bit_depth)
  pixels, _, peak, full = checks.read_pixels(path, bit_depth)
  return (pixels if full else to_unit(pixels)), peak, full


def read_image(path: str, bit_depth: int | None = None) -> np.ndarray:
  """A grayscale image as float32 [H, W] in [0, 1] (colour is converted to luminance); 16-bit
  images scaled by `bit_depth`, else the depth the file declares, else 65535."""
  return _read_pixels(path, checks.check_bit_depth(bit_depth))[0]


def crop_to_box(image: np.ndarray, box, where: str = "image") -> np.ndarray:
  """image[y0:y1, x0:x1]; a box not inside the image is a DataError naming `where` and the box."""
  x0, y0, x1, y1 = box
  h, w = image.shape[:2]
  if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
    problem = "is empty" if x1 <= x0 or y1 <= y0 else f"lies outside the {w}x{h} image"
    raise DataError(f"{where}: crop box x0,y0,x1,y1 = {x0},{y0},{x1},{y1} {problem} "
                    f"(boxes are in original pixels, 0 <= x0 < x1 <= width, 0 <= y0 < y1 <= height)")
  return image[y0:y1, x0:x1]


def pad_to_square(image: np.ndarray, value: str | float = "border") -> np.ndarray:
  """Pads the shorter side (centred) to a square, keeping the aspect ratio.

  `value`: "border" pads with the mean of the image's outermost rows and columns, so the padding
  continues the background (radiographs differ in it: air is dark, collimation bright) instead of
  adding an artificial edge; "zero" or a number pads with that constant.
  """
  h, w = image.shape
  if h == w:
    return image
  if value == "border":
    edges = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    fill = float(edges.mean())
  else:
    fill = 0.0 if value == "zero" else float(value)
  side = max(h, w)
  top, left = (side - h) // 2, (side - w) // 2
  out = np.full((side, side), fill, image.dtype)
  out[top:top + h, left:left + w] = image
  return out


def resize(image: np.ndarray, size: int) -> np.ndarray:
  """float [H, W] -> float32 [size, size] with Pillow's Lanczos filter (antialiased: its support
  widens with the downscale factor), clipped back to [0, 1]."""
  out = Image.fromarray(np.asarray(image, np.float32), "F")
  out = out.resize((size, size), Image.Resampling.LANCZOS)
  return np.clip(np.asarray(out), 0.0, 1.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
  return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def preprocess(image: np.ndarray, box=None, *, crop: bool, size: int, pad: str | float = "border",
               where: str = "image") -> np.ndarray:
  """One image in [0, 1] -> uint8 [size, size]: crop (if asked) -> pad to square -> resize."""
  if crop:
    if box is None:
      raise DataError(f"{where}: the cropped variant needs a crop box (x0,y0,x1,y1 in {LABELS_CSV})")
    image = crop_to_box(image, box, where)
  return to_uint8(resize(pad_to_square(image, pad), size))


def _cache_key(root: str, entries: list[Entry], variant: dict) -> str:
  files = []
  for e in entries:
    st = os.stat(os.path.join(root, e.path))
    files.append([e.path, e.label, e.box, st.st_size, st.st_mtime_ns])
  blob = json.dumps([VERSION, os.path.abspath(root), variant, files])
  return hashlib.sha256(blob.encode()).hexdigest()[:24]


def check_entries(root: str, entries: list[Entry], *, crop: bool) -> None:
  """DataError, before any decoding, if a listed image is missing or (cropped) lacks a box."""
  missing = [e.path for e in entries if not os.path.isfile(os.path.join(root, e.path))]
  if missing:
    raise DataError(f"{root}: {len(missing)} listed image(s) missing: {', '.join(missing[:5])}"
                    + (" ..." if len(missing) > 5 else ""))
  if crop:
    no_box = [e.path for e in entries if e.box is None]
    if no_box:
      raise DataError(f"{root}: the cropped variant needs a crop box (x0,y0,x1,y1 in {LABELS_CSV}) "
                      f"for every image; {len(no_box)} have none, e.g. {no_box[0]}")


def _prepare_one(root: str, entry: Entry, *, crop: bool, size: int, pad: str | float,
                 bit_depth: int | None) -> tuple[np.ndarray, int, int]:
  full_path = os.path.join(root, entry.path)
  image, peak, full = _read_pixels(full_path, bit_depth)
  where = f"{entry.source} ({full_path})" if entry.source else full_path
  return preprocess(image, entry.box, crop=crop, size=size, pad=pad, where=where), peak, full


def prepare_entry(root: str, entry: Entry, *, crop: bool, size: int, pad: str | float = "border",
                  bit_depth: int | None = None) -> np.ndarray:
  """One listed image, read and preprocessed: uint8 [size, size] (uncached)."""
  return _prepare_one(root, entry, crop=crop, size=size, pad=pad,
                      bit_depth=checks.check_bit_depth(bit_depth))[0]


def _prepare(root, entries, *, crop, size, pad, cache, bit_depth):
  """`prepare`'s images, plus each image's brightest stored value and full scale (0 for 8 bit)."""
  check_entries(root, entries, crop=crop)
  bit_depth = checks.check_bit_depth(bit_depth)
  variant = {"crop": crop, "size": size, "pad": pad, "bit_depth": bit_depth}
  path = os.path.join(cache_dir(), "hip_prepared",
                      f"{'crop' if crop else 'full'}{size}_{_cache_key(root, entries, variant)}.npz")
  names = np.asarray([e.path for e in entries])
  if cache and os.path.exists(path):
    try:
      with np.load(path) as z:
        if np.array_equal(z["names"], names):
          return z["images"], z["peak"], z["full"]
    except Exception as e:  # a damaged cache is rebuilt, never trusted
      log.warning("ignoring unreadable cache %s (%s)", path, e)
  log.info("preprocessing %d hip X-rays from %s (%s, %dx%d)...", len(entries), root,
           "cropped" if crop else "full image", size, size)
  images = np.empty((len(entries), size, size), np.uint8)
  peak, full = np.zeros(len(entries), np.int64), np.zeros(len(entries), np.int64)
  for i, e in enumerate(entries):
    images[i], peak[i], full[i] = _prepare_one(root, e, crop=crop, size=size, pad=pad,
                                               bit_depth=bit_depth)
  if cache:
    save_npz_atomic(path, {"images": images, "names": names, "peak": peak, "full": full})
  return images, peak, full


def prepare(root: str, entries: list[Entry], *, crop: bool, size: int, pad: str | float = "border",
            cache: bool = True, bit_depth: int | None = None) -> np.ndarray:
  """Preprocessed uint8 images [N, size, size] in the order of `entries` (cached as .npz)."""
  return _prepare(root, entries, crop=crop, size=size, pad=pad, cache=cache,
                  bit_depth=bit_depth)[0]


def file_digests(root: str, entries: list[Entry], *, cache: bool = True) -> np.ndarray:
  """`checks.path_digest` of each listed file, cached by path, size and modification time."""
  paths = [os.path.join(root, e.path) for e in entries]
  stats = [(p, os.stat(p)) for p in paths]
  blob = json.dumps([VERSION, os.path.abspath(root),
                     [[p, st.st_size, st.st_mtime_ns] for p, st in stats]])
  path = os.path.join(cache_dir(), "hip_digests",
                      hashlib.sha256(blob.encode()).hexdigest()[:24] + ".npz")
  if cache and os.path.exists(path):
    try:
      with np.load(path) as z:
        if len(z["digests"]) == len(paths):
          return z["digests"]
    except Exception as e:  # a damaged cache is rebuilt, never trusted
      log.warning("ignoring unreadable cache %s (%s)", path, e)
  digests = np.asarray([checks.path_digest(p) for p in paths])
  if cache:
    save_npz_atomic(path, {"digests": digests})
  return digests


def check_duplicates(root: str, entries: list[Entry], digests, *,
                     allow: bool = False) -> list[checks.Finding]:
  """`checks.check_duplicates` of the folder: files listed twice and the same bytes under two
  names; with a `split` column also files, copies and patients shared by two splits."""
  fixed = entries[0].split is not None
  csv_path = os.path.join(root, LABELS_CSV)
  whole = LABELS_CSV if os.path.isfile(csv_path) else "the class folders"
  listed = [checks.Listed(e.split if fixed else whole, e.path, checks.same_file_key(root, e.path),
                          e.label, str(d), patient=e.patient if fixed else None)
            for e, d in zip(entries, digests)]
  if fixed:  # later splits are reported against earlier ones: train, val, test
    listed.sort(key=lambda x: SPLITS.index(x.split))
  return checks.check_duplicates(listed, where=root, allow=allow)


def split_indices(labels: np.ndarray, seed: int, *, val_fraction: float, test_fraction: float,
                  patients: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """Stratified, seeded train/val/test indices; whole patients go to one split when given.

  Without `patients` every image is its own group. Groups are stratified by their label (a
  patient with any positive image counts as positive); test takes `test_fraction` of each
  class's groups, val `val_fraction` of the rest (at least one group each where a class has
  enough), train the remainder.
  """
  if not 0.0 < test_fraction < 1.0:
    raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
  if not 0.0 <= val_fraction < 1.0:
    raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
  groups = np.arange(len(labels)) if patients is None else np.asarray(patients)
  keys, inverse = np.unique(groups, return_inverse=True)
  group_label = np.zeros(len(keys), np.int32)
  np.maximum.at(group_label, inverse, labels)
  split_of_group = np.zeros(len(keys), np.int8)  # 0 train, 1 val, 2 test
  for cls in (0, 1):
    rng = np.random.default_rng([seed, 0x419, cls])
    members = rng.permutation(np.flatnonzero(group_label == cls))
    n_test = round(test_fraction * len(members))
    if len(members) >= 2:
      n_test = min(max(n_test, 1), len(members) - 1)
    rest = len(members) - n_test
    n_val = round(val_fraction * rest)
    if val_fraction > 0 and rest >= 2:
      n_val = min(max(n_val, 1), rest - 1)
    split_of_group[members[:n_test]] = 2
    split_of_group[members[n_test:n_test + n_val]] = 1
  per_image = split_of_group[inverse]
  return {name: np.flatnonzero(per_image == k) for k, name in enumerate(("train", "val", "test"))}


def patients_of(entries: list[Entry]) -> np.ndarray | None:
  """The entries' patient ids, or None when the CSV has no `patient` column (split by image)."""
  return np.asarray([e.patient for e in entries]) if entries[0].patient is not None else None


def groups_of(entries: list[Entry], digests=None) -> np.ndarray | None:
  """What `split_indices` keeps together: patients (or None: each image alone), merged where
  files have the same bytes (`digests`), so kept duplicates never straddle two splits."""
  patients = patients_of(entries)
  if digests is None:
    return patients
  parent = list(range(len(entries)))

  def find(i):
    while parent[i] != i:
      parent[i] = parent[parent[i]]
      i = parent[i]
    return i

  merged = False
  for keys, is_copy in ((digests, True), (patients, False)):
    first = {}
    for i, key in enumerate([] if keys is None else keys):
      j = first.setdefault(key, i)
      a, b = find(i), find(j)
      if a != b:
        parent[max(a, b)] = min(a, b)
        merged |= is_copy
  if not merged:
    return patients
  roots = np.asarray([find(i) for i in range(len(entries))])
  if patients is None:
    return roots
  name = {}
  for r, p in zip(roots, patients):
    name[r] = min(name.get(r, p), p)
  return np.asarray([name[r] for r in roots])


def split_entries(entries: list[Entry], seed: int, *, val_fraction: float = VAL_FRACTION,
                  test_fraction: float = TEST_FRACTION, digests=None) -> dict[str, np.ndarray]:
  """Train/val/test indices of the entries.

  With a `split` column: as given (when it names no val images, `val_fraction` of train is held
  out). Else `split_indices` of the labels by `groups_of` (patients, copies kept together).
  """
  labels = np.asarray([e.label for e in entries], np.int32)
  groups = groups_of(entries, digests)
  if entries[0].split is None:
    return split_indices(labels, seed, val_fraction=val_fraction, test_fraction=test_fraction,
                         patients=groups)
  idx = {name: np.flatnonzero([e.split == name for e in entries]) for name in SPLITS}
  for name in ("train", "test"):
    if not len(idx[name]):
      counts = ", ".join(f"{k} {len(v)}" for k, v in idx.items())
      raise DataError(f"{LABELS_CSV}: the split column names no {name} images ({counts}); "
                      "train and test are needed")
  if not len(idx["val"]) and val_fraction > 0:
    train = idx["train"]
    held = split_indices(labels[train], seed, val_fraction=0.0, test_fraction=val_fraction,
                         patients=None if groups is None else groups[train])
    idx["train"], idx["val"] = train[held["train"]], train[held["test"]]
  return idx


def _option(data_config, name: str, default):
  value = getattr(data_config, name, default)
  return default if value is None else value


def load_hip(data_config, seed: int, *, crop: bool, size: int) -> Dataset:
  """One of the paper's hip variants from `data_config.dir`, or the embedded synthetic folder.

  Reads `val_fraction`, `test_fraction`, `pad`, `cache`, `synthetic_n`, `max_train`,
  `max_test`, `allow_duplicates` and `bit_depth` from `data_config` where present (defaults
  VAL_FRACTION, TEST_FRACTION, "border", True, `synthetic_hip.N_IMAGES`, none, none, False,
  none).
  """
  if size < 16:
    raise ValueError(f"image size must be >= 16 (the paper's are {SIZES}), got {size}")
  root = getattr(data_config, "dir", None)
  synthetic = not root
  if synthetic:
    root = synthetic_hip.hip_root(n=_option(data_config, "synthetic_n", synthetic_hip.N_IMAGES))
  entries = list_entries(root)
  cache = _option(data_config, "cache", True)
  check_entries(root, entries, crop=crop)
  digests = file_digests(root, entries, cache=cache)
  check_duplicates(root, entries, digests, allow=_option(data_config, "allow_duplicates", False))
  images, peak, full_scale = _prepare(root, entries, crop=crop, size=size, cache=cache,
                                      pad=_option(data_config, "pad", "border"),
                                      bit_depth=_option(data_config, "bit_depth", None))
  labels = np.asarray([e.label for e in entries], np.int32)
  names = np.asarray([e.path for e in entries])
  patients = patients_of(entries)
  by_patient = patients is not None
  full = Split(images[..., None], labels, names, {"patient": patients} if by_patient else None)
  idx = split_entries(entries, seed, digests=digests,
                      val_fraction=_option(data_config, "val_fraction", VAL_FRACTION),
                      test_fraction=_option(data_config, "test_fraction", TEST_FRACTION))
  for name in SPLITS:
    depth = checks.RangeReport()
    for i in idx[name]:
      if full_scale[i] > 255:
        depth.add(entries[i].path, peak[i], full_scale[i])
    depth.warn(f"{root}: {name}")
  train, val, test = (full.take(idx[k]) for k in ("train", "val", "test"))
  train = capped(train, _option(data_config, "max_train", None), seed)
  test = capped(test, _option(data_config, "max_test", None), seed)
  kind = "as in its split column" if entries[0].split else \
      "by patient" if by_patient else "by image"
  source = (f"embedded synthetic hip X-rays, {len(entries)} images" if synthetic else root) + \
      f" ({'cropped' if crop else 'full image'}, split {kind})"
  for name, split in (("train", train), ("test", test)):
    check_both_classes(split, f"{source}: {name} split")
  if len(val) and min(val.class_counts) == 0:
    log.warning("%s: the validation split has one class only (%d images): too few images or "
                "patients for val_fraction", source, len(val))
  dataset = Dataset(f"hip{size}_{'crop' if crop else 'full'}", train=train, test=test,
                    val=val if len(val) else None, synthetic=synthetic, source=source)
  return dataset
