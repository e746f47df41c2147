import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from medjax.models import CNNTiny, ResNetTiny
from medjax.train import supervised
from medjax.train.augment import augment_batch
from medjax.train.state import create_train_state


def _batch(n=16, size=32, seed=0):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, n).astype(np.int32)
  images = rng.integers(0, 128, (n, size, size, 1)).astype(np.uint8)
  images[labels == 1, 10:20, 10:20] = 255  # a learnable signal
  return {"image": images, "label": labels}


@pytest.mark.slow
@pytest.mark.parametrize("model_fn", [CNNTiny, ResNetTiny])
def test_train_step_reduces_loss_on_a_fixed_batch(model_fn):
  model, tx = model_fn(), optax.adam(3e-3)
  batch = _batch()
  state = create_train_state(model, tx, jax.random.key(0), batch["image"].shape[1:])
  step = jax.jit(functools.partial(supervised.train_step, model=model, tx=tx), donate_argnums=0)
  losses = []
  for _ in range(60):
    state, m = step(state, batch, jax.random.key(1))
    losses.append(float(m["loss"]))
  assert np.isfinite(losses).all()
  assert losses[-1] < 0.5 * losses[0]
  assert int(state.step) == 60


@pytest.mark.slow
def test_train_step_updates_batch_stats():
  model, tx = ResNetTiny(), optax.adam(1e-3)
  batch = _batch()
  state = create_train_state(model, tx, jax.random.key(0), batch["image"].shape[1:])
  before = jax.tree.map(np.asarray, state.batch_stats)
  step = jax.jit(functools.partial(supervised.train_step, model=model, tx=tx))
  state, _ = step(state, batch, jax.random.key(1))
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), before, state.batch_stats)
  assert all(jax.tree.leaves(changed))


@pytest.mark.slow
def test_eval_step_leaves_state_untouched_and_returns_probabilities():
  model, tx = ResNetTiny(), optax.adam(1e-3)
  batch = _batch()
  state = create_train_state(model, tx, jax.random.key(0), batch["image"].shape[1:])
  state, _ = jax.jit(functools.partial(supervised.train_step, model=model, tx=tx))(
      state, batch, jax.random.key(1))
  snapshot = jax.tree.map(np.array, state)
  eval_fn = jax.jit(functools.partial(supervised.eval_step, model=model))
  probs = eval_fn(state, batch)
  assert probs.shape == (16, 2)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
  jax.tree.map(np.testing.assert_array_equal, snapshot, jax.tree.map(np.array, state))
  # Inference uses the running statistics: the same image scores the same in any batch.
  alone = eval_fn(state, {"image": batch["image"][:1]})
  np.testing.assert_allclose(alone[0], probs[0], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_dihedral_augmentation_permutes_pixels_and_keeps_shape():
  images = jnp.arange(4 * 6 * 6 * 1, dtype=jnp.float32).reshape(4, 6, 6, 1)
  out = augment_batch(images, jax.random.key(0), dihedral=True)
  assert out.shape == images.shape
  for a, b in zip(images, out):
    np.testing.assert_array_equal(np.sort(a.ravel()), np.sort(b.ravel()))
  outs = {np.asarray(augment_batch(images[:1], jax.random.key(s))).tobytes() for s in range(40)}
  assert len(outs) == 8  # all eight symmetries of the square occur



def test_hflip_augmentation_mirrors_left_right_only():
  """Radiographs (the hip datasets' default): the image or its mirror, never a rotation."""
  images = jnp.arange(6 * 6, dtype=jnp.float32).reshape(1, 6, 6, 1)
  outs = {np.asarray(augment_batch(images, jax.random.key(s), dihedral=False, hflip=True)).tobytes()
          for s in range(20)}
  assert outs == {np.asarray(images).tobytes(), np.asarray(images[:, :, ::-1]).tobytes()}
  from medjax import config as config_lib
  from medjax.train import loop
  assert loop.augment_config(config_lib.base_config("hip128_full", "cnn")) == {
      "dihedral": False, "max_shift": 2, "hflip": True}
  assert loop.augment_config(config_lib.base_config("luna", "cnn")) == {
      "dihedral": True, "max_shift": 2}

def test_translation_moves_content_within_max_shift():
  image = jnp.zeros((1, 9, 9, 1)).at[0, 4, 4, 0].set(1.0)
  for s in range(10):
    out = np.asarray(augment_batch(image, jax.random.key(s), dihedral=False, max_shift=2))[0, ..., 0]
    (y,), (x,) = np.nonzero(out)
    assert abs(y - 4) <= 2 and abs(x - 4) <= 2 and out.sum() == 1.0


@pytest.mark.parametrize("n_val,n_test", [(1, 5), (80, 200), (201, 7), (518, 1297), (0, 13)])
def test_predictions_use_one_batch_shape_with_little_padding_in_validation(n_val, n_test):
  from medjax.data.base import Dataset, Split
  from medjax.train.results import eval_batch, predict
  rng = np.random.default_rng(n_val)

  def split(n):
    images = rng.random((n, 3, 3, 1)).astype(np.float32)
    return Split(images, np.zeros(n, np.int32), np.arange(n).astype(str))

  val, test = split(n_val), split(n_test)
  dataset = Dataset(name="t", train=test, val=val if n_val else None, test=test)
  size = eval_batch(dataset, 200)
  shapes = []

  def eval_fn(state, batch):  # P(positive) from each image's own pixels only
    shapes.append(batch["image"].shape[0])
    p = batch["image"].reshape(len(batch["image"]), -1).mean(axis=1)
    return np.stack([1 - p, p], axis=1)

  for s in ((val, test) if n_val else (test,)):
    np.testing.assert_allclose(predict(eval_fn, None, s, size),
                               s.images.reshape(len(s), -1).mean(axis=1), rtol=1e-6)
  assert set(shapes) == {size} and size <= 200  # one compiled shape for both splits
  every_epoch = val if n_val else test
  batches = -(-len(every_epoch) // size)
  assert batches * size - len(every_epoch) < batches  # < one padded image per batch
