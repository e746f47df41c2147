"""The LUNA16 CSV files: candidates, annotations and seriesuid lists.

`read_csv` reads any CSV with a header and named columns (UTF-8, with or without Excel's
byte-order mark); each bad row is named by file and line.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
from typing import Any, Callable, Mapping

import numpy as np

from medjax.data.base import DataError

CANDIDATE_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "class")
ANNOTATION_COLUMNS = ("seriesuid", "coordX", "coordY", "coordZ", "diameter_mm")
MAX_REPORTED_ROWS = 5

# A field parser: (text, column name) -> value; a ValueError says what is wrong.
Parser = Callable[[str, str], Any]


def text(field: str, column: str) -> str:
  """A non-empty string (stripped)."""
  field = field.strip()
  if not field:
    raise ValueError(f"empty {column}")
  return field


def number(field: str, column: str) -> float:
  """A finite float."""
  value = float(field)
  if not math.isfinite(value):
    raise ValueError(f"{column} must be finite, got {field.strip()!r}")
  return value


def nonnegative(field: str, column: str) -> float:
  """A finite float >= 0 (a diameter)."""
  value = _float_or_nan(field)
  if not (math.isfinite(value) and value >= 0):
    raise ValueError(f"{column} must be a finite number >= 0, got {field.strip()!r}")
  return value


def diameter(field: str, column: str) -> float:
  """A nodule's diameter: a finite number > 0 mm (0 or less: no mark could hit it)."""
  value = _float_or_nan(field)
  if not (math.isfinite(value) and value > 0):
    raise ValueError(f"{column} must be a finite number > 0 (mm), got {field.strip()!r}")
  return value


def excluded_diameter(field: str, column: str) -> float:
  """An excluded finding's diameter: > 0 mm, or negative for an unknown size (the challenge's
  annotations_excluded.csv writes -1; it is scored as 10 mm). 0 would exclude nothing."""
  value = _float_or_nan(field)
  if not (math.isfinite(value) and value != 0):
    raise ValueError(f"{column} must be a finite number > 0 (mm) or negative (unknown: 10 mm), "
                     f"got {field.strip()!r}")
  return value


def _float_or_nan(field: str) -> float:
  try:
    return float(field)
  except ValueError:
    return math.nan


def binary(field: str, column: str) -> int:
  """A 0/1 label."""
  if field.strip() not in ("0", "1"):
    raise ValueError(f"{column} must be 0 or 1, got {field.strip()!r}")
  return int(field)


def _open_text(path: str, what: str):
  if not os.path.isfile(path):
    raise DataError(f"missing {what}: {path}")
  return open(path, newline="", encoding="utf-8-sig")  # utf-8-sig: drops Excel's BOM


def _unreadable(path: str, e) -> DataError:
  return DataError(f"{path}: not a UTF-8 CSV text file ({e}); save it as 'CSV UTF-8'")


def read_csv(path: str, columns: Mapping[str, Parser], *,
             what: str = "CSV file") -> dict[str, list]:
  """Reads `columns` (name -> parser) of a CSV with a header; extra columns are ignored.

  Returns one list per column, one entry per non-blank data row. DataError for a missing file
  (`missing <what>: path`), text that is not UTF-8, missing columns, or bad rows (up to
  MAX_REPORTED_ROWS shown as `path:line: reason: row`).
  """
  try:
    with _open_text(path, what) as f:
      return _read_rows(path, csv.reader(f), columns)
  except (UnicodeDecodeError, csv.Error) as e:
    raise _unreadable(path, e) from None


def _read_rows(path, reader, columns):
  header = [h.strip() for h in next(reader, [])]
  if any("\x00" in h for h in header):
    raise _unreadable(path, "NUL characters: UTF-16?")
  missing = [c for c in columns if c not in header]
  if missing:
    hint = "; it looks semicolon-separated: save it comma-separated" if len(header) == 1 and \
        ";" in header[0] else ""
    raise DataError(f"{path}: missing column(s) {', '.join(missing)}; header is {header}, "
                    f"expected {','.join(columns)}{hint}")
  index = {c: header.index(c) for c in columns}
  out = {c: [] for c in columns}
  bad = []
  for lineno, fields in enumerate(reader, 2):
    if not fields:
      continue
    try:
      if len(fields) != len(header):
        raise ValueError(f"{len(fields)} fields, header has {len(header)}")
      row = {c: parse(fields[index[c]], c) for c, parse in columns.items()}
    except ValueError as e:
      bad.append(f"{path}:{lineno}: {e}: {','.join(fields)!r}")
      continue
    for c, value in row.items():
      out[c].append(value)
  if bad:
    more = f" (and {len(bad) - MAX_REPORTED_ROWS} more)" if len(bad) > MAX_REPORTED_ROWS else ""
    raise DataError(f"{len(bad)} bad row(s) in {path}{more}:\n  " +
                    "\n  ".join(bad[:MAX_REPORTED_ROWS]))
  return out


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
  """Reads seriesuid, 3 world coordinates and a class (`class`) or diameter column."""
  uid, x, y, z, value = columns
  parsers = {uid: text, x: number, y: number, z: number,
             value: binary if value == "class" else nonnegative}
  cols = read_csv(path, parsers, what="LUNA16 file")
  n = len(cols[uid])
  return Table(np.asarray(cols[uid], dtype=str),
               np.asarray([cols[x], cols[y], cols[z]], np.float64).T.reshape(n, 3),
               np.asarray(cols[value], np.int32 if value == "class" else np.float64),
               np.arange(n, dtype=np.int64))


def read_candidates(path: str) -> Table:
  """candidates.csv (V1) or candidates_V2.csv: value = class 0/1."""
  return read_table(path, CANDIDATE_COLUMNS)


def read_annotations(path: str) -> Table:
  """annotations.csv or annotations_excluded.csv: value = diameter_mm."""
  return read_table(path, ANNOTATION_COLUMNS)


def read_seriesuids(path: str) -> list[str]:
  """seriesuids.csv: one seriesuid per line (first field), with or without a header."""
  try:
    with _open_text(path, "seriesuid list") as f:
      uids = [fields[0].strip() for fields in csv.reader(f) if fields and fields[0].strip()]
  except (UnicodeDecodeError, csv.Error) as e:
    raise _unreadable(path, e) from None
  return uids[1:] if uids[:1] == ["seriesuid"] else uids
