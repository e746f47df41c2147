"""Raw LUNA16 CT volumes (.mhd/.raw) to labelled axial patches, split by scan or by candidate.

Layout (see DESIGN.md): `subset0..subset9/<seriesuid>.mhd|.raw`, `candidates.csv` (V1) or
`candidates_V2.csv` (seriesuid,coordX,coordY,coordZ,class), `annotations.csv`
(seriesuid,coordX,coordY,coordZ,diameter_mm). Coordinates are world millimetres (x, y, z);
volumes are arrays [z, y, x] with physical = origin + D @ (spacing * index), D the direction
matrix (columns are the image axes; some scans are flipped).

Pipeline: CSV -> split (by scan: fold k tests on subset k; or the paper's leaky random split by
candidate) -> seeded negative subsampling per split -> one read per volume, all its candidates
cut in that pass, scans in parallel processes -> HU window -> uint8 patches [N, size, size,
slices] -> optional augmented copies of the training positives. Every patch keeps its seriesuid,
world coordinates and candidate row (`Split.meta`) for FROC scoring. The result can be saved as
an .npz that loads with numpy alone (GPU machines without SimpleITK).

Volumes are read with SimpleITK (imported only there), or with a numpy MetaImage reader where
it is missing.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import glob
import hashlib
import json
import logging
import math
import multiprocessing
import os
import re
import sys
import time
from concurrent import futures

import numpy as np

from medjax.data.base import DataError, Split, cache_dir, save_npz_atomic

log = logging.getLogger(__name__)

VERSION = 2
CANDIDATE_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "class")
ANNOTATION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
CANDIDATE_FILES = {"v1": "candidates.csv", "v2": "candidates_V2.csv"}
HU_WINDOW = (-1000.0, 400.0)
SPLIT_MODES = ("scan", "random")
META_KEYS = ("seriesuid", "world", "row", "augmented")
_SUBSET = re.compile(r"subset(\d+)$")
_MET_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4,
              "MET_UINT": 4, "MET_FLOAT": 4, "MET_LONG": 8, "MET_ULONG": 8, "MET_DOUBLE": 8}


# --- CSV tables ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Table:
  """Rows of a LUNA16 CSV. world: [N, 3] (x, y, z) mm; value: class (int) or diameter (mm);
  row: 0-based data row in the file (the <n> of the paper's `image_<n>.jpg`)."""
  seriesuid: np.ndarray
  world: np.ndarray
  value: np.ndarray
  row: np.ndarray

  def __len__(self) -> int:
    return len(self.row)


def read_table(path: str, columns: tuple[str, ...]) -> Table:
  """Reads a LUNA16 CSV with `columns` (extra columns ignored); DataError names bad rows."""
  try:
    return _read_table(path, columns)
  except (UnicodeDecodeError, csv.Error) as e:
    raise DataError(f"{path}: not a readable CSV text file ({e})") from None


def _read_table(path: str, columns: tuple[str, ...]) -> Table:
  if not os.path.isfile(path):
    raise DataError(f"missing LUNA16 file: {path}")
  kind = columns[-1]
  uids, world, values, bad = [], [], [], []
  with open(path, newline="") as f:
    reader = csv.reader(f)
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in columns if c not in header]
    if missing:
      raise DataError(f"{path}: missing column(s) {', '.join(missing)}; header is {header}, "
                      f"expected {','.join(columns)}")
    cols = [header.index(c) for c in columns]
    width = len(header)
    for lineno, fields in enumerate(reader, 2):
      if not fields:
        continue
      try:
        if len(fields) != width:
          raise ValueError(f"{len(fields)} fields, header has {width}")
        uid = fields[cols[0]].strip()
        if not uid:
          raise ValueError("empty seriesuid")
        xyz = [float(fields[c]) for c in cols[1:4]]
        if not all(math.isfinite(v) for v in xyz):
          raise ValueError("non-finite coordinate")
        raw = fields[cols[4]].strip()
        if kind == "class":
          if raw not in ("0", "1"):
            raise ValueError(f"class must be 0 or 1, got {raw!r}")
          value = int(raw)
        else:
          value = float(raw)
          if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{kind} must be a finite number >= 0, got {raw!r}")
      except ValueError as e:
        bad.append(f"{path}:{lineno}: {e}: {','.join(fields)!r}")
        continue
      uids.append(uid)
      world.append(xyz)
      values.append(value)
  if bad:
    more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
    raise DataError(f"{len(bad)} bad row(s) in {path}{more}:\n  " + "\n  ".join(bad[:5]))
  return Table(np.asarray(uids, dtype=str), np.asarray(world, np.float64).reshape(-1, 3),
               np.asarray(values, np.int32 if kind == "class" else np.float64),
               np.arange(len(uids), dtype=np.int64))


def read_candidates(path: str) -> Table:
  """candidates.csv (V1) or candidates_V2.csv: value = class 0/1."""
  return read_table(path, CANDIDATE_COLUMNS)


def read_annotations(path: str) -> Table:
  """annotations.csv or annotations_excluded.csv: value = diameter_mm."""
  return read_table(path, ANNOTATION_COLUMNS)


# --- geometry --------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Geometry:
  """Where a volume lies in world space; `shape` is the array shape [z, y, x]."""
  origin: np.ndarray     # (3,) x, y, z mm
  spacing: np.ndarray    # (3,) mm per voxel along the image axes i, j, k
  direction: np.ndarray  # (3, 3), columns are the image axes in world coordinates
  shape: tuple[int, int, int] = (0, 0, 0)

  def world_to_index(self, world) -> np.ndarray:
    """Continuous (i, j, k) = (x, y, z) image index of world points [..., 3]: D^-1 (p - o) / s."""
    p = np.asarray(world, np.float64) - self.origin
    return np.linalg.solve(self.direction, p.reshape(-1, 3).T).T.reshape(p.shape) / self.spacing

  def index_to_world(self, index) -> np.ndarray:
    return self.origin + (np.asarray(index, np.float64) * self.spacing) @ self.direction.T

  def world_to_voxel(self, world) -> np.ndarray:
    """Nearest voxel as array indices [..., (z, y, x)] (int64, may lie outside the volume).

    Rounds half up like SimpleITK's TransformPhysicalPointToIndex.
    """
    return np.floor(self.world_to_index(world) + 0.5).astype(np.int64)[..., ::-1]


def _read_header(mhd_path: str) -> dict[str, str]:
  try:
    with open(mhd_path, errors="replace") as f:
      return {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in f) if _}
  except FileNotFoundError:
    raise DataError(f"missing volume header: {mhd_path}") from None


def check_raw_file(mhd_path: str) -> None:
  """Clear errors for a missing, truncated or mis-described .raw before SimpleITK sees it."""
  header = _read_header(mhd_path)
  data_file = header.get("ElementDataFile", "")
  if not data_file or data_file == "LOCAL" or " " in data_file or data_file.startswith("LIST"):
    return
  raw = os.path.join(os.path.dirname(mhd_path), data_file)
  if not os.path.isfile(raw):
    raise DataError(f"{mhd_path}: data file {data_file} is missing")
  if header.get("CompressedData", "False").lower() == "true":
    return
  try:
    dims = [int(v) for v in header["DimSize"].split()]
    channels = int(header.get("ElementNumberOfChannels", "1"))
    expected = math.prod(dims) * channels * _MET_BYTES[header["ElementType"]]
  except (KeyError, ValueError):
    raise DataError(f"{mhd_path}: bad MetaImage header (DimSize/ElementType)") from None
  actual = os.path.getsize(raw)
  if actual < expected:
    raise DataError(f"{raw} is truncated: {actual:,} bytes, expected {expected:,} for DimSize "
                    f"{header['DimSize']} of {header['ElementType']}")
  if actual > expected and "HeaderSize" not in header:
    raise DataError(f"{raw} has {actual:,} bytes but the header describes {expected:,} (DimSize "
                    f"{header['DimSize']} of {header['ElementType']}): wrong size or element type")


_MET_DTYPES = {"MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2",
               "MET_INT": "i4", "MET_UINT": "u4", "MET_FLOAT": "f4", "MET_LONG": "i8",
               "MET_ULONG": "u8", "MET_DOUBLE": "f8"}


def read_metaimage(mhd_path: str) -> tuple[np.ndarray, Geometry]:
  """numpy-only reader for an uncompressed 3-D MetaImage with one data file (LUNA16's form)."""
  check_raw_file(mhd_path)
  h = _read_header(mhd_path)
  try:
    nx, ny, nz = (int(v) for v in h["DimSize"].split())
    dtype = np.dtype(_MET_DTYPES[h["ElementType"]]).newbyteorder(
        ">" if h.get("BinaryDataByteOrderMSB", h.get("ElementByteOrderMSB", "False")) == "True"
        else "<")
    origin = np.array([float(v) for v in h.get("Offset", h.get("Origin", "0 0 0")).split()])
    spacing = np.array([float(v) for v in h.get("ElementSpacing", "1 1 1").split()])
    # TransformMatrix lists the direction matrix column by column (ITK's convention).
    direction = np.array([float(v) for v in h.get("TransformMatrix", "1 0 0 0 1 0 0 0 1")
                          .split()]).reshape(3, 3).T
  except (KeyError, ValueError):
    raise DataError(f"{mhd_path}: unsupported MetaImage header (needs a 3-D DimSize, "
                    f"ElementType in {', '.join(_MET_DTYPES)})") from None
  if h.get("CompressedData", "False") == "True" or h.get("ElementDataFile") in (None, "LOCAL"):
    raise DataError(f"{mhd_path}: compressed or header-embedded data needs SimpleITK")
  raw = os.path.join(os.path.dirname(mhd_path), h["ElementDataFile"])
  array = np.fromfile(raw, dtype, count=nx * ny * nz, offset=max(int(h.get("HeaderSize", 0)), 0))
  return array.reshape(nz, ny, nx).astype(dtype.newbyteorder("="), copy=False), \
      Geometry(origin, spacing, direction, (nz, ny, nx))


def write_metaimage(mhd_path: str, array: np.ndarray, origin, spacing, direction) -> None:
  """Writes array [z, y, x] as `mhd_path` + a .raw file next to it (uncompressed, LSB)."""
  code = {v: k for k, v in _MET_DTYPES.items()}[np.dtype(array.dtype).str[1:]]
  raw = os.path.splitext(os.path.basename(mhd_path))[0] + ".raw"
  fmt = lambda values: " ".join(repr(float(v)) for v in values)  # noqa: E731
  header = {"ObjectType": "Image", "NDims": "3", "BinaryData": "True",
            "BinaryDataByteOrderMSB": "False", "CompressedData": "False",
            "TransformMatrix": fmt(np.asarray(direction, np.float64).T.ravel()),
            "Offset": fmt(origin), "CenterOfRotation": "0 0 0", "ElementSpacing": fmt(spacing),
            "DimSize": " ".join(str(n) for n in array.shape[::-1]), "ElementType": code,
            "ElementDataFile": raw}
  np.ascontiguousarray(array, array.dtype.newbyteorder("<")).tofile(
      os.path.join(os.path.dirname(mhd_path), raw))
  with open(mhd_path, "w") as f:
    f.write("".join(f"{k} = {v}\n" for k, v in header.items()))


def read_volume(mhd_path: str) -> tuple[np.ndarray, Geometry]:
  """The volume as an array [z, y, x] (HU, int16 for LUNA16) and its geometry.

  Read with SimpleITK; without it (JAX-only machines), with `read_metaimage`.
  """
  try:
    import SimpleITK as sitk
  except ImportError:
    return read_metaimage(mhd_path)
  check_raw_file(mhd_path)
  try:
    image = sitk.ReadImage(mhd_path)
  except RuntimeError as e:
    lines = [l for l in str(e).splitlines() if l.strip()]
    raise DataError(f"SimpleITK cannot read {mhd_path}: {lines[-1] if lines else e}") from None
  if image.GetDimension() != 3:
    raise DataError(f"{mhd_path}: expected a 3-D volume, got {image.GetDimension()}-D")
  array = sitk.GetArrayFromImage(image)
  geometry = Geometry(np.asarray(image.GetOrigin()), np.asarray(image.GetSpacing()),
                      np.asarray(image.GetDirection()).reshape(3, 3), array.shape)
  return array, geometry


# --- patches ---------------------------------------------------------------------------------

def window_hu(hu: np.ndarray, window=HU_WINDOW) -> np.ndarray:
  """Clips to the HU window [lo, hi] and scales to [0, 1] (float32)."""
  lo, hi = window
  if not hi > lo:
    raise ValueError(f"HU window must have hi > lo, got {window}")
  return np.clip((np.asarray(hu, np.float32) - lo) / (hi - lo), 0.0, 1.0)


def to_uint8(unit: np.ndarray) -> np.ndarray:
  return np.round(unit * 255).astype(np.uint8)


def cut_patches(volume: np.ndarray, centres: np.ndarray, size: int = 50, slices: int = 1,
                pad_value=-1000) -> tuple[np.ndarray, np.ndarray]:
  """Axial patches [N, size, size, slices] around voxel centres [N, (z, y, x)].

  The centre voxel lands at row/column size // 2 and the middle channel; what falls outside
  the volume is `pad_value` (air). Also returns, per patch, whether its centre is inside.
  """
  centres = np.asarray(centres, np.int64).reshape(-1, 3)
  out = np.full((len(centres), slices, size, size), pad_value, volume.dtype)
  lo = centres - np.array([slices // 2, size // 2, size // 2])
  hi = lo + np.array([slices, size, size])
  src_lo = np.maximum(lo, 0)
  src_hi = np.minimum(hi, volume.shape)
  for n in range(len(centres)):
    (z0, y0, x0), (z1, y1, x1) = src_lo[n], src_hi[n]
    if z1 > z0 and y1 > y0 and x1 > x0:
      dz, dy, dx = src_lo[n] - lo[n]
      out[n, dz:dz + z1 - z0, dy:dy + y1 - y0, dx:dx + x1 - x0] = volume[z0:z1, y0:y1, x0:x1]
  inside = np.all((centres >= 0) & (centres < np.array(volume.shape)), axis=1)
  return out.transpose(0, 2, 3, 1), inside


@dataclasses.dataclass(frozen=True)
class ScanTask:
  """All the candidates to cut from one volume (picklable, for worker processes)."""
  path: str
  world: np.ndarray        # [K, 3] x, y, z mm
  shift: np.ndarray        # [K, 2] (dy, dx) voxel offsets (augmented copies), else zeros
  size: int = 50
  slices: int = 1
  window: tuple[float, float] = HU_WINDOW


def process_scan(task: ScanTask) -> tuple[np.ndarray, np.ndarray, int]:
  """One read of the volume -> uint8 patches [K, size, size, slices], centre-inside flags,
  bytes of volume read."""
  volume, geometry = read_volume(task.path)
  centres = geometry.world_to_voxel(task.world)
  centres[:, 1:] += task.shift
  patches, inside = cut_patches(volume, centres, task.size, task.slices, pad_value=task.window[0])
  return to_uint8(window_hu(patches, task.window)), inside, volume.nbytes


def _eta(seconds: float) -> str:
  seconds = int(seconds)
  return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else \
      f"{seconds // 60}m{seconds % 60:02d}s"


def run_tasks(tasks: list[ScanTask], workers: int = 1, *, log_every: float = 5.0) -> list:
  """process_scan over tasks in order, in `workers` processes with at most 2 x workers volumes
  in flight (bounded memory); logs scans done, candidates/s, MB/s and ETA."""
  total_cands = sum(len(t.world) for t in tasks)
  results: list = [None] * len(tasks)
  t0 = last = time.perf_counter()
  done = cands = nbytes = 0

  def report(force=False):
    nonlocal last
    now = time.perf_counter()
    if force or now - last >= log_every:
      last, rate = now, cands / max(now - t0, 1e-9)
      log.info("luna16: %d/%d scans, %d/%d candidates, %.0f candidates/s, %.0f MB/s read, ETA %s",
               done, len(tasks), cands, total_cands, rate, nbytes / 1e6 / max(now - t0, 1e-9),
               _eta((total_cands - cands) / max(rate, 1e-9)))

  def finish(i, result):
    nonlocal done, cands, nbytes
    results[i] = result
    done, cands, nbytes = done + 1, cands + len(tasks[i].world), nbytes + result[2]
    report()

  if workers <= 1:
    for i, task in enumerate(tasks):
      finish(i, process_scan(task))
  else:
    # fork starts fast and needs no `if __name__ == "__main__"` guard, but not under JAX's
    # threads: then spawn.
    ctx = multiprocessing.get_context("spawn" if "jax" in sys.modules else "fork")
    with futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
      pending, queue = {}, iter(enumerate(tasks))
      for i, task in queue:
        pending[pool.submit(process_scan, task)] = i
        if len(pending) >= 2 * workers:
          break
      while pending:
        finished, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
        for fut in finished:
          finish(pending.pop(fut), fut.result())
          nxt = next(queue, None)
          if nxt is not None:
            pending[pool.submit(process_scan, nxt[1])] = nxt[0]
  report(force=True)
  return results


# --- scans, splits, sampling ----------------------------------------------------------------

def find_scans(root: str) -> dict[str, tuple[int, str]]:
  """seriesuid -> (subset number, .mhd path) for `root/subset*/*.mhd`."""
  scans = {}
  for folder in sorted(glob.glob(os.path.join(root, "subset*"))):
    m = _SUBSET.search(os.path.basename(folder))
    if not (m and os.path.isdir(folder)):
      continue
    for path in sorted(glob.glob(os.path.join(folder, "*.mhd"))):
      scans[os.path.basename(path)[:-4]] = (int(m.group(1)), path)
  return scans


def is_raw_layout(root: str) -> bool:
  return bool(glob.glob(os.path.join(root, "candidates*.csv"))) and \
      any(os.path.isdir(p) for p in glob.glob(os.path.join(root, "subset*")))


def assign_splits(uids: np.ndarray, labels: np.ndarray, subsets: np.ndarray, *, mode: str,
                  fold: int, test_fraction: float, val_fraction: float, seed: int) -> np.ndarray:
  """Split name ("train", "val", "test") per candidate.

  mode "scan": test = subset `fold`; val = `val_fraction` of the remaining scans (whole scans).
  mode "random": the paper's split, random by candidate (stratified). Leaky: candidates of the
  same scan, even of the same nodule, land in train and test.
  """
  rng = np.random.default_rng([seed, 0x1A6])
  out = np.full(len(uids), "train", dtype="<U5")
  if mode == "scan":
    present = sorted(set(subsets.tolist()))
    if fold not in present:
      raise DataError(f"fold {fold} tests on subset{fold}, which has no scans; present: "
                      f"{', '.join(f'subset{s}' for s in present)}")
    out[subsets == fold] = "test"
    train_uids = np.unique(uids[subsets != fold])
    if val_fraction > 0 and len(train_uids) > 1:
      n_val = max(1, round(val_fraction * len(train_uids)))
      out[np.isin(uids, rng.permutation(train_uids)[:n_val])] = "val"
  elif mode == "random":
    log.warning("luna16: random split by candidate (the paper's protocol) is LEAKY: the same "
                "scan and nodule appear in train and test")
    for cls in (0, 1):
      idx = rng.permutation(np.flatnonzero(labels == cls))
      n_test = round(test_fraction * len(idx))
      n_val = round(val_fraction * (len(idx) - n_test))
      out[idx[:n_test]] = "test"
      out[idx[n_test:n_test + n_val]] = "val"
  else:
    raise DataError(f"unknown split mode {mode!r}; known: {', '.join(SPLIT_MODES)}")
  return out


def subsample_negatives(labels: np.ndarray, ratio: float, rng) -> np.ndarray:
  """Sorted indices: every positive and at most ratio x as many negatives (ratio 0: all)."""
  pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
  if ratio > 0 and len(neg) > ratio * len(pos):
    neg = rng.choice(neg, size=int(round(ratio * len(pos))), replace=False)
  return np.sort(np.concatenate([pos, neg]))


def dihedral(images: np.ndarray, k: np.ndarray) -> np.ndarray:
  """Applies dihedral transform k (0..7: rot90 by k % 4, then a left-right flip if k >= 4)."""
  out = images.copy()
  for n, kn in enumerate(np.asarray(k)):
    img = np.rot90(images[n], kn % 4, axes=(0, 1))
    out[n] = img[:, ::-1] if kn >= 4 else img
  return out


# --- the whole pipeline ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Options:
  """What `prepare` makes; see medjax/config.py `data` for the meaning of each field."""
  candidates: str = "v1"
  split: str = "scan"
  fold: int = 0
  test_fraction: float = 0.2
  val_fraction: float = 0.1
  neg_ratio: float = 5.0
  test_neg_ratio: float = 5.0
  augment_positives: int = 0
  augment_shift: int = 3
  size: int = 50
  slices: int = 1
  hu_window: tuple[float, float] = HU_WINDOW
  seed: int = 0

  @classmethod
  def from_config(cls, data_config, seed: int) -> "Options":
    return cls(candidates=data_config.candidates, split=data_config.split,
               fold=data_config.fold, test_fraction=data_config.test_fraction,
               val_fraction=data_config.val_fraction, neg_ratio=data_config.neg_ratio,
               test_neg_ratio=data_config.test_neg_ratio,
               augment_positives=data_config.augment_positives,
               augment_shift=data_config.augment_shift, size=data_config.image_size,
               slices=data_config.slices,
               hu_window=tuple(float(v) for v in data_config.hu_window), seed=seed)


def _candidates_path(root: str, version: str) -> str:
  if version not in CANDIDATE_FILES:
    raise DataError(f"unknown candidates version {version!r}; known: {', '.join(CANDIDATE_FILES)}")
  return os.path.join(root, CANDIDATE_FILES[version])


def prepare(root: str, options: Options = Options(), *, workers: int = 0,
            cache: bool | str = True) -> dict[str, Split]:
  """Raw LUNA16 layout -> {"train", "val"?, "test"} patch splits (see the module docstring).

  workers: processes (0: up to 8, one per core); cache: True (keyed .npz in the medjax cache
  dir), False, or an .npz path.
  """
  if not os.path.isdir(root):
    raise DataError(f"data dir does not exist: {root}")
  if options.slices < 1 or options.slices % 2 == 0:
    raise DataError(f"slices must be odd and >= 1 (the centre slice in the middle), "
                    f"got {options.slices}")
  cand_path = _candidates_path(root, options.candidates)
  scans = find_scans(root)
  if not scans:
    raise DataError(f"{root}: no subset*/<seriesuid>.mhd volumes")
  stat = os.stat(cand_path) if os.path.exists(cand_path) else None
  key_src = json.dumps({"v": VERSION, "root": os.path.realpath(root), "options":
                        dataclasses.asdict(options), "csv": stat and [stat.st_size, stat.st_mtime],
                        "scans": sorted(scans)}, sort_keys=True, default=str)
  path = cache if isinstance(cache, str) else os.path.join(
      cache_dir(), f"luna16_prepared_{hashlib.sha256(key_src.encode()).hexdigest()[:16]}.npz")
  if cache and os.path.exists(path):
    try:
      return load_splits(path)
    except Exception as e:  # a damaged cache is rebuilt, never trusted
      log.warning("ignoring unreadable cache %s (%s); rebuilding", path, e)

  table = read_candidates(cand_path)
  have = np.isin(table.seriesuid, list(scans))
  if not have.all():
    missing = np.unique(table.seriesuid[~have])
    log.info("luna16: skipping %d candidates of %d scans not under %s/subset*", (~have).sum(),
             len(missing), root)
  idx = np.flatnonzero(have)
  uids, labels = table.seriesuid[idx], table.value[idx]
  subsets = np.asarray([scans[u][0] for u in uids], np.int64)
  where = assign_splits(uids, labels, subsets, mode=options.split, fold=options.fold,
                        test_fraction=options.test_fraction, val_fraction=options.val_fraction,
                        seed=options.seed)
  # Per split: candidate index into `table`, dihedral k, (dy, dx) shift, augmented flag.
  plan = {}
  for i, name in enumerate(("train", "val", "test")):
    members = np.flatnonzero(where == name)
    if not len(members):
      continue
    ratio = options.neg_ratio if name == "train" else options.test_neg_ratio
    rng = np.random.default_rng([options.seed, 0x5E1, i])  # one stream per split
    keep = idx[members[subsample_negatives(labels[members], ratio, rng)]]
    n = len(keep)
    k, shift, aug = np.zeros(n, np.int64), np.zeros((n, 2), np.int64), np.zeros(n, bool)
    if name == "train" and options.augment_positives > 0:  # after the split: train only
      pos = np.repeat(keep[table.value[keep] == 1], options.augment_positives)
      s = options.augment_shift
      keep = np.concatenate([keep, pos])
      k = np.concatenate([k, rng.integers(1, 8, len(pos))])
      shift = np.concatenate([shift, rng.integers(-s, s + 1, (len(pos), 2))])
      aug = np.concatenate([aug, np.ones(len(pos), bool)])
    plan[name] = (keep, k, shift, aug)

  all_rows = np.concatenate([p[0] for p in plan.values()])
  all_shift = np.concatenate([p[2] for p in plan.values()])
  images = extract(table, all_rows, scans, options, shift=all_shift, workers=workers)
  splits, start = {}, 0
  for name, (keep, k, shift, aug) in plan.items():
    imgs = images[start:start + len(keep)]
    start += len(keep)
    if aug.any():
      imgs = dihedral(imgs, k)
    names = np.asarray([f"{table.seriesuid[r]}/{table.row[r]}" + (f"~{j}" if a else "")
                        for j, (r, a) in enumerate(zip(keep, aug))])
    meta = {"seriesuid": table.seriesuid[keep], "world": table.world[keep],
            "row": table.row[keep], "augmented": aug}
    splits[name] = Split(imgs, table.value[keep].astype(np.int32), names, meta)
  if cache:
    save_splits(path, splits)
    log.info("luna16: cached patches in %s", path)
  return splits


def extract(table: Table, rows: np.ndarray, scans: dict[str, tuple[int, str]],
            options: Options = Options(), *, shift: np.ndarray | None = None,
            workers: int = 0) -> np.ndarray:
  """uint8 patches [len(rows), size, size, slices] of the candidates `table[rows]`, each volume
  read once (one task per scan, `workers` processes; 0: one per core, up to 8)."""
  rows = np.asarray(rows, np.int64)
  shift = np.zeros((len(rows), 2), np.int64) if shift is None else np.asarray(shift, np.int64)
  uids = table.seriesuid[rows]
  order = np.lexsort((rows, uids))
  bounds = np.flatnonzero(np.r_[True, uids[order][1:] != uids[order][:-1], True])
  tasks, slots = [], []
  for a, b in zip(bounds[:-1], bounds[1:]):
    sel = order[a:b]
    tasks.append(ScanTask(scans[uids[sel[0]]][1], table.world[rows[sel]], shift[sel],
                          options.size, options.slices, tuple(options.hu_window)))
    slots.append(sel)
  if workers <= 0:
    workers = min(os.cpu_count() or 1, 8, len(tasks))
  log.info("luna16: cutting %d patches from %d scans with %d worker(s)", len(rows), len(tasks),
           workers)
  images = np.empty((len(rows), options.size, options.size, options.slices), np.uint8)
  inside = np.ones(len(rows), bool)
  for sel, (patches, ins, _) in zip(slots, run_tasks(tasks, workers)):
    images[sel], inside[sel] = patches, ins
  outside = ~inside & (shift == 0).all(1)
  if outside.any():  # a coordinate or CSV error: stop before training on padding
    bad = rows[outside]
    sample = "; ".join(f"row {r} ({table.seriesuid[r]}, world {np.round(table.world[r], 1)})"
                       for r in bad[:3])
    raise DataError(f"luna16: {len(bad)} candidate(s) lie outside their volume: {sample}")
  if not inside.all():
    log.warning("luna16: %d shifted copies of border candidates are centred outside their "
                "volume (padded)", (~inside).sum())
  return images



def save_splits(path: str, splits: dict[str, Split]) -> None:
  """Saves patch splits (images, labels, names, meta) as one .npz (written atomically)."""
  arrays = {}
  for name, split in splits.items():
    arrays.update({f"{name}/images": split.images, f"{name}/labels": split.labels,
                   f"{name}/names": split.names})
    arrays.update({f"{name}/meta/{k}": v for k, v in (split.meta or {}).items()})
  save_npz_atomic(path, arrays)


def load_splits(path: str) -> dict[str, Split]:
  """Reads `save_splits` output with numpy alone."""
  try:
    with np.load(path) as z:
      arrays = {k: z[k] for k in z.files}
  except (OSError, ValueError) as e:
    raise DataError(f"cannot read prepared patches {path}: {e}") from None
  splits = {}
  for name in ("train", "val", "test"):
    if f"{name}/images" in arrays:
      meta = {k.rsplit("/", 1)[1]: v for k, v in arrays.items() if k.startswith(f"{name}/meta/")}
      splits[name] = Split(arrays[f"{name}/images"], arrays[f"{name}/labels"],
                           arrays[f"{name}/names"], meta or None)
  if "train" not in splits:
    raise DataError(f"{path}: no train split in the prepared patches")
  return splits


def main(argv=None) -> None:
  """python -m medjax.data.luna16 RAW_DIR OUT.npz [--fold K] ...: prepare patches once."""
  p = argparse.ArgumentParser(description=main.__doc__)
  p.add_argument("root")
  p.add_argument("out")
  defaults = Options()
  for field in dataclasses.fields(Options):
    if field.name != "hu_window":
      p.add_argument(f"--{field.name}", type=type(getattr(defaults, field.name)),
                     default=getattr(defaults, field.name))
  p.add_argument("--hu_window", type=float, nargs=2, default=HU_WINDOW)
  p.add_argument("--workers", type=int, default=0)
  args = vars(p.parse_args(argv))
  root, out, workers = args.pop("root"), args.pop("out"), args.pop("workers")
  args["hu_window"] = tuple(args["hu_window"])
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
  if os.path.exists(out):  # an explicit output is rebuilt, not reused
    os.remove(out)
  splits = prepare(root, Options(**args), workers=workers, cache=out)
  for name, split in splits.items():
    neg, pos = split.class_counts
    print(f"{name}: {len(split)} patches ({pos} positive, {neg} negative)")
  print(f"wrote {out}")


if __name__ == "__main__":
  main()
