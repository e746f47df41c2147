"""tf.data pipeline and TFDS builders: the TensorFlow tests, kept in one module (import ~7 s)."""

import importlib
import os

import numpy as np
import pytest
from PIL import Image

from medjax.data import luna16, synthetic_ct
from medjax.data.base import Split

tf = pytest.importorskip("tensorflow")
tfds = pytest.importorskip("tensorflow_datasets")
pytest.importorskip("SimpleITK")

from medjax.data import pipeline  # noqa: E402
importlib.import_module("medjax.data.tfds")  # registers the builders


def _split(n=30, size=6):
  images = np.zeros((n, size, size, 1), np.uint8)
  images[:, 0, 0, 0] = np.arange(n)  # the id sits in a corner, so augmentation moves it
  images[:, 1, 1, 0] = 255
  return Split(images, (np.arange(n) % 3 == 0).astype(np.int32), np.arange(n).astype(str))


def _ids(batch):
  """Recovers each example's id whatever dihedral transform moved its corner."""
  img = batch["image"][..., 0].astype(int)
  corners = np.stack([img[:, 0, 0], img[:, 0, -1], img[:, -1, 0], img[:, -1, -1]], 1)
  return corners.max(axis=1)


def test_gpu_is_hidden_from_tensorflow():
  pipeline.tensorflow()
  assert tf.config.get_visible_devices("GPU") == []


def test_training_batches_are_shuffled_full_augmented_and_seeded():
  split = _split()
  it = pipeline.tf_batches(split, 8, train=True, seed=1, num_epochs=2, max_shift=0)
  batches = list(it)
  assert [len(b["image"]) for b in batches] == [8] * 7  # 60 examples, remainder dropped
  assert all(b["label"].dtype == np.int32 for b in batches)
  ids = np.concatenate([_ids(b) for b in batches])
  assert sorted(ids[:30].tolist()) == list(range(30))  # epoch 1 is a permutation
  assert not np.array_equal(ids[:30], np.arange(30))
  assert not np.array_equal(ids[:26], ids[30:56])  # epoch 2 is reshuffled
  labels = np.concatenate([b["label"] for b in batches])
  np.testing.assert_array_equal(labels, (ids % 3 == 0).astype(np.int32))
  moved = np.concatenate([b["image"][:, 0, 0, 0] != _ids(b) for b in batches])
  assert moved.any()  # some images were rotated or flipped
  again = np.concatenate([_ids(b) for b in pipeline.tf_batches(split, 8, train=True, seed=1,
                                                               num_epochs=2, max_shift=0)])
  np.testing.assert_array_equal(ids, again)


def test_eval_batches_are_ordered_unaugmented_and_complete():
  split = _split()
  batches = list(pipeline.tf_batches(split, 8, train=False))
  assert [len(b["image"]) for b in batches] == [8, 8, 8, 6]
  np.testing.assert_array_equal(np.concatenate([b["image"] for b in batches]), split.images)


def test_hosts_read_disjoint_shards():
  split = _split()
  seen = [np.concatenate([_ids(b) for b in pipeline.tf_batches(
      split, 5, train=False, process_index=i, process_count=3)]) for i in range(3)]
  assert sorted(np.concatenate(seen).tolist()) == list(range(30))
  assert all(len(s) == 10 for s in seen)


def test_shift_augmentation_pads_the_edges_as_training_does():
  images = np.random.default_rng(0).integers(0, 255, (16, 50, 50, 1), dtype=np.uint8)
  split = Split(images, np.zeros(16, np.int32), np.arange(16).astype(str))
  batch = next(pipeline.tf_batches(split, 16, train=True, dihedral=False, max_shift=3))
  assert batch["image"].shape == (16, 50, 50, 1) and batch["image"].dtype == np.uint8
  # every output is a 50x50 window of its image edge-padded by 3 (np.pad's "edge", the
  # padding of medjax.train.augment), never of a mirrored one
  padded = np.pad(images, ((0, 0), (3, 3), (3, 3), (0, 0)), mode="edge")
  windows = [{padded[i, y:y + 50, x:x + 50].tobytes() for y in range(7) for x in range(7)}
             for i in range(16)]
  for out in batch["image"]:
    assert any(out.tobytes() in w for w in windows)
  tf = pipeline.tensorflow()
  np.testing.assert_array_equal(pipeline.edge_pad(tf, tf.constant(images[0]), 3).numpy(),
                                padded[0])


def test_hflip_augmentation_mirrors_left_right_only():
  """The radiographs' augmentation in the tf.data path: the image or its mirror, never a turn."""
  images = np.random.default_rng(0).integers(0, 255, (32, 6, 6, 1), dtype=np.uint8)
  split = Split(images, np.zeros(32, np.int32), np.arange(32).astype(str))
  batch = next(pipeline.tf_batches(split, 32, train=True, dihedral=False, hflip=True))
  kinds = []
  for out in batch["image"]:
    i = int(np.flatnonzero([(out == im).all() or (out == im[:, ::-1]).all() for im in images])[0])
    kinds.append((out == images[i]).all())
  assert 0 < sum(kinds) < 32  # both the image and its mirror occur, nothing else


def _patch_folder(root):
  rng = np.random.default_rng(0)
  for split, n in (("train", 6), ("val", 4)):
    os.makedirs(root / split)
    lines = []
    for i in range(n):
      Image.fromarray(rng.integers(0, 255, (50, 50), dtype=np.uint8)).save(
          root / split / f"image_{i}.jpg")
      lines.append(f"{split}/image_{i}.jpg {i % 2}")
    Image.fromarray(np.zeros((47, 50), np.uint8)).save(root / split / "image_99.jpg")
    lines.append(f"{split}/image_99.jpg 0")  # wrong size: skipped
    (root / f"{split}datalabels.txt").write_text("\n".join(lines) + "\n")


def test_patch_builder_builds_offline(tmp_path, offline):
  _patch_folder(tmp_path / "patches")
  builder = tfds.builder("luna16_patches", data_dir=str(tmp_path / "tfds"))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(tmp_path / "patches")))
  assert builder.info.splits["train"].num_examples == 6
  assert builder.info.splits["val"].num_examples == 4
  ds = builder.as_dataset(split="val")
  batch = next(pipeline.tf_batches(ds, 4, train=False))
  assert batch["image"].shape == (4, 50, 50, 1) and sorted(batch["label"].tolist()) == [0, 0, 1, 1]


def test_raw_builder_builds_offline_one_split_per_subset(tmp_path, offline):
  root = synthetic_ct.luna16_root(n_scans=4)
  builder = tfds.builder("luna16_raw", data_dir=str(tmp_path / "tfds"))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=root))
  assert sorted(builder.info.splits) == ["subset0", "subset1", "subset2", "subset3"]
  examples = list(tfds.as_numpy(builder.as_dataset(split="subset2")))
  labels = np.array([e["label"] for e in examples])
  assert (labels == 0).sum() == 5 * (labels == 1).sum()
  scans = luna16.find_scans(root)
  assert {scans[e["seriesuid"].decode()][0] for e in examples} == {2}
  # The same candidate cut by the numpy pipeline gives the same patch.
  table = luna16.read_candidates(os.path.join(root, "candidates.csv"))
  e = examples[0]
  np.testing.assert_allclose(e["world"], table.world[e["row"]])
  np.testing.assert_array_equal(e["image"], luna16.extract(table, [e["row"]], scans, workers=1)[0])
  train = builder.as_dataset(split="subset0+subset1+subset3")
  assert sum(1 for _ in train) == sum(builder.info.splits[f"subset{k}"].num_examples
                                      for k in (0, 1, 3))
