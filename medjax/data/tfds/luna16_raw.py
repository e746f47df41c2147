"""TFDS builder for the raw LUNA16 layout: one TFDS split per subset (subset0..subset9).

The 10-fold protocol is then a split expression: fold k trains on every other subset, e.g.
`split="subset1+subset2+...+subset9"`, and tests on `split="subset0"`. Negatives are subsampled
per subset (seeded) as the builder config says; augment in the input pipeline (train only).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from medjax.data import luna16


@dataclasses.dataclass
class Luna16RawConfig(tfds.core.BuilderConfig):
  candidates: str = "v1"
  neg_ratio: float = 5.0
  seed: int = 0


class Luna16Raw(tfds.core.GeneratorBasedBuilder):
  """50x50 axial patches cut from the LUNA16 CT volumes around candidates, HU [-1000, 400]."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      Luna16RawConfig(name="v1_ratio5", description="candidates.csv, 5 negatives per positive"),
      Luna16RawConfig(name="v2_ratio5", candidates="v2",
                      description="candidates_V2.csv, 5 negatives per positive"),
      Luna16RawConfig(name="v1_all", neg_ratio=0.0,
                      description="candidates.csv, every candidate (for FROC)"),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point manual_dir at the LUNA16 folder: subset0..subset9/<seriesuid>.mhd|.raw and "
      "candidates.csv (or candidates_V2.csv).")

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(50, 50, 1)),
            "label": tfds.features.ClassLabel(names=["non-nodule", "nodule"]),
            "seriesuid": tfds.features.Text(),
            "world": tfds.features.Tensor(shape=(3,), dtype=np.float64),  # x, y, z mm
            "row": np.int64,  # row in the candidates file
        }),
        supervised_keys=("image", "label"),
        homepage="https://luna16.grand-challenge.org/")

  def _split_generators(self, dl_manager):
    root = str(dl_manager.manual_dir)
    scans = luna16.find_scans(root)
    if not scans:
      raise tfds.core.DatasetNotFoundError(f"{root}: no subset*/<seriesuid>.mhd volumes")
    path = os.path.join(root, luna16.CANDIDATE_FILES[self.builder_config.candidates])
    table = luna16.read_candidates(path)
    subsets = {s for s, _ in scans.values()}
    return {f"subset{k}": self._generate_examples(table, scans, k) for k in sorted(subsets)}

  def _generate_examples(self, table, scans, subset):
    in_subset = np.asarray([scans.get(u, (-1,))[0] == subset for u in table.seriesuid])
    members = np.flatnonzero(in_subset)
    rng = np.random.default_rng([self.builder_config.seed, subset])
    rows = members[luna16.subsample_negatives(table.value[members],
                                              self.builder_config.neg_ratio, rng)]
    images = luna16.extract(table, rows, scans)
    for image, r in zip(images, rows):
      yield int(r), {"image": image, "label": int(table.value[r]),
                     "seriesuid": str(table.seriesuid[r]), "world": table.world[r],
                     "row": int(r)}
