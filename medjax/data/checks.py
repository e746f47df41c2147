"""Checks shared by the folder loaders (LUNA16 patches, hip X-rays): the data folder, label-file
encodings, reading an image as it is displayed, duplicates and leakage between splits, and the
bit depth of 16-bit images."""

from __future__ import annotations

import codecs
import collections
import dataclasses
import hashlib
import io
import logging
import os
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from medjax.errors import ConfigError, DataError

log = logging.getLogger(__name__)

EXAMPLES = 3  # examples named per kind of problem
SMALL_RANGE = 1 / 16  # brightest pixel under this fraction of the full scale: warn


# The data folder.

def data_folder(root: str, holding: str) -> str:
  """`root` when it is a folder; else a DataError saying what it is (a file given for the folder
  holding it, or nothing at all). `holding`: what the folder should hold."""
  if os.path.isdir(root):
    return root
  if os.path.exists(root):
    raise DataError(f"{root} is a file; data.dir must be the folder holding {holding}")
  raise DataError(f"data.dir does not exist: {root} (expected the folder holding {holding})")


# Images.

def read_pixels(path: str, bit_depth: int | None = None) -> tuple[np.ndarray, bytes, int, int]:
  """(pixels, the file's bytes, brightest stored value, full scale) of a PNG or JPEG as a viewer
  shows it: EXIF orientation applied (a camera or scanner may store the pixels rotated, and a
  crop box drawn on the displayed image must cut the same region). 8-bit and colour images:
  uint8 [H, W] luminance (full scale 0); 16-bit: float32 in [0, 1] by `full_scale`.

  DataError naming the file for a missing or undecodable file, an image of several frames (an
  animation or a multi-page file: which one was meant?) and an image over Pillow's
  decompression-bomb limit (`PIL.Image.MAX_IMAGE_PIXELS`).
  """
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise DataError(f"listed image is missing: {path}") from None
  except OSError as e:
    raise DataError(f"cannot read image {path}: {e.strerror or e}") from None
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("error", Image.DecompressionBombWarning)
      with Image.open(io.BytesIO(data)) as im:
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
          raise DataError(f"{path}: holds {frames} frames (an animation or a multi-page file); "
                          "save the one image to use on its own")
        im = ImageOps.exif_transpose(im)
        if im.mode.startswith("I;16") or im.mode == "I":
          unit, raw_max, full = sixteen_bit_to_unit(
              np.asarray(im), declared=png_significant_bits(data), configured=bit_depth,
              where=path)
          return unit, data, raw_max, full
        return np.asarray(im.convert("L"), dtype=np.uint8), data, 0, 0
  except DataError:
    raise
  except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
    raise DataError(f"{path}: {str(e).rstrip('.')} (Pillow's guard against decompression "
                    "bombs, PIL.Image.MAX_IMAGE_PIXELS); downscale a real image this large "
                    "first") from None
  except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
    raise DataError(f"cannot decode image {path}: {e}") from None


# Label files.

def read_text(path: str) -> str:
  """A label file's text: UTF-8 (a leading BOM is dropped), or UTF-16 when it starts with a
  UTF-16 BOM; anything else is a DataError naming the file, line and byte."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise DataError(f"cannot read {path}: {e.strerror}") from None
  if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
    raise DataError(f"{path}: UTF-32 text is not supported; save it as UTF-8")
  utf16 = data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE))
  encoding = "utf-16" if utf16 else "utf-8-sig"
  try:
    text = data.decode(encoding)
  except UnicodeDecodeError as e:
    line = data.count(b"\n", 0, e.start) + 1
    raise DataError(f"{path}:{line}: not {'UTF-16' if utf16 else 'UTF-8'} text "
                    f"(byte {data[e.start]:#04x} at offset {e.start}); save it as UTF-8") from None
  if "\x00" in text:
    raise DataError(f"{path}: holds NUL characters (UTF-16 without a byte-order mark?); "
                    "save it as UTF-8")
  return text


# Duplicates and leakage.

def file_digest(data: bytes) -> str:
  """Hash of a file's bytes: equal digests mean the same content under any name."""
  return hashlib.blake2b(data, digest_size=16).hexdigest()


def path_digest(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


def same_file_key(root: str, rel: str) -> str:
  """`rel` under `root`, normalised so that `./a//b.png` and `a/b.png` are one file."""
  return os.path.normcase(os.path.normpath(os.path.join(os.path.abspath(root), rel)))


@dataclasses.dataclass(frozen=True)
class Listed:
  """One listed image as the duplicate check sees it.

  split: its split (or one name for a folder that is split later); name: as listed; key: from
  `same_file_key`; digest: `file_digest` of its bytes (None: content not compared); source:
  where it is listed (`labels.csv:7`), for label conflicts; patient: for leakage by patient.
  """
  split: str
  name: str
  key: str
  label: int
  digest: str | None = None
  source: str = ""
  patient: str | None = None


@dataclasses.dataclass(frozen=True)
class Finding:
  """`count` problems of one kind; `conflict` stays an error with allow_duplicates."""
  kind: str  # conflict, repeated, same_file, same_content, patient
  count: int
  message: str

  @property
  def fatal(self) -> bool:
    return self.kind == "conflict"


def _examples(items: list[str]) -> str:
  more = len(items) - EXAMPLES
  return ", ".join(items[:EXAMPLES]) + (f", ... ({more} more)" if more > 0 else "")


def _plural(n: int, word: str) -> str:
  return f"{n} {word}{'' if n == 1 else 's'}"


def find_duplicates(listed: list[Listed]) -> list[Finding]:
  """Every kind of duplicate among `listed` (split order as given: copies in a later split are
  reported against the earlier one):

  conflict: one file listed with labels 0 and 1; repeated: one file listed twice in a split;
  same_file: one file listed in two splits; same_content: the same bytes under another name
  (within a split or across two); patient: one patient's images in two splits.
  """
  order = list(dict.fromkeys(x.split for x in listed))
  findings = []
  by_key = collections.defaultdict(list)
  for x in listed:
    by_key[x.key].append(x)
  conflicts = []
  repeated = collections.defaultdict(list)
  same_file = collections.defaultdict(list)
  for group in by_key.values():
    if len(group) == 1:
      continue
    if len({x.label for x in group}) > 1:
      conflicts.append(f"{group[0].name} is listed with labels "
                       + " and ".join(f"{x.label} ({x.source or x.split})" for x in group))
      continue
    counts = collections.Counter(x.split for x in group)
    for split, n in counts.items():
      if n > 1:
        repeated[split].append(f"{group[0].name} ({n} times)")
    first = group[0]
    for split in dict.fromkeys(x.split for x in group[1:]):
      if split != first.split:
        same_file[(split, first.split)].append(next(x.name for x in group if x.split == split))
  if conflicts:
    findings.append(Finding("conflict", len(conflicts),
                            f"{_plural(len(conflicts), 'file')} listed with two labels: "
                            + _examples(conflicts)))
  for split in order:
    if repeated[split]:
      findings.append(Finding("repeated", len(repeated[split]),
                              f"{_plural(len(repeated[split]), 'file')} listed more than once in "
                              f"{split}: {_examples(repeated[split])}"))
  for (later, earlier), names in sorted(same_file.items(),
                                        key=lambda kv: _pair_order(kv[0], order)):
    findings.append(Finding("same_file", len(names),
                            f"{_plural(len(names), 'file')} of {later} also listed in {earlier}: "
                            + _examples(names)))
  findings += _same_content(by_key, order)
  findings += _patient_leaks(by_key, order)
  return findings


def _pair_order(pair, order):
  return order.index(pair[0]), order.index(pair[1])


def _same_content(by_key, order) -> list[Finding]:
  by_digest = collections.defaultdict(list)
  for group in by_key.values():
    first = group[0]  # one per file; a file listed twice is `repeated`, not a copy
    if first.digest is not None:
      by_digest[first.digest].append(first)
  pairs = collections.defaultdict(list)
  for files in by_digest.values():
    for i, x in enumerate(files[1:], 1):
      earlier = files[:i]
      match = next((e for e in earlier if e.split == x.split), earlier[0])
      labels = "" if match.label == x.label else f" (labels {x.label} and {match.label})"
      pairs[(x.split, match.split)].append(f"{x.name} = {match.name}{labels}")
  findings = []
  for (later, earlier), items in sorted(pairs.items(), key=lambda kv: _pair_order(kv[0], order)):
    where = (f"{_plural(len(items), 'image')} of {later} also in {earlier} under another name"
             if later != earlier else
             f"{_plural(len(items), 'image')} of {later} repeated under another name")
    findings.append(Finding("same_content", len(items), f"{where} (same bytes): "
                            + _examples(items)))
  return findings


def _patient_leaks(by_key, order) -> list[Finding]:
  splits_of = collections.defaultdict(dict)
  for group in by_key.values():  # a file in two splits is `same_file` already
    x = group[0]
    if x.patient is not None:
      splits_of[x.patient].setdefault(x.split, x.name)
  pairs = collections.defaultdict(list)
  for patient, names in splits_of.items():
    splits = sorted(names, key=order.index)
    for split in splits[1:]:
      pairs[(split, splits[0])].append(f"{patient} ({names[split]}, {names[splits[0]]})")
  return [Finding("patient", len(items), f"{_plural(len(items), 'patient')} of {later} also in "
                  f"{earlier}: {_examples(items)}")
          for (later, earlier), items in sorted(pairs.items(),
                                                 key=lambda kv: _pair_order(kv[0], order))]


def check_duplicates(listed: list[Listed], *, where: str, allow: bool = False) -> list[Finding]:
  """`find_duplicates`, as a DataError naming examples and counts per kind; with `allow` only
  logged as a warning, except a label conflict, which is always an error."""
  findings = find_duplicates(listed)
  if not findings:
    return findings
  text = f"{where}: " + "; ".join(f.message for f in findings)
  if any(f.fatal for f in findings):
    raise DataError(text + " (give each file one label; data.allow_duplicates does not cover "
                    "label conflicts)")
  if not allow:
    raise DataError(text + "; remove them, or set data.allow_duplicates=True to keep them")
  log.warning("%s (kept: data.allow_duplicates=True)", text)
  return findings


# Bit depth.

def png_significant_bits(data: bytes) -> int | None:
  """The PNG `sBIT` depth of the grey (or first) channel; None if absent or not a PNG.

  Pillow reads past sBIT without exposing it (not in `im.info`, Pillow 13), so the chunks
  before the image data are walked here.
  """
  if not data.startswith(b"\x89PNG\r\n\x1a\n"):
    return None
  pos = 8
  while pos + 8 <= len(data):
    length, kind = struct.unpack(">I4s", data[pos:pos + 8])
    if kind == b"sBIT":
      return data[pos + 8] if length >= 1 and pos + 9 <= len(data) else None
    if kind in (b"IDAT", b"IEND"):
      return None
    pos += 12 + length
  return None


def check_bit_depth(bit_depth: int | None) -> int | None:
  if bit_depth is not None and not 1 <= int(bit_depth) <= 16:
    raise ConfigError(f"data.bit_depth must be between 1 and 16 (bits per pixel of 16-bit "
                      f"images), got {bit_depth}")
  return None if bit_depth is None else int(bit_depth)


def full_scale(raw_max: int, *, declared: int | None, configured: int | None, where: str) -> int:
  """The pixel value that maps to 1.0 in a 16-bit image whose brightest pixel is `raw_max`.

  `configured` (data.bit_depth) wins; values above it are a DataError. A `declared` depth
  (PNG sBIT) is used when the values fit in it: the PNG spec stores such data shifted to the
  high bits (then 65535 is right), but some writers keep it in the low bits. Else 65535.
  """
  if configured is not None:
    full = 2 ** configured - 1
    if raw_max > full:
      raise DataError(f"{where}: pixel values up to {raw_max} do not fit data.bit_depth="
                      f"{configured} (at most {full}); set the depth the data has, or unset it")
    return full
  if declared and declared < 16 and raw_max <= 2 ** declared - 1:
    return 2 ** declared - 1
  return 65535


def sixteen_bit_to_unit(pixels: np.ndarray, *, declared: int | None, configured: int | None,
                        where: str) -> tuple[np.ndarray, int, int]:
  """16-bit pixels -> (float32 in [0, 1], brightest pixel, full scale) by `full_scale`.

  Values outside 0..65535 (a 32-bit integer image) are a DataError.
  """
  pixels = np.asarray(pixels)
  low, high = (int(pixels.min()), int(pixels.max())) if pixels.size else (0, 0)
  if low < 0 or high > 65535:
    raise DataError(f"{where}: pixel values {low}..{high} are not 16-bit (0..65535)")
  full = full_scale(high, declared=declared, configured=configured, where=where)
  return (pixels.astype(np.float32) / np.float32(full)).clip(0, 1), high, full


class RangeReport:
  """Counts >8-bit images whose brightest pixel is under SMALL_RANGE of their full scale (12-bit
  values read as 16-bit keep 1/16 of the grey levels) and warns once, naming the fix."""

  def __init__(self):
    self.total = 0
    self.low: list[tuple[str, int, int]] = []

  def add(self, name: str, raw_max: int, full: int) -> None:
    self.total += 1
    if raw_max < SMALL_RANGE * full:
      self.low.append((name, int(raw_max), int(full)))

  def warn(self, where: str) -> None:
    if not self.low:
      return
    bits = max(8, max(raw.bit_length() for _, raw, _ in self.low))
    name, raw, full = self.low[0]
    log.warning("%s: %d of %d images deeper than 8 bits use under 1/%d of their range (e.g. %s: "
                "brightest pixel %d of %d); if they hold %d-bit values, set "
                "--config.data.bit_depth=%d", where, len(self.low), self.total,
                round(1 / SMALL_RANGE), name, raw, full, bits, bits)
