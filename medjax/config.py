"""The shared experiment config: defaults, validation, and the smoke / synthetic resolution."""

from __future__ import annotations

import math

import ml_collections
from ml_collections import config_dict

from medjax import platform
from medjax.errors import ConfigError

DATASETS = ("luna", "hip128_crop", "hip128_full", "hip256_crop", "hip256_full")
MODELS = ("cnn", "resnet", "dbn", "sgan")
PAPER_EPOCHS = 100
PAPER_LEARNING_RATE = 1e-4  # Adam, every model of the paper
RESNET_VARIANTS = ("torchvision", "keras")  # medjax.models.resnet.VARIANTS
INIT_FROM_MODELS = MODELS  # the models whose trainer takes config.init_from (every one)
# The models trained by the supervised optimizer (medjax.train.optim), whose fine-tuning fields
# (freeze_backbone, backbone_learning_rate) apply; the SGAN has optimizers of its own.
FINE_TUNE_MODELS = ("cnn", "resnet", "dbn")
MAX_SEED = 2 ** 63 - 1  # numpy and JAX take seeds up to int64
# The step schedule's defaults (a field changed from them without lr_schedule="step" is an error).
LR_DECAY_EPOCHS = 30
LR_DECAY_FACTOR = 0.1
# Table 2 of Liu et al. (2021): test accuracy % per (dataset, model); no DBN at 256 px.
PAPER_TABLE2 = {
    ("luna", "cnn"): 92.5, ("luna", "resnet"): 93.1, ("luna", "dbn"): 89.4,
    ("luna", "sgan"): 80.0,
    ("hip128_crop", "cnn"): 89.2, ("hip128_crop", "resnet"): 95.2,
    ("hip128_crop", "dbn"): 76.2, ("hip128_crop", "sgan"): 75.0,
    ("hip128_full", "cnn"): 82.6, ("hip128_full", "resnet"): 93.6,
    ("hip128_full", "dbn"): 70.1, ("hip128_full", "sgan"): 69.5,
    ("hip256_crop", "cnn"): 86.0, ("hip256_crop", "resnet"): 90.1,
    ("hip256_crop", "sgan"): 74.4,
    ("hip256_full", "cnn"): 80.7, ("hip256_full", "resnet"): 87.5,
    ("hip256_full", "sgan"): 64.1,
}


def image_size(dataset: str) -> int:
  """50 for LUNA16 patches; a hip variant's size from its name (hip128_crop -> 128)."""
  return 50 if dataset == "luna" else hip_variant(dataset)[0]


def hip_variant(dataset: str) -> tuple[int, bool]:
  """(size, cropped) of `hip<size>_<crop|full>`."""
  if dataset not in DATASETS or dataset == "luna":
    raise ConfigError(f"not a hip X-ray dataset: {dataset!r}; known: {DATASETS[1:]}")
  size, variant = dataset[len("hip"):].split("_")
  return int(size), variant == "crop"


def base_config(dataset: str, model: str) -> ml_collections.ConfigDict:
  """Paper defaults (Adam 1e-4, batch 20, 100 epochs on real data); what each field does: `HELP`."""
  c = ml_collections.ConfigDict()
  c.experiment = f"{dataset}_{model}"
  c.dataset = dataset
  c.model = model
  c.model_size = "full"
  c.dtype = "float32"
  c.seed = 0
  c.num_epochs = config_dict.placeholder(int)
  c.synthetic_num_epochs = 20
  c.batch_size = 20
  c.eval_batch_size = 200
  c.learning_rate = PAPER_LEARNING_RATE
  c.synthetic_learning_rate = config_dict.placeholder(float)
  c.lr_schedule = "constant"
  c.warmup_epochs = 0.0
  c.lr_decay_epochs = LR_DECAY_EPOCHS
  c.lr_decay_factor = LR_DECAY_FACTOR
  c.early_stopping_patience = config_dict.placeholder(int)
  c.checkpoint_metric = "accuracy"
  c.checkpoint_interval_seconds = 60.0
  c.eval_checkpoint = "best"
  c.bn_stats_batches = 0
  c.temperature_scaling = True
  c.log_every = 50
  c.profile_steps = ()
  c.device_resident = config_dict.placeholder(bool)
  c.smoke = False
  c.init_from = config_dict.placeholder(str)
  c.backbone_learning_rate = config_dict.placeholder(float)
  c.freeze_backbone = False

  c.augment = ml_collections.ConfigDict()
  c.augment.dihedral = True
  c.augment.max_shift = 2
  c.augment.hflip = False
  if dataset.startswith("hip"):  # a radiograph is never seen turned by 90 deg; its mirror image
    c.augment.dihedral = False   # is another patient's (rot90s kept the CNN and DBN from fitting
    c.augment.hflip = True       # full synthetic radiographs at all: issue 22)

  c.data = ml_collections.ConfigDict()
  c.data.dir = config_dict.placeholder(str)
  c.data.source = "arrays"
  c.data.tfds_dir = config_dict.placeholder(str)
  c.data.image_size = image_size(dataset)
  c.data.include_rotated = False
  c.data.val_fraction = 0.1
  c.data.seed = config_dict.placeholder(int)
  c.data.synthetic_train = 1500
  c.data.synthetic_test = 500
  # Raw LUNA16 layout (subset*/ + candidates*.csv) and the embedded synthetic CT volumes:
  c.data.split = "scan"
  c.data.fold = 0
  c.data.test_fraction = 0.2
  c.data.candidates = "v1"
  c.data.neg_ratio = 5.0
  c.data.test_neg_ratio = 5.0
  c.data.augment_positives = 0
  c.data.augment_shift = 3
  c.data.hu_window = (-1000.0, 400.0)
  c.data.slices = 1
  c.data.workers = 0
  c.data.cache = True
  # Hip X-ray folders (labels.csv or positive/ + negative/) and the embedded synthetic ones:
  c.data.synthetic_n = 1000
  c.data.pad = "border"
  c.data.max_train = config_dict.placeholder(int)
  c.data.max_test = config_dict.placeholder(int)
  c.data.num_labelled = config_dict.placeholder(int)
  c.data.allow_duplicates = False
  c.data.bit_depth = config_dict.placeholder(int)

  if model == "resnet":
    c.resnet_variant = "torchvision"
  model_defaults = _model_config(model)
  if model_defaults is not None:
    c[model] = model_defaults
  return c


def _model_config(model: str) -> ml_collections.ConfigDict | None:
  """Extra config block of models with their own training algorithm (config.dbn, config.sgan)."""
  return {"dbn": dbn_defaults, "sgan": sgan_defaults}.get(model, lambda: None)()


def dbn_defaults() -> ml_collections.ConfigDict:
  """`config.dbn`: the pretraining settings (fine-tuning uses the top-level config; each field:
  `HELP`).

  Fine-tuning keeps the shared `config.augment` (dihedral transforms, 2-pixel shifts): a fully
  connected net has no built-in invariance, so label-preserving copies are its only source of
  it, and 5.9M parameters on ~4.7k patches need the regularization. Pretraining sees the plain
  images; the per-pixel statistics of the Gaussian layer are close to dihedral-symmetric on
  centred nodule patches, so the augmented inputs stay in the range the RBM was trained on.
  """
  c = ml_collections.ConfigDict()
  c.hidden = (1500, 1000, 500, 200)
  c.tiny_hidden = (32, 16)
  c.pretrain_epochs = 10
  c.cd_k = 1
  c.persistent = False
  c.gaussian_visible = True
  c.pretrain_learning_rate = 0.05
  c.gaussian_learning_rate = 0.002
  c.initial_momentum = 0.5
  c.momentum = 0.9
  c.momentum_switch_epoch = 5
  c.weight_decay = 2e-4
  c.pretrain_batch_size = 20
  c.monitor_examples = 500
  return c


def sgan_defaults() -> ml_collections.ConfigDict:
  """The `config.sgan` block. Defaults follow DCGAN/Salimans (Adam 2e-4, beta1 0.5) with feature
  matching for G (Salimans et al. 2016, for semi-supervised learning) and DiffAugment, chosen on
  the validation hold-out of the paper's LUNA16 patches (results/luna16_patches/sgan_tuning/).
  The paper's setting is Adam 1e-4 with Keras' beta1 0.9: set d_/g_learning_rate and d_/g_beta1;
  medjax's default before 2026-12 (its generator collapsed on those patches):
  feature_matching=False, gan_augment="real"."""
  c = ml_collections.ConfigDict()
  c.latent_dim = 100
  c.d_learning_rate = 2e-4
  c.d_beta1 = 0.5
  c.g_learning_rate = 2e-4
  c.g_beta1 = 0.5
  c.unsupervised_weight = 1.0
  c.feature_matching = True
  c.label_smoothing = 0.0
  c.gan_augment = "both"
  c.gan = True
  c.dropout_rate = 0.4
  c.features = 128
  c.sample_every = 5
  c.sample_grid = 8
  return c


# What each config field does (dotted path -> text): `--help` prints it beside the field's
# default, and a test checks that every field of every experiment has one.
HELP = {
    "backbone_learning_rate": (
        "fine-tuning from init_from: every layer but the head at this learning rate (None: the "
        "same); CNN, ResNet and DBN (its hidden layers)"),
    "batch_size": "training batch (the paper: 20)",
    "bn_stats_batches": (
        "before each validation, re-estimate BatchNorm's running statistics as the mean over "
        "this many training batches under the epoch's weights (precise BN, medjax.train.bn_stats;"
        " ResNet-50); 0: the moving averages as trained (the paper)"),
    "checkpoint_metric": 'validation metric that picks the best checkpoint: or "auc"',
    "checkpoint_interval_seconds": (
        "checkpoints are written at the last epoch and when this many seconds have passed "
        "since the last save (a crash loses at most that much training); a new best epoch in "
        "between is held in memory and written at the next save, or as the run stops on an "
        "error or Ctrl-C; 0: every epoch. Short epochs (the CNN: seconds on a CPU, less on a "
        "GPU) then do not spend their time writing checkpoints"),
    "dataset": "luna, hip128_crop, hip128_full, hip256_crop or hip256_full",
    "device_resident": (
        "Training split on device, chunks of steps as one jitted scan. None: the platform's "
        "default (medjax.platform: on for GPU/TPU, off on CPU, where it is slower)."),
    "dtype": 'compute dtype; "bfloat16" keeps float32 params and BN stats',
    "early_stopping_patience": (
        "Stop when the validation checkpoint metric has not improved for this many epochs (None: "
        "off, the paper's fixed epochs)"),
    "eval_batch_size": "batch of validation and test predictions",
    "eval_checkpoint": 'test the "best" (by validation) or the "last" checkpoint',
    "experiment": "<dataset>_<model>: names the run and its results",
    "freeze_backbone": (
        "fine-tuning from init_from: only the head trains (the backbone's weights and BatchNorm "
        "statistics stay); CNN, ResNet and DBN (its softmax layer only)"),
    "init_from": (
        "Start from other weights (medjax.analysis.pretrained) instead of a random init: a "
        "finished run's workdir (its tested checkpoint, the same model and size; any model: a "
        "DBN skips pretraining, an SGAN takes its discriminator and generator), a Keras "
        'ResNet-50 weights file (.h5, into resnet_variant="keras") or a torchvision ResNet-50 '
        'state_dict (.pth, "torchvision"; needs torch). A new head where the class count '
        "differs; RGB kernels summed to 1 channel."),
    "learning_rate": "Adam's learning rate (the paper: 1e-4)",
    "log_every": "steps between host syncs (progress bar, NaN check)",
    "profile_steps": ("(first, last): trace these training steps (counted from 1 over the run) "
                      "with the JAX profiler into <workdir>/profile (TensorBoard, Perfetto); "
                      "(): off"),
    "lr_decay_epochs": '"step": multiply by lr_decay_factor every this many epochs',
    "lr_decay_factor": '"step": the factor applied every lr_decay_epochs',
    "lr_schedule": (
        'Learning-rate schedule (medjax.train.optim): "constant" (the paper), "cosine", "step"'),
    "model": "cnn, resnet, dbn or sgan",
    "model_size": '"tiny" for tests and smoke runs',
    "num_epochs": (
        "None: the paper's 100 on real data, `synthetic_num_epochs` on the embedded synthetic "
        "data"),
    "resnet_variant": (
        '"torchvision" (no conv biases, stride on the 3x3) or "keras" (tf.keras.applications\' '
        "ResNet50, the paper's: conv biases, stride on the first 1x1; medjax.models.resnet)"),
    "seed": "model init, batch order and augmentation (and the data split, unless data.seed)",
    "smoke": "tiny model, little data, 1 epoch: for tests",
    "synthetic_num_epochs": "num_epochs on the embedded synthetic data when num_epochs is None",
    "synthetic_learning_rate": (
        "None: learning_rate; else the learning rate on the embedded synthetic data (the budget of "
        "a short synthetic run: ResNet-50 on the hips, issue 22), real data keep learning_rate"),
    "temperature_scaling": "also report test calibration after a temperature fit on val",
    "warmup_epochs": "linear warm-up from 0 (before any schedule)",
    "augment.dihedral": "random rot90 / flip per training image",
    "augment.max_shift": "random translation in pixels (edge padding)",
    "augment.hflip": "with dihedral=False: a random left-right mirror only (radiographs)",
    "data.allow_duplicates": (
        "Duplicates (the same file, or the same bytes under another name) within or across splits"
        " are an error; True only logs them, for someone who really means to keep them"),
    "data.augment_positives": "extra rotated/shifted copies per train positive",
    "data.augment_shift": "max shift (voxels) of the augment_positives copies",
    "data.bit_depth": (
        "Bits per pixel of 16-bit images (e.g. 12 for 12-bit X-rays stored in 16 bits). None: the"
        " depth the file declares (PNG sBIT, DICOM BitsStored), else the full 16 bits."),
    "data.cache": "keep prepared patches as .npz in the medjax cache dir",
    "data.candidates": 'candidates.csv ("v1") or candidates_V2.csv ("v2")',
    "data.dir": "unset: the embedded synthetic data",
    "data.fold": 'data.split="scan": the subset that is the test split',
    "data.hu_window": "Hounsfield units clipped to (low, high), then scaled to [0, 1]",
    "data.image_size": (
        "LUNA16 patches are 50x50; a hip variant's size and cropping come from its name"),
    "data.include_rotated": "add the patch set's unlisted rotated positives to train",
    "data.max_test": "subsample (stratified) the test split for quick runs",
    "data.max_train": "subsample (stratified) the train split for quick runs",
    "data.neg_ratio": "negatives kept per positive in train (paper: 5; 0 = all)",
    "data.num_labelled": (
        "Train with labels on this many training examples (stratified; seeded by `seed`, so seed "
        "k labels the same examples for every model). The SGAN uses the rest without labels; "
        "every other model never sees them. None: all labelled."),
    "data.pad": 'pad to square keeping the aspect: "border" mean, "zero"',
    "data.seed": (
        "Seed of the data split, the hold-out and the subsampling. None: `seed`. Pinned, several "
        "model seeds (init, batch order, augmentation) share one split (the grid runner pins it "
        "to 0)."),
    "data.slices": "neighbouring axial slices as channels (odd)",
    "data.source": (
        'Where training batches come from: "arrays" (host memory) or "tfdata" (a tf.data pipeline'
        ' over the same examples in the same order; needs TensorFlow), or "tfds": the splits read'
        " from the prepared TFDS data set of medjax's builders (medjax.data.tfds.source: the "
        "LUNA16 patch folder, the hip variants), prepared from data.dir on first use. Same model "
        "every way."),
    "data.split": '"scan": fold k tests on subset k; "random": paper\'s, LEAKY',
    "data.synthetic_n": "synthetic radiographs (balanced; generated once, then cached)",
    "data.synthetic_test": "cap on the embedded synthetic test split",
    "data.synthetic_train": "cap on the embedded synthetic train split",
    "data.test_fraction": 'LUNA16 "random" split, and the hip X-ray test share',
    "data.test_neg_ratio": "neg_ratio for val/test (0 = all candidates, for FROC)",
    "data.tfds_dir": 'data.source="tfds": None = <cache>/tensorflow_datasets',
    "data.val_fraction": "of train, held out for model selection when no test split",
    "data.workers": "volume-reading processes (0: one per core, up to 8)",
    "dbn.cd_k": "Gibbs steps per update (CD-k / PCD-k)",
    "dbn.gaussian_learning_rate": (
        "the Gaussian first layer: Hinton's guide takes it 1-2 orders of magnitude below the "
        "binary layers' rate"),
    "dbn.gaussian_visible": (
        "first layer Gaussian-Bernoulli on per-pixel standardized pixels; False: Bernoulli on "
        "pixel intensities in [0, 1] used as probabilities"),
    "dbn.hidden": "the paper's four RBM layers",
    "dbn.initial_momentum": (
        "momentum for the first momentum_switch_epoch epochs (Hinton's guide, section 9)"),
    "dbn.momentum": "momentum after momentum_switch_epoch",
    "dbn.momentum_switch_epoch": "the epoch at which initial_momentum becomes momentum",
    "dbn.monitor_examples": "fixed train/held-out subsets for the per-epoch numbers",
    "dbn.persistent": "persistent CD (fantasy particles carried across updates)",
    "dbn.pretrain_batch_size": "CD minibatch (the guide: 10 to 100)",
    "dbn.pretrain_epochs": "CD epochs per layer",
    "dbn.pretrain_learning_rate": "Bernoulli layers, on batch-averaged statistics",
    "dbn.tiny_hidden": 'hidden sizes when config.model_size == "tiny" (smoke runs: 1 epoch)',
    "dbn.weight_decay": "L2 on the weights only (guide: 1e-4 to 1e-2 times the gradient)",
    "sgan.d_beta1": "the discriminator's Adam beta1",
    "sgan.d_learning_rate": "the discriminator's Adam learning rate",
    "sgan.dropout_rate": "dropout before the discriminator's dense layer",
    "sgan.feature_matching": "G matches mean trunk features instead of fooling D",
    "sgan.features": "channels of every G and D convolution (the paper's 128)",
    "sgan.g_beta1": "the generator's Adam beta1",
    "sgan.g_learning_rate": "the generator's Adam learning rate",
    "sgan.gan": (
        "False: the ablation, the discriminator alone as a K-class classifier of the labelled "
        "images (no generator, no unlabelled images; the same steps an epoch, optimizer and "
        "augmentation)"),
    "sgan.gan_augment": (
        "Which images of the real/fake game get config.augment (the labelled batch always does): "
        '"both" (DiffAugment: real and generated alike), "real" (medjax before 2026-12), "none"'),
    "sgan.label_smoothing": "one-sided: D's target for real images is 1 - this (0.1 common)",
    "sgan.latent_dim": "size of the generator's noise vector",
    "sgan.sample_every": "epochs between sample grids (also after the first and last)",
    "sgan.sample_grid": "the grid is sample_grid x sample_grid generated images",
    "sgan.unsupervised_weight": "weight of the real/fake loss against the classification loss",
}


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Validates a config and fills the automatic fields; returns a new, locked config."""
  c = ml_collections.ConfigDict(config.to_dict())
  _check(c.dataset in DATASETS, f"unknown dataset {c.dataset!r}; known: {DATASETS}")
  _check(c.model in MODELS, f"unknown model {c.model!r}; known: {MODELS}")
  _check(c.experiment == f"{c.dataset}_{c.model}",
         f"config.dataset={c.dataset!r} and config.model={c.model!r} do not match the experiment "
         f"{c.experiment!r} (its results would be labelled so); run "
         f"`python -m experiments.{c.dataset}_{c.model}` instead")
  _check_finite(c)
  _check(c.lr_schedule in ("constant", "cosine", "step"),
         f"lr_schedule must be 'constant', 'cosine' or 'step', got {c.lr_schedule!r}")
  _check(c.warmup_epochs >= 0, f"warmup_epochs must be >= 0, got {c.warmup_epochs}")
  _check(c.lr_decay_epochs >= 1, f"lr_decay_epochs must be >= 1, got {c.lr_decay_epochs}")
  _check(0 < c.lr_decay_factor <= 1,
         f"lr_decay_factor must be in (0, 1], got {c.lr_decay_factor}")
  # Fields of a schedule that is not selected would be ignored without a word.
  decay = (c.lr_decay_epochs, c.lr_decay_factor) != (LR_DECAY_EPOCHS, LR_DECAY_FACTOR)
  _check(not decay or c.lr_schedule == "step",
         f"lr_decay_epochs / lr_decay_factor apply to lr_schedule 'step' only, got "
         f"lr_schedule={c.lr_schedule!r}: add --config.lr_schedule=step")
  _check(c.early_stopping_patience is None or c.early_stopping_patience >= 1,
         f"early_stopping_patience must be >= 1 or None, got {c.early_stopping_patience}")
  _check(c.data.source in ("arrays", "tfdata", "tfds"),
         f"data.source must be 'arrays', 'tfdata' or 'tfds', got {c.data.source!r}")
  _check(c.data.source == "tfds" or not c.data.tfds_dir,
         "data.tfds_dir applies to data.source='tfds' only")
  _check_init(c)
  _check(c.data.pad in ("border", "zero"), f"data.pad must be 'border' or 'zero', got {c.data.pad!r}")
  _check(0 <= c.augment.max_shift <= c.data.image_size // 4,
         f"augment.max_shift must be in 0..{c.data.image_size // 4} pixels (a quarter of the "
         f"{c.data.image_size}-pixel image), got {c.augment.max_shift}")
  _check(c.data.num_labelled is None or c.data.num_labelled >= 2,
         f"data.num_labelled must be >= 2 (one example per class) or None, got "
         f"{c.data.num_labelled}")
  _check(c.data.bit_depth is None or 1 <= c.data.bit_depth <= 16,
         f"data.bit_depth must be in 1..16 or None, got {c.data.bit_depth}")
  _check(c.model_size in ("full", "tiny"), f"model_size must be 'full' or 'tiny', got {c.model_size!r}")
  _check(c.dtype in ("float32", "bfloat16"), f"dtype must be 'float32' or 'bfloat16', got {c.dtype!r}")
  _check(c.checkpoint_interval_seconds >= 0,
         f"checkpoint_interval_seconds must be >= 0, got {c.checkpoint_interval_seconds}")
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
  if c.model == "sgan":
    s = c.sgan
    _check(0 <= s.label_smoothing < 0.5, f"sgan.label_smoothing must be in [0, 0.5), got "
           f"{s.label_smoothing}")
    _check(s.gan_augment in ("both", "real", "none"),
           f"sgan.gan_augment must be 'both', 'real' or 'none', got {s.gan_augment!r}")
    _check(0 <= s.dropout_rate < 1, f"sgan.dropout_rate must be in [0, 1), got {s.dropout_rate}")
    _check(s.unsupervised_weight >= 0, f"sgan.unsupervised_weight must be >= 0, got "
           f"{s.unsupervised_weight}")
    _check(s.d_learning_rate > 0 and s.g_learning_rate > 0,
           "sgan.d_learning_rate and sgan.g_learning_rate must be > 0")
  for name in ("seed", "data.seed"):
    value = c.data.seed if name == "data.seed" else c.seed
    _check(value is None or 0 <= value <= MAX_SEED,
           f"{name} must be in 0..{MAX_SEED}, got {value}")
  for name in ("max_train", "max_test"):
    value = c.data[name]
    _check(value is None or value >= 1, f"data.{name} must be >= 1 or None, got {value}")
  _check_used(c)
  if c.smoke:
    c.model_size = "tiny"
    if not c.data.dir:  # the caps of the embedded synthetic data this dataset reads
      if c.dataset == "luna":
        c.data.synthetic_train = min(c.data.synthetic_train, 240)
        c.data.synthetic_test = min(c.data.synthetic_test, 120)
      else:
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
  if not c.data.dir and c.synthetic_learning_rate is not None:
    _check(c.synthetic_learning_rate > 0,
           f"synthetic_learning_rate must be > 0, got {c.synthetic_learning_rate}")
    _check(c.learning_rate in (PAPER_LEARNING_RATE, c.synthetic_learning_rate),
           f"learning_rate={c.learning_rate} would be replaced by this experiment's "
           f"synthetic_learning_rate={c.synthetic_learning_rate} on the embedded synthetic data: "
           "set --config.synthetic_learning_rate instead (or set it to None)")
    c.learning_rate = c.synthetic_learning_rate
  if c.device_resident is None:
    c.device_resident = platform.device_resident_default() and c.data.source == "arrays"
  _check(not (c.data.source == "tfdata" and c.device_resident),
         "data.source='tfdata' feeds batches from the host: set device_resident=False")
  steps = tuple(c.profile_steps)
  _check(steps == () or (len(steps) == 2 and all(isinstance(v, int) for v in steps)
                         and 1 <= steps[0] <= steps[1]),
         f"profile_steps must be () or (first, last) with 1 <= first <= last, got {steps}")
  for name in ("num_epochs", "batch_size", "eval_batch_size", "log_every"):
    _check(c[name] >= 1, f"{name} must be >= 1, got {c[name]}")
  _check(c.warmup_epochs < c.num_epochs,
         f"warmup_epochs={c.warmup_epochs} must be below num_epochs={c.num_epochs}: the learning "
         "rate would never reach learning_rate")
  _check(c.learning_rate > 0, f"learning_rate must be > 0, got {c.learning_rate}")
  _check(isinstance(c.bn_stats_batches, int) and not isinstance(c.bn_stats_batches, bool)
         and c.bn_stats_batches >= 0,
         f"bn_stats_batches must be an int >= 0, got {c.bn_stats_batches!r}")
  _check(not c.bn_stats_batches or c.model == "resnet",
         f"bn_stats_batches re-estimates BatchNorm statistics; the {c.model} has no BatchNorm: "
         "set it to 0")
  _check(not (c.bn_stats_batches and c.freeze_backbone),
         "bn_stats_batches re-estimates BatchNorm statistics that freeze_backbone=True keeps "
         "frozen: set one of them")
  c.lock()
  return c


def _check_init(c: ml_collections.ConfigDict) -> None:
  if c.model == "resnet":
    _check(c.resnet_variant in RESNET_VARIANTS,
           f"resnet_variant must be one of {RESNET_VARIANTS}, got {c.resnet_variant!r}")
  _check(not c.init_from or c.model in INIT_FROM_MODELS,
         f"init_from is supported for {', '.join(INIT_FROM_MODELS)} runs, not {c.model}")
  for name in ("backbone_learning_rate", "freeze_backbone"):
    _check(not c[name] or c.init_from,
           f"{name}={c[name]} fine-tunes pretrained weights: set init_from too")
    _check(not c[name] or c.model in FINE_TUNE_MODELS,
           f"{name}={c[name]} fine-tunes with the supervised optimizer of "
           f"{', '.join(FINE_TUNE_MODELS)} runs; the {c.model} has optimizers of its own "
           "(sgan.d_learning_rate, sgan.g_learning_rate): remove it")
  _check(c.backbone_learning_rate is None or c.backbone_learning_rate > 0,
         f"backbone_learning_rate must be > 0 (freeze_backbone=True freezes it), got "
         f"{c.backbone_learning_rate}")
  _check(not (c.freeze_backbone and c.backbone_learning_rate is not None),
         "freeze_backbone=True trains no backbone layer: drop backbone_learning_rate")


def _check(ok: bool, message: str) -> None:
  if not ok:
    raise ConfigError(message)


def _check_finite(c: ml_collections.ConfigDict) -> None:
  """NaN or infinity in any number field (`--config.learning_rate=inf`) is an error: no field
  means anything with it, and a run would only diverge or hang on it."""
  def walk(d, prefix):
    for key, value in d.items():
      name = prefix + key
      if isinstance(value, (dict, ml_collections.ConfigDict)):
        walk(value, name + ".")
      elif isinstance(value, float):
        _check(math.isfinite(value), f"{name} must be a finite number, got {value}")
      elif isinstance(value, (tuple, list)) and any(
          isinstance(v, float) and not math.isfinite(v) for v in value):
        raise ConfigError(f"{name} must be finite numbers, got {tuple(value)}")
  walk(c, "")


# data.* fields that one kind of dataset reads and the other never does.
LUNA_DATA_FIELDS = ("image_size", "include_rotated", "split", "fold", "candidates", "neg_ratio",
                    "test_neg_ratio", "augment_positives", "augment_shift", "hu_window",
                    "slices", "workers", "synthetic_train", "synthetic_test")
HIP_DATA_FIELDS = ("synthetic_n", "pad")


def unused_fields(block, names, defaults, prefix: str = "") -> list[str]:
  """`name=value` of the fields among `names` (dotted, within `block`) that differ from their
  value in `defaults`: set by the user, so ignoring them would record in config.json a setting
  that was never used."""
  out = []
  for name in names:
    value, default = block, defaults
    for part in name.split("."):
      value, default = value.get(part), default.get(part)
    if isinstance(value, list):
      value = tuple(value)
    if value != default:
      out.append(f"{prefix}{name}={value!r}")
  return out


def refuse_unused(found: list[str], why: str) -> None:
  """ConfigError for `unused_fields`, if any."""
  if found:
    raise ConfigError(f"{', '.join(found)} {'is' if len(found) == 1 else 'are'} not used {why}: "
                      "remove them (a setting the run ignores would be recorded in config.json "
                      "as if it had been used)")


def _check_used(c: ml_collections.ConfigDict) -> None:
  """A field that this experiment never reads, set by the user, is an error naming it (the data
  loaders check the fields that depend on what data.dir holds)."""
  defaults = base_config(c.dataset, c.model)
  other = HIP_DATA_FIELDS if c.dataset == "luna" else LUNA_DATA_FIELDS
  refuse_unused(unused_fields(c.data, sorted(other), defaults.data, "data."),
                f"by {c.dataset}" + ("" if c.dataset == "luna" else
                                     " (its image size and cropping come from its name)"))
  if c.data.dir:
    refuse_unused(unused_fields(c.data, [f for f in ("synthetic_train", "synthetic_test",
                                                     "synthetic_n") if f not in other],
                                defaults.data, "data."),
                  "with data.dir set (they cap the embedded synthetic data)")
  if c.model == "dbn":
    tiny = c.smoke or c.model_size == "tiny"
    refuse_unused(unused_fields(c.dbn, ["hidden" if tiny else "tiny_hidden"], defaults.dbn,
                                "dbn."),
                  f"with model_size={'tiny' if tiny else 'full'!r} "
                  f"({'dbn.tiny_hidden' if tiny else 'dbn.hidden'} is)")
