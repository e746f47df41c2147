import logging
import os

import numpy as np
import pytest
from PIL import Image

from medjax.data import DataError, batches, load_dataset, luna16_patches
from medjax.data.base import Split, stratified_holdout
from medjax import config as config_lib

from conftest import LUNA_PATCHES, requires_luna_patches


def _write_patch_folder(root, entries, split="train"):
  """entries: (file name, label, image array or raw bytes)."""
  os.makedirs(root / split, exist_ok=True)
  lines = []
  for name, label, content in entries:
    path = root / split / name
    if isinstance(content, bytes):
      path.write_bytes(content)
    elif content is not None:
      Image.fromarray(content).save(path)
    lines.append(f"{split}/{name} {label}")
  (root / f"{split}datalabels.txt").write_text("\n".join(lines) + "\n")


def _img(h=50, w=50, value=100):
  """A flat image: give each file its own value, as identical bytes are a duplicate."""
  return np.full((h, w), value, np.uint8)


def test_patch_folder_skips_wrong_size_with_warning(tmp_path, caplog):
  _write_patch_folder(tmp_path, [("image_1.jpg", 0, _img(value=1)),
                                 ("image_2.jpg", 1, _img(47, 50, 2)),
                                 ("image_3.jpg", 1, _img(value=3))])
  _write_patch_folder(tmp_path, [("image_4.jpg", 0, _img(value=4)),
                                 ("image_5.jpg", 1, _img(value=5))], "val")
  with caplog.at_level(logging.WARNING):
    splits = luna16_patches.load_patch_folder(str(tmp_path))
  assert sorted(splits) == ["train", "val"]
  assert splits["train"].labels.tolist() == [0, 1]
  assert list(splits["train"].names) == ["train/image_1.jpg", "train/image_3.jpg"]
  assert "image_2.jpg (50x47)" in caplog.text


def test_patch_folder_rotated_copies_are_optional(tmp_path):
  _write_patch_folder(tmp_path, [("image_7.jpg", 1, _img(value=7)),
                                 ("image_8.jpg", 0, _img(value=8))])
  Image.fromarray(_img(value=1)).save(tmp_path / "train" / "image_1000007.jpg")
  Image.fromarray(_img(value=2)).save(tmp_path / "train" / "image_2000007.jpg")
  Image.fromarray(_img(value=3)).save(tmp_path / "train" / "image_1000008.jpg")  # negative: never
  assert len(luna16_patches.load_patch_folder(str(tmp_path))["train"]) == 2
  with_rot = luna16_patches.load_patch_folder(str(tmp_path), include_rotated=True)["train"]
  assert len(with_rot) == 4 and with_rot.labels.tolist() == [1, 0, 1, 1]


@pytest.mark.parametrize("entries,message", [
    ([("image_1.jpg", 0, None)], "listed image is missing"),
    ([("image_1.jpg", 0, b"\xff\xd8garbage")], "cannot decode image"),
])
def test_patch_folder_bad_images_are_clear_errors(tmp_path, entries, message):
  _write_patch_folder(tmp_path, entries)
  with pytest.raises(DataError, match=message):
    luna16_patches.load_patch_folder(str(tmp_path))


def test_patch_folder_bad_label_line_names_the_line(tmp_path):
  _write_patch_folder(tmp_path, [("image_1.jpg", 0, _img())])
  with open(tmp_path / "traindatalabels.txt", "a") as f:
    f.write("train/image_2.jpg 2\n")
  with pytest.raises(DataError, match=r"traindatalabels.txt:2: expected"):
    luna16_patches.load_patch_folder(str(tmp_path))


def test_missing_or_foreign_data_dir_is_a_clear_error(tmp_path):
  with pytest.raises(DataError, match="does not exist"):
    luna16_patches.load_patch_folder(str(tmp_path / "nope"))
  with pytest.raises(DataError, match="not a LUNA16 patch folder"):
    luna16_patches.load_patch_folder(str(tmp_path))


def test_split_without_positives_is_refused(tmp_path):
  _write_patch_folder(tmp_path, [(f"image_{i}.jpg", 0, _img(value=i)) for i in range(4)])
  _write_patch_folder(tmp_path, [("image_9.jpg", 0, _img(value=9)),
                                 ("image_10.jpg", 1, _img(value=10))], "val")
  config = config_lib.base_config("luna", "cnn")
  config.data.dir = str(tmp_path)
  with pytest.raises(DataError, match="train split has no positive examples"):
    load_dataset("luna", config.data, seed=0)


def test_holdout_is_stratified_and_disjoint():
  labels = np.array([0] * 90 + [1] * 10, np.int32)
  split = Split(np.zeros((100, 4, 4, 1), np.uint8), labels, np.arange(100).astype(str))
  train, val = stratified_holdout(split, 0.1, seed=0)
  assert val.class_counts == (9, 1) and train.class_counts == (81, 9)
  assert not set(train.names) & set(val.names)


def test_batches_are_full_seeded_and_cover_each_example_once():
  split = Split(np.arange(45, dtype=np.uint8).reshape(45, 1, 1, 1), np.zeros(45, np.int32),
                np.arange(45).astype(str))
  epoch1 = [b["image"].ravel() for b in batches(split, 10, seed=0, epoch=1)]
  assert [len(b) for b in epoch1] == [10] * 4  # the remainder of 5 is dropped
  assert len(set(np.concatenate(epoch1).tolist())) == 40
  again = [b["image"].ravel() for b in batches(split, 10, seed=0, epoch=1)]
  np.testing.assert_array_equal(np.concatenate(epoch1), np.concatenate(again))
  epoch2 = np.concatenate([b["image"].ravel() for b in batches(split, 10, seed=0, epoch=2)])
  assert not np.array_equal(np.concatenate(epoch1), epoch2)


@requires_luna_patches
def test_paper_patch_set_loads_with_the_50x47_image_skipped(caplog):
  with caplog.at_level(logging.WARNING):
    splits = luna16_patches.load_patch_folder(LUNA_PATCHES)
  assert sorted(splits) == ["train", "val"]
  assert splits["train"].images.shape == (5186, 50, 50, 1)
  assert splits["train"].class_counts == (4341, 845)
  assert splits["val"].class_counts == (1073, 224)
  assert "train/image_393762.jpg (50x47)" in caplog.text
  rotated = luna16_patches.load_split(LUNA_PATCHES, "train", include_rotated=True)
  assert rotated.class_counts == (4341, 845 * 3)


@requires_luna_patches
def test_paper_patch_set_uses_val_as_test_and_holds_out_validation():
  config = config_lib.base_config("luna", "cnn")
  config.data.dir = LUNA_PATCHES
  data = load_dataset("luna", config.data, seed=0)
  assert len(data.test) == 1297 and not data.synthetic
  assert len(data.train) + len(data.val) == 5186
  assert not set(data.train.names) & set(data.val.names)


def test_data_dir_pointing_at_a_file_says_it_must_be_the_folder(tmp_path):
  from medjax import config as config_lib
  from medjax.data import load_dataset
  _write_patch_folder(tmp_path, [("image_1.jpg", 0, _img())])
  config = config_lib.base_config("luna", "cnn")
  config.data.dir = str(tmp_path / "traindatalabels.txt")
  with pytest.raises(DataError, match=r"traindatalabels.txt is a file; data.dir must be the "
                                      r"folder holding traindatalabels.txt"):
    load_dataset("luna", config.data, 0)
  with pytest.raises(DataError, match="is a file; data.dir must be the folder"):
    luna16_patches.load_patch_folder(str(tmp_path / "traindatalabels.txt"))


def test_patch_images_are_read_as_displayed(tmp_path):
  shown = np.zeros((50, 50), np.uint8)
  shown[:10, :] = 255  # a bright top band
  exif = Image.Exif()
  exif[0x0112] = 6  # stored rotated: Orientation "rotate 90 CW to display"
  stored = Image.fromarray(shown).transpose(Image.Transpose.ROTATE_90)
  os.makedirs(tmp_path / "train", exist_ok=True)
  stored.save(tmp_path / "train" / "image_1.jpg", quality=100, exif=exif)
  Image.fromarray(shown).save(tmp_path / "train" / "image_2.jpg", quality=100)
  (tmp_path / "traindatalabels.txt").write_text("train/image_1.jpg 0\ntrain/image_2.jpg 1\n")
  split = luna16_patches.load_split(str(tmp_path), "train")
  assert np.abs(split.images[0].astype(int) - split.images[1].astype(int)).max() < 40


def test_a_raw_ct_field_set_for_the_patch_folder_is_a_config_error(tmp_path):
  from medjax.errors import ConfigError
  _write_patch_folder(tmp_path, [("image_1.jpg", 0, _img())])
  config = config_lib.base_config("luna", "cnn")
  config.data.dir = str(tmp_path)
  config.data.split = "random"
  with pytest.raises(ConfigError, match=r"data.split='random' is not used by the paper's patch "
                                        r"folder"):
    load_dataset("luna", config.data, 0)
