"""TFDS builder for a hip X-ray folder (layout in medjax/data/hip_xray.py): the paper's four variants.

Configs `128_crop`, `128_full`, `256_crop`, `256_full`: crop to the labels.csv box (or keep the
full image), pad to a square keeping the aspect ratio, resize. Images are preprocessed by
`hip_xray` itself, so they are byte-identical to `hip_xray.load_hip`'s for the same variant, and
train / val / test are load_hip's splits (same split function, fractions and seed: by patient
when labels.csv has a `patient` column, else by image). load_hip's `max_train` / `max_test` caps
for quick runs are not applied. Another seed or other fractions: pass your own config, with a
name of its own, e.g. `HipXrayConfig(name="128_crop_seed1", crop=True, size=128, seed=1)`.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from medjax.data import hip_xray

LABEL_NAMES = ["normal", "fracture"]  # label 0 / 1 (labels.csv), negative/ / positive/ folders


@dataclasses.dataclass
class HipXrayConfig(tfds.core.BuilderConfig):
  crop: bool = True
  size: int = 128
  pad: str | float = "border"
  seed: int = 0
  val_fraction: float = hip_xray.VAL_FRACTION
  test_fraction: float = hip_xray.TEST_FRACTION


def _config(size: int, crop: bool) -> HipXrayConfig:
  what = "cropped to the labels.csv box" if crop else "the full image"
  return HipXrayConfig(name=f"{size}_{'crop' if crop else 'full'}", crop=crop, size=size,
                       description=f"{what}, padded to a square, resized to {size}x{size}")


class HipXray(tfds.core.GeneratorBasedBuilder):
  """Grayscale hip radiographs, normal or fractured, preprocessed as by `hip_xray.load_hip`."""

  VERSION = tfds.core.Version("1.1.0")
  RELEASE_NOTES = {"1.0.0": "Initial release.",
                   "1.1.0": "Examples stored in load_hip's order (data.source='tfds')."}
  BUILDER_CONFIGS = [_config(size, crop) for size in hip_xray.SIZES for crop in (True, False)]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point manual_dir at your hip X-ray folder (PNG, JPEG or, with pydicom, DICOM images) in "
      "one of two layouts:\n"
      "  - labels.csv with columns path,label (label 1 = fracture, 0 = normal; paths relative to "
      "the folder), optionally a crop box x0,y0,x1,y1 in original pixels (x1, y1 exclusive; "
      "needed by the *_crop configs) and a patient column (the split is then by patient);\n"
      "  - no labels.csv: sub-folders positive/ (fracture) and negative/ (normal), searched "
      "recursively; no crop boxes, so *_full configs only.\n"
      "The embedded synthetic folder is medjax.data.synthetic_hip.hip_root().")

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.size
    return self.dataset_info_from_configs(
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(size, size, 1)),
            "label": tfds.features.ClassLabel(names=LABEL_NAMES),
            "path": tfds.features.Text(),  # relative to the folder
            "patient": tfds.features.Text(),  # empty when labels.csv has no patient column
        }),
        supervised_keys=("image", "label"),
        # Stored in the order generated (the medjax loader's), so data.source="tfds" trains
        # the same model as the files.
        disable_shuffling=True)

  def _split_generators(self, dl_manager):
    try:
      root = str(dl_manager.manual_dir)
    except AssertionError as e:  # TFDS: manual_dir missing or empty
      raise tfds.core.DatasetNotFoundError(str(e)) from None
    has_layout = os.path.isfile(os.path.join(root, hip_xray.LABELS_CSV)) or any(
        os.path.isdir(os.path.join(root, folder)) for folder, _ in hip_xray.CLASS_FOLDERS)
    if not has_layout:
      raise tfds.core.DatasetNotFoundError(
          f"{root} is not a hip X-ray folder: it has neither {hip_xray.LABELS_CSV} nor "
          f"positive/ and negative/ sub-folders.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}")
    config = self.builder_config
    entries = hip_xray.list_entries(root)  # a bad labels.csv is a hip_xray.DataError
    hip_xray.check_entries(root, entries, crop=config.crop)
    idx = hip_xray.split_entries(entries, config.seed, val_fraction=config.val_fraction,
                                 test_fraction=config.test_fraction)
    for name in ("train", "test"):  # as load_hip requires
      counts = np.bincount([entries[i].label for i in idx[name]], minlength=2)
      if counts.min() == 0:
        raise hip_xray.DataError(
            f"{root}: the {name} split has no {'normal' if counts[0] == 0 else 'fracture'} "
            f"images ({counts[1]} fracture, {counts[0]} normal): too few images or patients")
    # An empty val split is left out, as load_hip leaves it out (val=None).
    return {name: self._generate_examples(root, [entries[i] for i in idx[name]])
            for name in ("train", "val", "test") if len(idx[name])}

  def _generate_examples(self, root, entries):
    config = self.builder_config
    for e in entries:
      image = hip_xray.prepare_entry(root, e, crop=config.crop, size=config.size, pad=config.pad)
      yield e.path, {"image": image[..., None], "label": e.label, "path": e.path,
                     "patient": e.patient or ""}
