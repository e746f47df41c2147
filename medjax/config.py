"""The shared experiment config: defaults, validation, and the smoke / synthetic resolution."""

from __future__ import annotations

import ml_collections
from ml_collections import config_dict

DATASETS = ("luna", "hip128_crop", "hip128_full", "hip256_crop", "hip256_full")
MODELS = ("cnn", "resnet", "dbn", "sgan")
PAPER_EPOCHS = 100


def base_config(dataset: str, model: str) -> ml_collections.ConfigDict:
  """Paper defaults (Adam 1e-4, batch 20, 100 epochs on real data)."""
  c = ml_collections.ConfigDict()
  c.experiment = f"{dataset}_{model}"
  c.dataset = dataset
  c.model = model
  c.model_size = "full"          # "tiny" for tests and smoke runs
  c.dtype = "float32"            # compute dtype; "bfloat16" keeps float32 params and BN stats
  c.seed = 0
  # None: the paper's 100 on real data, `synthetic_num_epochs` on the embedded synthetic data.
  c.num_epochs = config_dict.placeholder(int)
  c.synthetic_num_epochs = 20
  c.batch_size = 20
  c.eval_batch_size = 200
  c.learning_rate = 1e-4
  c.checkpoint_metric = "accuracy"  # validation metric that picks the best checkpoint: or "auc"
  c.eval_checkpoint = "best"        # test the "best" (by validation) or the "last" checkpoint
  c.log_every = 50                  # steps between host syncs (progress bar, NaN check)
  # Training split on device, chunks of steps as one jitted scan. None: on for GPU/TPU, off on
  # CPU, where XLA runs a scan of train steps ~2.5x slower than separate jitted steps (measured).
  c.device_resident = config_dict.placeholder(bool)
  c.smoke = False                   # tiny model, little data, 1 epoch: for tests

  c.augment = ml_collections.ConfigDict()
  c.augment.dihedral = True         # random rot90 / flip per training image
  c.augment.max_shift = 2           # random translation in pixels (edge padding)

  c.data = ml_collections.ConfigDict()
  c.data.dir = config_dict.placeholder(str)  # unset: the embedded synthetic data
  # LUNA16 patches are 50x50; a hip variant's size and cropping come from its name.
  c.data.image_size = 50 if dataset == "luna" else int(dataset[len("hip"):].split("_")[0])
  c.data.include_rotated = False    # add the patch set's unlisted rotated positives to train
  c.data.val_fraction = 0.1         # of train, held out for model selection when no test split
  # Seed of the data split, the hold-out and the subsampling. None: `seed`. Pinned, several model
  # seeds (init, batch order, augmentation) share one split (the grid runner pins it to 0).
  c.data.seed = config_dict.placeholder(int)
  c.data.synthetic_train = 1500     # caps on the embedded synthetic splits
  c.data.synthetic_test = 500
  # Raw LUNA16 layout (subset*/ + candidates*.csv) and the embedded synthetic CT volumes:
  c.data.split = "scan"             # "scan": fold k tests on subset k; "random": paper's, LEAKY
  c.data.fold = 0
  c.data.test_fraction = 0.2        # LUNA16 "random" split, and the hip X-ray test share
  c.data.candidates = "v1"          # candidates.csv ("v1") or candidates_V2.csv ("v2")
  c.data.neg_ratio = 5.0            # negatives kept per positive in train (paper: 5; 0 = all)
  c.data.test_neg_ratio = 5.0       # same for val/test (0 = all candidates, for FROC)
  c.data.augment_positives = 0      # extra rotated/shifted copies per train positive
  c.data.augment_shift = 3          # max shift (voxels) of those copies
  c.data.hu_window = (-1000.0, 400.0)
  c.data.slices = 1                 # neighbouring axial slices as channels (odd)
  c.data.workers = 0                # volume-reading processes (0: one per core, up to 8)
  c.data.cache = True               # keep prepared patches as .npz in the medjax cache dir
  # Hip X-ray folders (labels.csv or positive/ + negative/) and the embedded synthetic ones:
  c.data.synthetic_n = 1000         # synthetic radiographs (balanced; generated once, ~1 min)
  c.data.pad = "border"             # pad to square keeping the aspect: "border" mean, "zero"
  c.data.max_train = config_dict.placeholder(int)  # subsample (stratified) for quick runs
  c.data.max_test = config_dict.placeholder(int)
  # Duplicates (the same file, or the same bytes under another name) within or across splits
  # are an error; True only logs them, for someone who really means to keep them.
  c.data.allow_duplicates = False
  # Bits per pixel of 16-bit images (e.g. 12 for 12-bit X-rays stored in 16 bits). None: the
  # depth the file declares (PNG sBIT, DICOM BitsStored), else the full 16 bits.
  c.data.bit_depth = config_dict.placeholder(int)

  model_defaults = _model_config(model)
  if model_defaults is not None:
    c[model] = model_defaults
  return c


def _model_config(model: str) -> ml_collections.ConfigDict | None:
  """Extra config block of models with their own training algorithm (config.dbn, config.sgan)."""
  if model == "dbn":
    from medjax.train.dbn import default_config
    return default_config()
  if model == "sgan":
    from medjax.train.sgan import default_config
    return default_config()
  return None


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Validates a config and fills the automatic fields; returns a new, locked config."""
  c = ml_collections.ConfigDict(config.to_dict())
  _check(c.dataset in DATASETS, f"unknown dataset {c.dataset!r}; known: {DATASETS}")
  _check(c.model in MODELS, f"unknown model {c.model!r}; known: {MODELS}")
  _check(c.model_size in ("full", "tiny"), f"model_size must be 'full' or 'tiny', got {c.model_size!r}")
  _check(c.dtype in ("float32", "bfloat16"), f"dtype must be 'float32' or 'bfloat16', got {c.dtype!r}")
  _check(c.checkpoint_metric in ("accuracy", "auc"),
         f"checkpoint_metric must be 'accuracy' or 'auc', got {c.checkpoint_metric!r}")
  _check(c.eval_checkpoint in ("best", "last"),
         f"eval_checkpoint must be 'best' or 'last', got {c.eval_checkpoint!r}")
  _check(c.data.image_size >= 32, f"data.image_size must be >= 32, got {c.data.image_size}")
  _check(0 <= c.data.val_fraction < 1, f"data.val_fraction must be in [0, 1), got {c.data.val_fraction}")
  _check(c.data.split in ("scan", "random"), f"data.split must be 'scan' or 'random', got {c.data.split!r}")
  _check(0 <= c.data.fold <= 9, f"data.fold must be in 0..9, got {c.data.fold}")
  _check(0 < c.data.test_fraction < 1, f"data.test_fraction must be in (0, 1), got {c.data.test_fraction}")
  _check(c.data.candidates in ("v1", "v2"), f"data.candidates must be 'v1' or 'v2', got {c.data.candidates!r}")
  _check(c.data.neg_ratio >= 0 and c.data.test_neg_ratio >= 0, "data.neg_ratio and data.test_neg_ratio must be >= 0")
  _check(c.data.augment_positives >= 0 and c.data.augment_shift >= 0,
         "data.augment_positives and data.augment_shift must be >= 0")
  _check(len(c.data.hu_window) == 2 and c.data.hu_window[0] < c.data.hu_window[1],
         f"data.hu_window must be (lo, hi) with lo < hi, got {c.data.hu_window}")
  _check(c.data.slices >= 1 and c.data.slices % 2 == 1, f"data.slices must be odd and >= 1, got {c.data.slices}")
  if c.smoke:
    c.model_size = "tiny"
    c.data.synthetic_train = min(c.data.synthetic_train, 240)
    c.data.synthetic_test = min(c.data.synthetic_test, 120)
    c.data.synthetic_n = min(c.data.synthetic_n, 300)
    c.data.max_train = c.data.max_train or 240
    c.data.max_test = c.data.max_test or 120
    c.eval_batch_size = min(c.eval_batch_size, 60)
    if c.num_epochs is None:
      c.num_epochs = 1
  if c.data.seed is None:
    c.data.seed = c.seed
  if c.num_epochs is None:
    c.num_epochs = c.synthetic_num_epochs if not c.data.dir else PAPER_EPOCHS
  if c.device_resident is None:
    import jax
    c.device_resident = jax.default_backend() != "cpu"
  for name in ("num_epochs", "batch_size", "eval_batch_size", "log_every"):
    _check(c[name] >= 1, f"{name} must be >= 1, got {c[name]}")
  _check(c.learning_rate > 0, f"learning_rate must be > 0, got {c.learning_rate}")
  c.lock()
  return c


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise ValueError(message)
