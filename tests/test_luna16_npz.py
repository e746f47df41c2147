import numpy as np
import pytest

from medjax.data import DataError, luna16


def _arrays(n=4, shape=(8, 8, 1), **override):
  rng = np.random.default_rng(0)
  arrays = {}
  for split in ("train", "test"):
    arrays.update({f"{split}/images": rng.integers(0, 256, (n, *shape), dtype=np.uint8),
                   f"{split}/labels": np.arange(n) % 2,
                   f"{split}/names": np.asarray([f"{split}{i}" for i in range(n)]),
                   f"{split}/meta/row": np.arange(n)})
  arrays.update(override)
  return {k: v for k, v in arrays.items() if v is not None}


def _load(tmp_path, arrays):
  path = tmp_path / "patches.npz"
  np.savez(path, **arrays)
  return luna16.load_splits(str(path))


def test_good_npz_loads_uint8_and_unit_float(tmp_path):
  splits = _load(tmp_path, _arrays())
  assert splits["train"].images.dtype == np.uint8 and splits["test"].labels.dtype == np.int32
  assert splits["test"].meta["row"].tolist() == [0, 1, 2, 3]
  unit = _arrays(**{"train/images": np.full((4, 8, 8, 1), 0.5, np.float64),
                    "test/names": None})
  splits = _load(tmp_path, unit)
  assert splits["train"].images.dtype == np.float32 and len(splits["test"].names) == 4


@pytest.mark.parametrize("override, message", [
    ({"train/images": np.full((4, 8, 8, 1), 200.0, np.float32)},
     r"patches.npz: train/images: float images in 0..255 \(max 200\); float images must lie "
     r"in \[0, 1\]"),
    ({"train/images": np.full((4, 8, 8, 1), -0.5)}, r"range over \[-0.5, -0.5\]"),
    ({"train/images": np.full((4, 8, 8, 1), np.nan)}, "NaN or infinity"),
    ({"test/images": np.zeros((4, 16, 16, 1), np.uint8)},
     r"image shapes differ between splits \(train 8x8x1, test 16x16x1\)"),
    ({"test/labels": np.array([0, 1, 2, 1])}, r"test/labels: labels must be 0 or 1, found \[2\]"),
    ({"test/labels": np.array(["0", "1", "0", "1"])}, "test/labels must be 0/1 numbers"),
    ({"train/labels": np.array([0, 1, 1])}, "split train has 4 images but 3 labels"),
    ({"test/meta/row": np.arange(5)}, "split test has 4 images but 5 meta/row"),
    ({"train/labels": None}, r"missing key\(s\) train/labels \(split train has train/images, "
     r"train/meta/row, train/names\); expected <split>/images and <split>/labels"),
    ({"train/images": None, "train/labels": None, "train/names": None, "train/meta/row": None},
     "no train split"),
    ({"images": np.zeros(3)}, r"unexpected key\(s\) images"),
    ({"train/images": np.zeros((4, 8, 8), np.uint8)},
     r"shape \(4, 8, 8\), expected \[N, H, W, C\] \(add a channel axis"),
    ({"train/images": np.zeros((4, 8, 8, 1), np.int16)}, "dtype int16, expected uint8"),
    ({"test/images": np.zeros((0, 8, 8, 1), np.uint8), "test/labels": np.zeros(0),
      "test/names": np.zeros(0), "test/meta/row": np.zeros(0)}, "split test has no examples"),
])
def test_bad_npz_is_a_clear_error(tmp_path, override, message):
  with pytest.raises(DataError, match=message):
    _load(tmp_path, _arrays(**override))


def test_truncated_or_missing_npz_names_the_file(tmp_path):
  path = tmp_path / "patches.npz"
  np.savez(path, **_arrays())
  path.write_bytes(path.read_bytes()[:2000])
  with pytest.raises(DataError, match=r"patches.npz: not a readable .npz \(truncated or corrupt"):
    luna16.load_splits(str(path))
  np.save(tmp_path / "one.npy", np.zeros(3))
  with pytest.raises(DataError, match=r"one.npy: a single array \(.npy\)"):
    luna16.load_splits(str(tmp_path / "one.npy"))
  with pytest.raises(DataError, match="prepared patches not found"):
    luna16.load_splits(str(tmp_path / "nope.npz"))
