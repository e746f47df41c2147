"""data.source="tfds": the splits from the prepared TFDS data set are the files' arrays in the
files' order, so training from it gives the same model."""

import builtins

import numpy as np
import pytest
from PIL import Image

from experiments import hip128_crop_cnn, luna_cnn
from medjax import config as config_lib
from medjax import runner
from medjax.data import load_dataset
from medjax.errors import ConfigError

tfds = pytest.importorskip("tensorflow_datasets")

from medjax.data.tfds import source  # noqa: E402


def _patch_folder(root, n_train=24, n_val=12):
  """The paper's layout with random 50x50 JPEGs, listed out of name order."""
  rng = np.random.default_rng(0)
  for split, n in (("train", n_train), ("val", n_val)):
    (root / split).mkdir(parents=True)
    lines = []
    for i in rng.permutation(n):
      k = i + (0 if split == "train" else 1000)
      Image.fromarray(rng.integers(0, 256, (50, 50), dtype=np.uint8)).save(
          root / split / f"image_{k}.jpg")
      lines.append(f"{split}/image_{k}.jpg {int(i % 3 == 0)}")
    (root / f"{split}datalabels.txt").write_text("\n".join(lines) + "\n")
  return str(root)


def _resolved(module, **fields):
  config = module.get_config()
  config.smoke = True
  for key, value in fields.items():
    target = config
    *path, last = key.split(".")
    for p in path:
      target = target[p]
    target[last] = value
  return config_lib.resolve(config)


def _assert_same_splits(got, want):
  for name in ("train", "val", "test"):
    a, b = getattr(got, name), getattr(want, name)
    np.testing.assert_array_equal(a.names, b.names)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.images, b.images)
    assert a.images.dtype == b.images.dtype


def test_luna_patches_from_tfds_are_the_folders_arrays(tmp_path, offline):
  folder = _patch_folder(tmp_path / "patches")
  config = _resolved(luna_cnn, **{"data.dir": folder, "data.source": "tfds",
                                  "data.tfds_dir": str(tmp_path / "tfds")})
  got = source.load_dataset("luna", config.data, config.data.seed)
  _assert_same_splits(got, load_dataset("luna", config.data, config.data.seed))
  assert got.source.startswith("TFDS luna16_patches")
  assert (tmp_path / "tfds" / "luna16_patches").is_dir()
  with pytest.raises(ConfigError, match="set data.dir to the paper's patch folder"):
    config = _resolved(luna_cnn, **{"data.source": "tfds"})
    source.load_dataset("luna", config.data, config.data.seed)


def test_missing_tensorflow_datasets_is_one_line(monkeypatch):
  real_import = builtins.__import__

  def no_tfds(name, *args, **kwargs):
    if name.startswith("medjax.data.tfds"):
      raise ImportError("No module named 'tensorflow_datasets'")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, "__import__", no_tfds)
  with pytest.raises(ConfigError, match=r"data.source='tfds' needs TensorFlow and TensorFlow "
                                        r"Datasets .*pip install 'medjax\[data\]'"):
    runner.load_data(_resolved(hip128_crop_cnn, **{"data.source": "tfds"}))


@pytest.mark.slow  # two smoke runs and a TFDS build of 300 synthetic radiographs
def test_tfds_source_trains_the_same_model_as_the_files(tmp_path):
  fields = {"num_epochs": 2, "data.synthetic_n": 120}
  arrays = runner.run(_resolved(hip128_crop_cnn, **fields), str(tmp_path / "arrays"))
  from_tfds = runner.run(_resolved(hip128_crop_cnn, **fields, **{
      "data.source": "tfds", "data.tfds_dir": str(tmp_path / "tfds")}), str(tmp_path / "tfds_run"))
  assert from_tfds["test"] == arrays["test"]
  assert (tmp_path / "tfds_run" / "predictions.csv").read_text() == \
      (tmp_path / "arrays" / "predictions.csv").read_text()
