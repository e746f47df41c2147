"""TFDS builder for the paper's LUNA16 patch folder (layout in medjax/data/luna16_patches.py)."""

from __future__ import annotations

import tensorflow_datasets as tfds

from medjax.data import luna16_patches


class Luna16Patches(tfds.core.GeneratorBasedBuilder):
  """50x50 grayscale LUNA16 candidate patches: whichever of train/val/test the folder has.

  Listed files only (the unlisted rotated copies are not examples); wrong-size images are
  skipped with a warning, as by `luna16_patches.load_split`.
  """

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "1.1.0": "Read as load_patch_folder reads the folder (duplicate and leakage "
                            "checks) and stored in its order (data.source='tfds')."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point manual_dir at the patch folder: train/ val/ test/ images with "
      "traindatalabels.txt, valdatalabels.txt, testdatalabels.txt.")

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(50, 50, 1)),
            "label": tfds.features.ClassLabel(names=["non-nodule", "nodule"]),
            "name": tfds.features.Text(),
        }),
        supervised_keys=("image", "label"),
        # Stored in the order generated (the medjax loader's), so data.source="tfds" trains
        # the same model as the files.
        disable_shuffling=True,
        homepage="https://luna16.grand-challenge.org/")

  def _split_generators(self, dl_manager):
    root = str(dl_manager.manual_dir)
    if "train" not in luna16_patches.available_splits(root):
      raise tfds.core.DatasetNotFoundError(f"{root}: no traindatalabels.txt")
    splits = luna16_patches.load_patch_folder(root)
    return {s: self._generate_examples(data) for s, data in splits.items()}

  def _generate_examples(self, data):
    for image, label, name in zip(data.images, data.labels, data.names):
      yield str(name), {"image": image, "label": int(label), "name": str(name)}
