"""Raw LUNA16 layout -> labelled patch splits: options, splits, sampling and the cache."""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import logging
import os
import re

import numpy as np

from medjax.data.base import DataError, Split, cache_dir
from medjax.data.luna16 import npz, pool
from medjax.data.luna16.mhd import data_file
from medjax.data.luna16.patches import HU_WINDOW, dihedral
from medjax.data.luna16.tables import Table, read_candidates

log = logging.getLogger(__name__)

VERSION = 2
CANDIDATE_FILES = {"v1": "candidates.csv", "v2": "candidates_V2.csv"}
SPLIT_MODES = ("scan", "random")
_SUBSET = re.compile(r"subset(\d+)$")


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


def _candidates_path(root: str, version: str) -> str:
  if version not in CANDIDATE_FILES:
    raise DataError(f"unknown candidates version {version!r}; known: {', '.join(CANDIDATE_FILES)}")
  return os.path.join(root, CANDIDATE_FILES[version])


def _file_stamp(path: str | None):
  """(path, size, mtime in ns) of a file; None for a missing one."""
  if path is None or not os.path.isfile(path):
    return [path, None]
  st = os.stat(path)
  return [os.path.realpath(path), st.st_size, st.st_mtime_ns]


def cache_key(root: str, options: Options, cand_path: str,
              scans: dict[str, tuple[int, str]]) -> str:
  """Hash of the options and of every input file (the CSV, each .mhd and its data file)."""
  files = [_file_stamp(cand_path)]
  for _, mhd in sorted(scans.values(), key=lambda s: s[1]):
    files += [_file_stamp(mhd), _file_stamp(data_file(mhd))]
  src = json.dumps({"v": VERSION, "root": os.path.realpath(root),
                    "options": dataclasses.asdict(options), "files": files},
                   sort_keys=True, default=str)
  return hashlib.sha256(src.encode()).hexdigest()[:16]


def prepare(root: str, options: Options = Options(), *, workers: int = 0,
            cache: bool = True) -> dict[str, Split]:
  """Raw LUNA16 layout -> {"train", "val"?, "test"} patch splits (see the package docstring).

  workers: processes (0: up to 8, one per core); cache: keep the result as an .npz in the medjax
  cache dir, keyed on the options and on the size and time of every input file.
  """
  if not os.path.isdir(root):
    raise DataError(f"data dir does not exist: {root}")
  if options.slices < 1 or options.slices % 2 == 0:
    raise DataError(f"slices must be odd and >= 1 (the centre slice in the middle), "
                    f"got {options.slices}")
  if not options.hu_window[1] > options.hu_window[0]:
    raise DataError(f"HU window must be LO,HI with HI > LO, got {tuple(options.hu_window)}")
  cand_path = _candidates_path(root, options.candidates)
  scans = find_scans(root)
  if not scans:
    raise DataError(f"{root}: no subset*/<seriesuid>.mhd volumes")
  path = os.path.join(cache_dir(),
                      f"luna16_prepared_{cache_key(root, options, cand_path, scans)}.npz")
  if cache and os.path.exists(path):
    try:
      return npz.load_splits(path)
    except DataError as e:  # a damaged cache is rebuilt, never trusted
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
    npz.save_splits(path, splits)
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
    tasks.append(pool.ScanTask(scans[uids[sel[0]]][1], table.world[rows[sel]], shift[sel],
                               options.size, options.slices, tuple(options.hu_window)))
    slots.append(sel)
  if workers <= 0:
    workers = min(os.cpu_count() or 1, 8, len(tasks))
  log.info("luna16: cutting %d patches from %d scans with %d worker(s)", len(rows), len(tasks),
           workers)
  images = np.empty((len(rows), options.size, options.size, options.slices), np.uint8)
  inside = np.ones(len(rows), bool)
  for sel, (patches, ins, _) in zip(slots, pool.run_tasks(tasks, workers)):
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
