import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from medjax.analysis import saliency
from medjax.config import MODELS
from medjax.errors import UserError
from medjax.models import create_model
from medjax.models.rbm import DBNTiny
from medjax.models.sgan import DiscriminatorTiny, to_tanh_range
from medjax.train import supervised
from medjax.train.state import create_train_state


def _key(seed=0):
  # rbg: XLA:CPU takes seconds to compile threefry's bits for each multi-dimensional kernel
  # shape (jax_threefry_partitionable), rbg a fraction of a second; the values do not matter.
  return jax.random.key(seed, impl="rbg")


def _init(model, shape, seed=0):
  return jax.jit(model.init)(_key(seed), jnp.zeros((1, *shape)))


@pytest.mark.parametrize("model, preprocess, steps", [
    (create_model("cnn", size="tiny"), supervised.to_float, 16),
    (DBNTiny(), supervised.to_float, 16),
    # The black baseline is -1 after the [-1, 1] mapping: the path crosses leaky-ReLU kinks.
    (DiscriminatorTiny(), to_tanh_range, 64),
], ids=["cnn", "dbn", "sgan_discriminator"])
@pytest.mark.slow
def test_integrated_gradients_are_complete(model, preprocess, steps):
  """sum(attributions) = f(x) - f(black) up to the midpoint rule's error."""
  # The shapes of the trained-CNN test below, so its compiled functions are reused.
  images = np.random.default_rng(0).integers(0, 256, (32, 32, 32, 1)).astype(np.uint8)
  variables = _init(model, images.shape[1:])
  attr = saliency.integrated_gradients(model, variables, images, preprocess=preprocess,
                                       steps=steps)
  assert attr.shape == images.shape and attr.dtype == jnp.float32
  f = np.asarray(saliency.scores(variables, np.concatenate([images, 0 * images]), model=model,
                                 preprocess=preprocess))
  gap = f[:32] - f[32:]
  np.testing.assert_allclose(np.asarray(attr).sum((1, 2, 3)), gap,
                             rtol=0.01, atol=0.01 * np.abs(gap).max())


def test_positive_logit_is_the_log_odds_of_the_positive_class():
  logits = jnp.array([[0.3, 2.0], [1.0, -1.0]])
  p = jax.nn.softmax(logits)[:, 1]
  np.testing.assert_allclose(saliency.positive_logit(logits), np.log(p / (1 - p)), rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name, default", [("cnn", "conv0"), ("resnet", "Bottleneck_0")])
def test_grad_cam_maps_are_image_sized_and_non_negative(name, default):
  model = create_model(name, size="tiny")
  images = np.random.default_rng(1).uniform(size=(32, 32, 32, 1)).astype(np.float32)
  variables = _init(model, images.shape[1:])
  layers = saliency.feature_layers(model, variables, images.shape[1:])
  assert saliency.default_layer(layers) == default  # the last map >= 7x7 (8x8 or 16x16)
  cam = np.asarray(saliency.grad_cam(model, variables, images))
  assert cam.shape == (32, 32, 32) and np.isfinite(cam).all() and (cam >= 0).all()
  with pytest.raises(UserError, match="no feature map named 'nope'"):
    saliency.grad_cam(model, variables, images, layer="nope")


def test_default_grad_cam_layers_of_the_full_models():
  """Shapes only (abstract variables): ResNet-50 on 50x50 patches ends in 2x2 maps."""
  for name, expected in (("cnn", ("conv1", (7, 7, 64))),
                         ("resnet", ("Bottleneck_6", (7, 7, 512)))):
    model = create_model(name)
    variables = jax.eval_shape(lambda m=model: _init(m, (50, 50, 1)))
    layers = dict(saliency.feature_layers(model, variables, (50, 50, 1)))
    layer = saliency.default_layer(list(layers.items()))
    assert (layer, layers[layer]) == expected


def test_grad_cam_needs_a_feature_map():
  model = DBNTiny()
  variables = _init(model, (32, 32, 1))
  assert saliency.feature_layers(model, variables, (32, 32, 1)) == []
  with pytest.raises(UserError, match="no convolutional feature map"):
    saliency.grad_cam(model, variables, np.zeros((1, 32, 32, 1), np.float32))


# --- a trained model looks at the nodule -------------------------------------------------------

SIZE, RADIUS, DILATION = 32, 3, 4


def _blob_images(n, rng, positive=None):
  """Dark noisy 32x32 images; positives (random, or where `positive`) carry a bright disc of
  RADIUS at a random centre. Returns (images, labels, squared distance to the centre)."""
  labels = rng.integers(0, 2, n) if positive is None else np.asarray(positive, np.int32)
  centres = rng.uniform(RADIUS + 2, SIZE - RADIUS - 2, (n, 2))
  yy, xx = np.mgrid[:SIZE, :SIZE]
  dist2 = (yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2
  images = 0.1 * rng.standard_normal((n, SIZE, SIZE)) + 0.6 * labels[:, None, None] * (
      dist2 <= RADIUS ** 2)
  return np.clip(images, 0, 1).astype(np.float32)[..., None], labels.astype(np.int32), dist2


@pytest.mark.slow  # trains a model
def test_saliency_of_a_trained_cnn_falls_on_the_nodule():
  """Most of |IG| and of the Grad-CAM mass of correctly classified positives lies within a
  few pixels of the disc, which covers under 15% of the image."""
  rng = np.random.default_rng(0)
  images, labels, _ = _blob_images(384, rng)
  model = create_model("cnn", size="tiny")
  tx = optax.adam(3e-3)
  state = create_train_state(model, tx, _key(0), images.shape[1:])
  step = jax.jit(functools.partial(supervised.train_step, model=model, tx=tx),
                 donate_argnums=0)
  for _ in range(150):
    idx = rng.integers(0, len(images), 32)
    state, _ = step(state, {"image": images[idx], "label": labels[idx]}, _key(1))
  variables = {"params": state.params}  # the CNN has no BatchNorm statistics

  # 32 positives, then 32 negatives.
  test_images, test_labels, dist2 = _blob_images(64, rng, positive=np.arange(64) < 32)
  predicted = np.asarray(saliency.scores(variables, test_images, model=model)) > 0
  assert np.mean(predicted == test_labels) >= 0.95  # the classes are separated
  positives, correct = test_images[:32], predicted[:32]
  disc = (dist2[:32] <= (RADIUS + DILATION) ** 2)[correct]
  area = disc.mean()
  assert correct.sum() >= 25 and area < 0.15

  def share(maps):
    maps = np.asarray(maps)[correct]
    return (maps * disc).sum((1, 2)) / np.maximum(maps.sum((1, 2)), 1e-12)

  attr = np.asarray(saliency.integrated_gradients(model, variables, positives, steps=16))
  f = np.asarray(saliency.scores(variables, np.concatenate([positives, 0 * positives]),
                                 model=model))
  # Complete here too, to the few percent 16 points leave on a trained ReLU net (biases move
  # its kinks onto the path).
  np.testing.assert_allclose(attr.sum((1, 2, 3)), f[:32] - f[32:], rtol=0.05, atol=0.1)
  cam = saliency.grad_cam(model, variables, positives)  # conv0, 16x16: conv1 is 4x4
  ig_share, cam_share = share(np.abs(attr[..., 0])), share(cam)
  # Measured (seeds 0-2): mean share of |IG| 0.81-0.83, of Grad-CAM 0.88-1.0, on 15% of the
  # image; Grad-CAM on conv1 (4x4 here) only 0.29-0.48.
  assert ig_share.mean() > 0.5 and cam_share.mean() > 0.5, (area, ig_share, cam_share)
  assert (ig_share > 2 * area).all() and (cam_share > 2 * area).all()


# --- the figure of a run -----------------------------------------------------------------------

def test_select_examples_takes_the_most_confident_of_each_kind():
  labels = np.array([1, 1, 1, 0, 0, 0, 1, 0])
  probs = np.array([0.9, 0.6, 0.2, 0.7, 0.1, 0.4, 0.95, 0.55])
  picks = saliency.select_examples(labels, probs, per_kind=2)
  assert {k: v.tolist() for k, v in picks.items()} == {
      "TP": [6, 0], "FP": [3, 7], "TN": [4, 5], "FN": [2]}


def test_saliency_figure(tmp_path):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (3, 50, 50, 1)).astype(np.uint8)
  maps = {"Grad-CAM": rng.uniform(size=(3, 50, 50)), "IG": rng.uniform(size=(3, 50, 50))}
  path = str(tmp_path / "saliency.png")
  saliency.save_saliency_figure(path, images, maps, ["a", "b", "c"], "luna_cnn: saliency",
                                marks=["synthetic data"],
                                rows=[("true positives", [0, 1]), ("false negatives", []),
                                      ("true negatives", [2])])
  assert os.path.getsize(path) > 10_000


@pytest.mark.slow  # an end-to-end training run per model
@pytest.mark.parametrize("model", MODELS)
def test_run_saliency_draws_a_finished_run_of_each_model(finished_run, model, tmp_path):
  workdir = finished_run(model)
  out = str(tmp_path / "figure.png")
  # "both": Grad-CAM where the model has a feature map (not the DBN), integrated gradients.
  assert saliency.run_saliency(workdir, per_kind=1, steps=4, out=out) == out
  assert os.path.getsize(out) > 10_000
  if model == "dbn":
    with pytest.raises(UserError, match="no convolutional feature map"):
      saliency.run_saliency(workdir, method="gradcam", per_kind=1, out=out)
  else:
    with pytest.raises(UserError, match="no feature map named 'dense'"):
      saliency.run_saliency(workdir, method="gradcam", per_kind=1, layer="dense", out=out)


@pytest.mark.slow  # an end-to-end training run
def test_saliency_of_a_seed_ensemble_names_its_members(finished_ensemble):
  workdir = finished_ensemble("cnn")
  with pytest.raises(UserError, match="seed ensemble: saliency explains one model.*seed0"):
    saliency.run_saliency(workdir)
