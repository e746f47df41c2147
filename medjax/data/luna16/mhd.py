"""MetaImage (.mhd + .raw) volumes: read with SimpleITK, or with numpy where it is missing."""

from __future__ import annotations

import math
import os

import numpy as np

from medjax.data.base import DataError
from medjax.data.luna16.patches import Geometry

_MET_DTYPES = {"MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2",
               "MET_INT": "i4", "MET_UINT": "u4", "MET_FLOAT": "f4", "MET_LONG": "i8",
               "MET_ULONG": "u8", "MET_DOUBLE": "f8"}


def read_header(mhd_path: str) -> dict[str, str]:
  """The `key = value` lines of a MetaImage header."""
  try:
    with open(mhd_path, errors="replace") as f:
      return {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in f) if _}
  except FileNotFoundError:
    raise DataError(f"missing volume header: {mhd_path}") from None


def data_file(mhd_path: str, header: dict[str, str] | None = None) -> str | None:
  """Path of the one separate data file (.raw) a header names; None for embedded or lists."""
  name = (read_header(mhd_path) if header is None else header).get("ElementDataFile", "")
  if not name or name == "LOCAL" or " " in name or name.startswith("LIST"):
    return None
  return os.path.join(os.path.dirname(mhd_path), name)


def check_raw_file(mhd_path: str) -> None:
  """Clear errors for a missing, truncated or mis-described .raw before SimpleITK sees it."""
  header = read_header(mhd_path)
  raw = data_file(mhd_path, header)
  if raw is None:
    return
  if not os.path.isfile(raw):
    raise DataError(f"{mhd_path}: data file {header['ElementDataFile']} is missing")
  if header.get("CompressedData", "False").lower() == "true":
    return
  try:
    dims = [int(v) for v in header["DimSize"].split()]
    channels = int(header.get("ElementNumberOfChannels", "1"))
    expected = math.prod(dims) * channels * np.dtype(_MET_DTYPES[header["ElementType"]]).itemsize
  except (KeyError, ValueError):
    raise DataError(f"{mhd_path}: bad MetaImage header (DimSize/ElementType)") from None
  actual = os.path.getsize(raw)
  if actual < expected:
    raise DataError(f"{raw} is truncated: {actual:,} bytes, expected {expected:,} for DimSize "
                    f"{header['DimSize']} of {header['ElementType']}")
  if actual > expected and "HeaderSize" not in header:
    raise DataError(f"{raw} has {actual:,} bytes but the header describes {expected:,} (DimSize "
                    f"{header['DimSize']} of {header['ElementType']}): wrong size or element type")


def read_metaimage(mhd_path: str) -> tuple[np.ndarray, Geometry]:
  """numpy-only reader for an uncompressed 3-D MetaImage with one data file (LUNA16's form)."""
  check_raw_file(mhd_path)
  h = read_header(mhd_path)
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
