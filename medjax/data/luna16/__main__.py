"""Cuts the patch splits of a raw LUNA16 layout once, into an .npz that trains without SimpleITK.

    python -m medjax.data.luna16 LUNA16_DIR OUT.npz [--fold=K] [--candidates=v2] ...

OUT.npz is always rebuilt (the medjax cache is not used), written to a temporary file beside it
and renamed when complete: a failed run leaves an existing OUT.npz as it was.
"""

from __future__ import annotations

import os

from absl import flags

from medjax import cli
from medjax.data.luna16 import build, npz
from medjax.errors import UserError

_D = build.Options()


def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_enum("candidates", _D.candidates, list(build.CANDIDATE_FILES),
                    "Candidate list: candidates.csv (v1) or candidates_V2.csv (v2).",
                    flag_values=fv)
  flags.DEFINE_enum("split", _D.split, list(build.SPLIT_MODES),
                    "scan: fold K tests on subsetK, val is whole scans of the others; random: the "
                    "paper's split by candidate (LEAKY: same scans in train and test).",
                    flag_values=fv)
  flags.DEFINE_integer("fold", _D.fold, "With --split=scan: the subset that is the test split.",
                       lower_bound=0, flag_values=fv)
  flags.DEFINE_float("test_fraction", _D.test_fraction,
                     "With --split=random: share of the candidates (per class) in test.",
                     flag_values=fv)
  flags.DEFINE_float("val_fraction", _D.val_fraction,
                     "Share of the non-test scans (or candidates, with --split=random) in val.",
                     flag_values=fv)
  flags.DEFINE_float("neg_ratio", _D.neg_ratio,
                     "Negatives kept per positive in train (seeded; 0: all).", flag_values=fv)
  flags.DEFINE_float("test_neg_ratio", _D.test_neg_ratio,
                     "Negatives kept per positive in val and test (0: every candidate, for FROC).",
                     flag_values=fv)
  flags.DEFINE_integer("augment_positives", _D.augment_positives,
                       "Extra rotated/flipped/shifted copies of each train positive.",
                       flag_values=fv)
  flags.DEFINE_integer("augment_shift", _D.augment_shift,
                       "Largest shift (voxels) of those copies.", flag_values=fv)
  flags.DEFINE_integer("size", _D.size, "Patch height and width (pixels).", lower_bound=1,
  flag_values=fv)
  flags.DEFINE_integer("slices", _D.slices,
                       "Neighbouring axial slices as channels (odd; the centre one in the middle).",
                       flag_values=fv)
  flags.DEFINE_list("hu_window", [f"{v:g}" for v in _D.hu_window],
                    "HU window LO,HI: clipped and scaled to 0..255.", flag_values=fv)
  flags.DEFINE_integer("seed", _D.seed,
                       "Seed of the split, the negative subsampling and the augmentation.",
                       flag_values=fv)
  flags.DEFINE_integer("workers", 0, "Volume-reading processes (0: one per core, up to 8).",
                       lower_bound=0, flag_values=fv)



def _hu_window(values: list[str]) -> tuple[float, float]:
  try:
    lo, hi = (float(v) for v in values)
  except ValueError:
    raise UserError(f"--hu_window must be two numbers LO,HI, got {','.join(values)!r}") from None
  return lo, hi


def main(argv: list[str] | None = None) -> str:
  """`python -m medjax.data.luna16 LUNA16_DIR OUT.npz [flags]`; returns OUT.npz."""
  FLAGS, args = cli.parse_args(define_flags, argv, __doc__)
  if len(args) != 2:
    raise UserError(f"expected LUNA16_DIR OUT.npz, got {len(args)} argument(s): "
                    f"{' '.join(args)}")
  root, out = args
  if not out.endswith(".npz"):
    raise UserError(f"{out}: the output must end in .npz (load_dataset recognises it so)")
  out_dir = os.path.dirname(os.path.abspath(out))
  if os.path.isdir(out):
    raise UserError(f"{out} is a directory, expected an .npz file name")
  if os.path.isdir(out_dir) and not os.access(out_dir, os.W_OK):
    raise UserError(f"cannot write {out}: {out_dir} is not writable")
  options = build.Options(
      candidates=FLAGS.candidates, split=FLAGS.split, fold=FLAGS.fold,
      test_fraction=FLAGS.test_fraction, val_fraction=FLAGS.val_fraction,
      neg_ratio=FLAGS.neg_ratio, test_neg_ratio=FLAGS.test_neg_ratio,
      augment_positives=FLAGS.augment_positives, augment_shift=FLAGS.augment_shift,
      size=FLAGS.size, slices=FLAGS.slices, hu_window=_hu_window(FLAGS.hu_window),
      seed=FLAGS.seed)
  splits = build.prepare(root, options, workers=FLAGS.workers, cache=False)
  npz.save_splits(out, splits)  # temporary file + rename: an old OUT survives a failed run
  for name, split in splits.items():
    neg, pos = split.class_counts
    print(f"{name}: {len(split)} patches ({pos} positive, {neg} negative)")
  print(f"wrote {out}")
  return out


if __name__ == "__main__":
  cli.run(main)
