"""Saliency maps of a finished run: Grad-CAM and integrated gradients on its test images.

    python -m medjax.analysis.saliency WORKDIR [--method=gradcam|ig|both] [--per_kind=3]
                                               [--out=PATH] [--steps=32] [--layer=NAME]

Writes saliency.png into WORKDIR (or --out): a few test images of each kind (true positives,
false positives, true negatives, false negatives at P(positive) >= 0.5, the most confident of
each kind, from predictions.csv), each beside its maps overlaid. Both methods explain the
positive-class logit, log P(positive) / (1 - P(positive)) (logit 1 - logit 0 for two classes).

Grad-CAM (Selvaraju et al. 2017): the gradient of that logit with respect to a feature map
[h, w, c], averaged over space, weights the map's channels; the ReLU of the weighted sum is
upsampled (bilinear) to the image. The map is the output of one top-level submodule (`--layer`,
e.g. conv1 of the CNN, Bottleneck_15 of ResNet-50); by default the last one at least
MIN_CAM_SIZE = 7 pixels across, the size of ResNet-50's last map on the 224-pixel ImageNet
images Grad-CAM was made for: on 50x50 patches the CNN's last convolution is 1x1 and
ResNet-50's 2x2, which localize nothing (default there: the CNN's conv1, 7x7, and ResNet-50's
Bottleneck_6, the end of stage 2). The models need no hook: flax's `nn.intercept_methods` adds
a zero to the chosen submodule's output and differentiates with respect to it.

Integrated gradients (Sundararajan et al. 2017): attribution = (x - baseline) * the mean
gradient on the straight path from a black baseline to x (midpoint rule over `steps` points),
so the attributions sum to f(x) - f(baseline) up to the quadrature error. Every classifier has
them (CNN, ResNet-50, DBN, the SGAN's discriminator). Gradients are taken in the pixel range the
data is fed in ([0, 1]); the SGAN's [-1, 1] mapping is part of the differentiated function.
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags
from flax import linen as nn

from medjax import cli, platform
from medjax.analysis.restore import RestoredEnsemble, restore
from medjax.data import load_dataset
from medjax.errors import UserError, WorkdirError
from medjax.eval import plots
from medjax.eval.plots import plt
from medjax.rundir import read_predictions, writing
from medjax.train.supervised import to_float

log = logging.getLogger(__name__)

MIN_CAM_SIZE = 7      # pixels per side of the default Grad-CAM feature map
IG_PASS_IMAGES = 64   # images per gradient pass of integrated gradients (memory)
THRESHOLD = 0.5       # P(positive) of a positive prediction, as in results.json
KINDS = (("TP", "true positives", 1, True), ("FP", "false positives", 0, True),
         ("TN", "true negatives", 0, False), ("FN", "false negatives", 1, False))
METHODS = ("gradcam", "ig", "both")


# --- the explained function -------------------------------------------------------------------

def positive_logit(logits):
  """log P(positive) / (1 - P(positive)) of softmax logits [..., K]; logit 1 - logit 0 for K=2."""
  logits = logits.astype(jnp.float32)
  others = jnp.concatenate([logits[..., :1], logits[..., 2:]], axis=-1)
  return logits[..., 1] - jax.nn.logsumexp(others, axis=-1)


def _scores(variables, images, model, preprocess):
  return positive_logit(model.apply(variables, preprocess(images), train=False))


@functools.partial(jax.jit, static_argnames=("model", "preprocess"))
def scores(variables, images, *, model, preprocess: Callable = to_float):
  """The explained score, `positive_logit`, of NHWC float images in [0, 1] (or uint8)."""
  return _scores(variables, unit_float(images), model, preprocess)


def unit_float(images):
  """uint8 0..255 -> float32 in [0, 1]; float images as float32 (gradients need floats)."""
  return to_float(jnp.asarray(images))


# --- integrated gradients ---------------------------------------------------------------------

def path_points(steps: int) -> np.ndarray:
  """The midpoint rule's `steps` points (k + 1/2) / steps on [0, 1]. Not the endpoints: at the
  black baseline a ReLU network with zero biases sits on its kinks, where the gradient (0) is
  not the limit along the path, and the trapezoid rule would weigh it in."""
  if steps < 1:
    raise ValueError(f"integrated gradients need steps >= 1, got {steps}")
  return ((np.arange(steps) + 0.5) / steps).astype(np.float32)


@functools.partial(jax.jit, static_argnames=("model", "preprocess", "steps", "chunk"))
def _integrated_gradients(variables, images, baseline, *, model, preprocess, steps, chunk):
  grad_fn = jax.grad(lambda x: jnp.sum(_scores(variables, x, model, preprocess)))
  # lax.map with batch_size: `chunk` path points at a time through one vmapped gradient, so
  # memory holds chunk x N images' activations, not steps x N.
  grads = jax.lax.map(lambda a: grad_fn(baseline + a * (images - baseline)),
                      jnp.asarray(path_points(steps)), batch_size=min(chunk, steps))
  return (images - baseline) * jnp.mean(grads, axis=0)


def integrated_gradients(model, variables, images, *, preprocess: Callable = to_float,
                         baseline=None, steps: int = 32, chunk: int | None = None
                         ) -> jax.Array:
  """Attributions [N, H, W, C] of `positive_logit` for NHWC images (uint8 or float in [0, 1]).

  `baseline`: an image (or batch) in the same range; default black (zeros). The attributions
  of an image sum to f(image) - f(baseline) up to the midpoint rule's error. `chunk`: path
  points per gradient pass (default: the largest divisor of `steps` that keeps a pass at
  IG_PASS_IMAGES images or fewer).
  """
  images = unit_float(images)
  baseline = jnp.zeros_like(images) if baseline is None else jnp.broadcast_to(
      unit_float(baseline), images.shape)
  path_points(steps)  # checks steps
  if chunk is None:
    most = max(1, IG_PASS_IMAGES // max(1, images.shape[0]))
    chunk = max(d for d in range(1, steps + 1) if steps % d == 0 and d <= most)
  return _integrated_gradients(variables, images, baseline, model=model,
                               preprocess=preprocess, steps=steps, chunk=chunk)


# --- Grad-CAM ---------------------------------------------------------------------------------

def _top_level_outputs(record: list, substitute: Mapping[str, Any] | None = None):
  """An interceptor that records (name, output) of every top-level submodule call; with
  `substitute`, the output of a named submodule is replaced by substitute[name](output)."""
  def interceptor(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    path = context.module.path
    if context.method_name == "__call__" and len(path) == 1:
      if substitute and path[0] in substitute:
        out = substitute[path[0]](out)
      record.append((path[0], out))
    return out
  return interceptor


def feature_layers(model, variables, image_shape: Sequence[int], *,
                   preprocess: Callable = to_float) -> list[tuple[str, tuple[int, ...]]]:
  """(name, [h, w, c]) of every top-level submodule whose output is a feature map [N, h, w, c],
  in the order the model computes them. Shapes only: `variables` may be abstract."""
  record = []

  def run(variables, x):
    with nn.intercept_methods(_top_level_outputs(record)):
      model.apply(variables, preprocess(x), train=False)

  jax.eval_shape(run, variables, jax.ShapeDtypeStruct((1, *image_shape), jnp.float32))
  return [(name, tuple(out.shape[1:])) for name, out in record
          if hasattr(out, "shape") and len(out.shape) == 4]


def default_layer(layers: Sequence[tuple[str, tuple[int, ...]]],
                  min_size: int = MIN_CAM_SIZE) -> str:
  """The last feature map at least `min_size` pixels across (else the first, the largest)."""
  if not layers:
    raise UserError("the model has no convolutional feature map (e.g. the DBN): Grad-CAM "
                    "needs one; use integrated gradients (--method=ig)")
  large = [name for name, shape in layers if min(shape[:2]) >= min_size]
  return large[-1] if large else layers[0][0]


def choose_layer(layers: Sequence[tuple[str, tuple[int, ...]]], layer: str | None) -> str:
  """`layer` if the model has that feature map, else a UserError; None: `default_layer`."""
  if layer is None:
    return default_layer(layers)
  if layer not in dict(layers):
    raise UserError(f"no feature map named {layer!r}; the model's are "
                    f"{', '.join(f'{n} ({s[0]}x{s[1]})' for n, s in layers) or 'none'}")
  return layer


@functools.partial(jax.jit, static_argnames=("model", "preprocess", "layer"))
def _grad_cam(variables, images, *, model, preprocess, layer):
  def score(delta):
    record = []
    substitute = {layer: lambda out: out + delta.astype(out.dtype)}
    with nn.intercept_methods(_top_level_outputs(record, substitute)):
      total = jnp.sum(_scores(variables, images, model, preprocess))
    return total, dict(record)[layer]

  shape = jax.eval_shape(lambda: score(jnp.zeros(()))[1]).shape
  grads, fmap = jax.grad(score, has_aux=True)(jnp.zeros(shape, jnp.float32))
  weights = jnp.mean(grads, axis=(1, 2))                       # [N, c]
  cam = nn.relu(jnp.einsum("nhwc,nc->nhw", fmap.astype(jnp.float32), weights))
  return jax.image.resize(cam, (images.shape[0], *images.shape[1:3]), "bilinear")


def grad_cam(model, variables, images, *, preprocess: Callable = to_float,
             layer: str | None = None) -> jax.Array:
  """Grad-CAM maps [N, H, W] (>= 0) of `positive_logit` for NHWC images (uint8 or float in
  [0, 1]) on the feature map of top-level submodule `layer` (default: `default_layer`)."""
  images = unit_float(images)
  layer = choose_layer(feature_layers(model, variables, images.shape[1:],
                                      preprocess=preprocess), layer)
  return _grad_cam(variables, images, model=model, preprocess=preprocess, layer=layer)


# --- choosing examples ------------------------------------------------------------------------

def select_examples(labels, probs, per_kind: int) -> dict[str, np.ndarray]:
  """Indices of up to `per_kind` examples of each kind (TP, FP, TN, FN), the most confident
  first: highest P(positive) among predicted positives, lowest among predicted negatives."""
  probs = np.asarray(probs)
  out = {}
  for kind, _, _, predicted_positive in KINDS:
    idx = np.flatnonzero(of_kind(labels, probs, kind))
    order = np.argsort(-probs[idx] if predicted_positive else probs[idx], kind="stable")
    out[kind] = idx[order][:per_kind]
  return out


def of_kind(labels, probs, kind: str) -> np.ndarray:
  """Which examples are of `kind` (TP, FP, TN or FN) at THRESHOLD."""
  _, _, label, predicted_positive = next(k for k in KINDS if k[0] == kind)
  return (np.asarray(labels) == label) & ((np.asarray(probs) >= THRESHOLD) == predicted_positive)


# --- figure -----------------------------------------------------------------------------------

def _gray(image) -> np.ndarray:
  """[H, W, C] uint8 or float in [0, 1] -> [H, W] float in [0, 1] (the middle channel)."""
  image = np.asarray(image)
  image = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image
  return np.clip(image[..., image.shape[-1] // 2], 0, 1)


def _overlay(gray, heat, vmax: float, cmap) -> np.ndarray:
  """RGB: the image in gray under the map, the map's colour as opaque as it is strong."""
  level = np.clip(heat / vmax, 0, 1) if vmax > 0 else np.zeros_like(heat)
  alpha = (0.75 * level)[..., None]
  return (1 - alpha) * np.repeat(gray[..., None], 3, -1) + alpha * cmap(level)[..., :3]


def save_saliency_figure(path: str, images, maps, titles: Sequence[str], title: str, *,
                         marks: Sequence[str] = (),
                         rows: Sequence[tuple[str, Sequence[int]]] | None = None) -> None:
  """Each image beside its saliency maps overlaid.

  images [N, H, W, C] (uint8 or float in [0, 1]); maps: {method label: [N, H, W] >= 0} (or one
  array); titles: one per image; rows: (label, image indices) per row of the figure (default:
  one row). Each map is scaled to its own 99th percentile (Captum's default clips the top 2%),
  so it shows where the evidence for "positive" lies in that image, not how strong it is (the
  titles carry P(positive)).
  """
  if not isinstance(maps, Mapping):
    maps = {"saliency": maps}
  maps = {k: np.asarray(v, np.float32) for k, v in maps.items()}
  rows = list(rows) if rows is not None else [("", list(range(len(images))))]
  per_row = max([len(idx) for _, idx in rows] + [1])
  cols = per_row * (1 + len(maps))
  cmap = plt.get_cmap("jet")
  fig, axes = plt.subplots(len(rows), cols, figsize=(1.45 * cols + 0.6, 1.7 * len(rows) + 1.0),
                           dpi=110, squeeze=False, layout="constrained")
  for r, (label, idx) in enumerate(rows):
    for ax in axes[r]:
      ax.set_xticks([])
      ax.set_yticks([])
      ax.set_frame_on(False)
    axes[r, 0].set_ylabel(label, fontsize=9)
    if not len(idx):
      axes[r, 0].text(0.5, 0.5, "none", ha="center", va="center", fontsize=9, color="gray",
                      transform=axes[r, 0].transAxes)
    for j, i in enumerate(idx):
      gray = _gray(images[i])
      ax = axes[r, j * (1 + len(maps))]
      ax.imshow(gray, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
      ax.set_title(titles[i], fontsize=8)
      for k, (name, m) in enumerate(maps.items()):
        ax = axes[r, j * (1 + len(maps)) + 1 + k]
        ax.imshow(_overlay(gray, m[i], float(np.percentile(m[i], 99)), cmap),
                  interpolation="nearest")
        ax.set_title(name, fontsize=7)
  plots.set_title(fig, title, marks, fontsize=10)
  plots.save_figure(fig, path)


# --- a run's figure ---------------------------------------------------------------------------

def run_saliency(workdir: str, *, method: str = "both", per_kind: int = 3,
                 out: str | None = None, steps: int = 32, layer: str | None = None) -> str:
  """Draws the saliency figure of a finished run; returns its path."""
  if method not in METHODS:
    raise UserError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
  run = restore(workdir)
  if isinstance(run, RestoredEnsemble):
    raise UserError(f"{workdir} is a seed ensemble: saliency explains one model; give one of "
                    f"its members ({', '.join(m.workdir for m in run.members)})")
  config = run.config
  cam_layer, notes = None, []
  if method in ("gradcam", "both"):
    layers = feature_layers(run.model, run.variables, run.image_shape,
                            preprocess=run.preprocess)
    if layers or method == "gradcam":  # checked before the data is loaded
      cam_layer = choose_layer(layers, layer)
      h, w, _ = dict(layers)[cam_layer]
      notes.append(f"Grad-CAM on {cam_layer} ({h}x{w})")
    else:
      log.info("%s has no convolutional feature map: no Grad-CAM", config.model)
  predictions_csv = os.path.join(workdir, "predictions.csv")
  predictions = read_predictions(predictions_csv)
  if predictions is None:
    raise WorkdirError(f"{predictions_csv} is missing: the run has not finished (no test "
                       "predictions)")
  names, labels, probs = predictions
  if not len(names):
    raise WorkdirError(f"{workdir}/predictions.csv holds no test examples")
  picks = select_examples(labels, probs, per_kind)
  chosen = np.concatenate(list(picks.values())).astype(int)

  dataset = load_dataset(config.dataset, config.data, config.data.seed)
  where = {str(n): i for i, n in enumerate(dataset.test.names)}
  missing = [str(names[i]) for i in chosen if str(names[i]) not in where]
  if missing:
    raise WorkdirError(f"{len(missing)} test images of {workdir}/predictions.csv are not in "
                       f"the test split of the data as loaded now (e.g. {missing[0]}): the data "
                       "changed since the run")
  images = dataset.test.images[[where[str(names[i])] for i in chosen]]
  gap = float(np.max(np.abs(run.predict(images) - probs[chosen])))
  if gap > 1e-3:
    log.warning("the restored model gives P(positive) up to %.3g away from predictions.csv: "
                "the data or the code changed since the run", gap)

  maps = {}
  if cam_layer is not None:
    maps[f"Grad-CAM {cam_layer}"] = grad_cam(run.model, run.variables, images,
                                             preprocess=run.preprocess, layer=cam_layer)
  if method in ("ig", "both"):
    attr = integrated_gradients(run.model, run.variables, images, preprocess=run.preprocess,
                                steps=steps)
    maps["IG |attr|"] = jnp.sum(jnp.abs(attr), axis=-1)
    notes.append(f"IG ({steps} steps, black baseline)")

  titles = [""] * len(chosen)
  rows, start = [], 0
  for kind, text, _, _ in KINDS:
    n = len(picks[kind])
    rows.append((f"{text}\n({int(np.sum(of_kind(labels, probs, kind)))})",
                 list(range(start, start + n))))
    for i in range(start, start + n):
      titles[i] = f"{kind} p={probs[chosen[i]]:.2f}"
    start += n
  title = (f"{config.experiment} seed {config.seed}, epoch {run.epoch}: saliency of the "
           f"positive-class logit on test images; {', '.join(notes)}")
  path = out or os.path.join(workdir, "saliency.png")
  with writing(path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_saliency_figure(path, images, maps, titles, title, rows=rows,
                         marks=plots.data_marks(run.synthetic, bool(config.smoke)))
  return path


# --- command line -----------------------------------------------------------------------------

def define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_enum("method", "both", list(METHODS),
                    "gradcam: Grad-CAM (CNN, ResNet-50, SGAN discriminator); ig: integrated "
                    "gradients (every model); both.", flag_values=fv)
  flags.DEFINE_integer("per_kind", 3, "Test images shown of each kind (TP, FP, TN, FN).",
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_string("out", None, "Figure path (default: WORKDIR/saliency.png).",
                      flag_values=fv)
  flags.DEFINE_integer("steps", 32, "Integrated gradients: points on the path from the black "
                       "baseline to the image.", lower_bound=1, flag_values=fv)
  flags.DEFINE_string("layer", None, "Grad-CAM: the top-level submodule whose output is the "
                      "feature map, e.g. conv1 (default: the last one at least "
                      f"{MIN_CAM_SIZE} pixels across).", flag_values=fv)


def main(argv: Sequence[str] | None = None) -> str:
  """`python -m medjax.analysis.saliency WORKDIR [flags]`; returns the figure's path."""
  fv, args = cli.parse_args(define_flags, argv, __doc__)
  platform.enable_compilation_cache()
  if len(args) != 1:
    raise UserError(f"expected one WORKDIR, got {len(args)} argument(s)"
                    + (f": {' '.join(args)}" if args else ""))
  path = run_saliency(args[0], method=fv.method, per_kind=fv.per_kind, out=fv.out,
                      steps=fv.steps, layer=fv.layer)
  print(f"wrote {path}")
  return path


if __name__ == "__main__":
  cli.run(main)
