import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from hypothesis import given, settings, strategies as st

from medjax.data import Dataset, Split, batches
from medjax.data.base import (DataError, concatenate_splits, labelled_subset,
                              with_labelled_subset)
from medjax.models.sgan import (ConvTranspose4x4, Discriminator, DiscriminatorTiny, Generator,
                                GeneratorTiny, real_probability, to_tanh_range)
from medjax import config as config_lib
from medjax.train import sgan


def test_real_probability_matches_naive_formula_and_lies_in_unit_interval():
  logits = jax.random.normal(jax.random.key(0), (500, 2)) * 8
  z = jnp.sum(jnp.exp(logits), -1)
  d = real_probability(logits)
  assert bool(jnp.all((d >= 0) & (d <= 1)))
  np.testing.assert_allclose(d, z / (z + 1), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_heads_and_losses_stay_finite_at_extreme_logits():
  logits = jnp.array([[1e4, 1e4], [-1e4, -1e4], [1e4, -1e4], [-1e4, 3.0], [0.0, 0.0]])
  d = real_probability(logits)
  assert bool(jnp.all(jnp.isfinite(d) & (d >= 0) & (d <= 1)))
  np.testing.assert_allclose(d, [1, 0, 1, 1 / (1 + np.exp(-3.0)), 2 / 3], rtol=1e-6, atol=1e-7)
  for loss in (sgan.real_loss, sgan.fake_loss,
               lambda l: sgan.classification_loss(l, jnp.array([0, 1, 1, 0, 1]))):
    value, grad = jax.value_and_grad(loss)(logits)
    assert np.isfinite(float(value)) and bool(jnp.all(jnp.isfinite(grad))), loss
  grad_d = jax.grad(lambda l: real_probability(l).sum())(logits)
  assert bool(jnp.all(jnp.isfinite(grad_d)))
  # -log D at logits 1e4 is ~0; -log(1 - D) there is ~1e4 + log 2 (the exact value, not inf).
  assert float(sgan.real_loss(logits[:1])) == pytest.approx(0.0, abs=1e-6)
  assert float(sgan.fake_loss(logits[:1])) == pytest.approx(1e4 + np.log(2), rel=1e-6)


def test_to_tanh_range_maps_uint8_and_unit_floats_to_minus_one_one():
  np.testing.assert_allclose(to_tanh_range(jnp.array([0, 255], jnp.uint8)), [-1, 1])
  np.testing.assert_allclose(to_tanh_range(jnp.array([0.0, 0.5, 1.0])), [-1, 0, 1])


def _generator_output(gen, batch=2, latent=100):
  z = jax.ShapeDtypeStruct((batch, latent), jnp.float32)
  variables = jax.eval_shape(lambda: gen.init(jax.random.key(0), jnp.zeros(z.shape)))
  return variables, jax.eval_shape(gen.apply, variables, z)


@pytest.mark.parametrize("size", [50, 128, 256])
def test_generator_produces_the_paper_image_sizes(size):
  _, out = _generator_output(Generator(image_shape=(size, size, 1)))
  assert out.shape == (2, size, size, 1) and out.dtype == jnp.float32


@settings(max_examples=15, deadline=None)
@given(height=st.integers(1, 300), width=st.integers(1, 300), channels=st.integers(1, 4),
       batch=st.integers(1, 5), latent=st.integers(1, 64))
def test_generator_output_shape_any_size(height, width, channels, batch, latent):
  variables, out = _generator_output(GeneratorTiny(image_shape=(height, width, channels)),
                                     batch, latent)
  assert out.shape == (batch, height, width, channels)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))


@pytest.mark.slow
def test_generator_output_in_tanh_range_and_discriminator_logits():
  gen = GeneratorTiny(image_shape=(10, 9, 1))
  z = jax.random.normal(jax.random.key(1), (3, 16)) * 100  # saturates tanh
  images, _ = jax.jit(gen.init_with_output)(jax.random.key(0), z)
  assert images.shape == (3, 10, 9, 1)
  assert bool(jnp.all((images >= -1) & (images <= 1)))
  disc = DiscriminatorTiny(num_classes=3)
  (logits, features), _ = jax.eval_shape(
      functools.partial(disc.init_with_output, return_features=True), jax.random.key(0),
      jnp.zeros((3, 50, 50, 1)))
  assert logits.shape == (3, 3) and features.shape == (3, 7 * 7 * 8)
  # The paper's sizes: seed 13x13x128 for 50x50, trunk 50 -> 25 -> 13 -> 7 of 128 filters.
  g_vars, _ = _generator_output(Generator())
  d_vars = jax.eval_shape(Discriminator().init, jax.random.key(0), jnp.zeros((1, 50, 50, 1)))
  assert g_vars["params"]["seed"]["kernel"].shape == (100, 13 * 13 * 128)
  assert d_vars["params"]["logits"]["kernel"].shape == (7 * 7 * 128, 2)


@pytest.mark.slow
def test_conv_transpose_4x4_equals_flax_conv_transpose():
  x = jax.random.normal(jax.random.key(1), (2, 5, 7, 3))
  ref = nn.ConvTranspose(6, (4, 4), (2, 2), padding="SAME")
  params = ref.init(jax.random.key(0), x)
  params = jax.tree.map(lambda p: p + jax.random.normal(jax.random.key(2), p.shape), params)
  np.testing.assert_allclose(jax.jit(ConvTranspose4x4(6).apply)(params, x),
                             jax.jit(ref.apply)(params, x), atol=1e-5, rtol=1e-5)


@functools.lru_cache(maxsize=None)  # tests share the compiled step (states are immutable)
def _setup(feature_matching=False, size=16, latent=8, lr=1e-3):
  config = config_lib.sgan_defaults()
  config.d_learning_rate = config.g_learning_rate = lr
  gen = GeneratorTiny(image_shape=(size, size, 1))
  disc = DiscriminatorTiny(dropout_rate=0.2)
  g_tx, d_tx = sgan.create_optimizers(config)
  state = sgan.create_state(gen, disc, g_tx, d_tx, jax.random.key(0), (size, size, 1), latent)
  step = jax.jit(functools.partial(sgan.train_step, generator=gen, discriminator=disc,
                                   g_tx=g_tx, d_tx=d_tx, latent_dim=latent,
                                   feature_matching=feature_matching))
  return state, step, disc


def _learnable_batch(n, size=16, seed=0):
  """Noise images; positives carry a bright square at a random place (clearly learnable)."""
  rng = np.random.default_rng(seed)
  labels = (rng.random(n) < 0.5).astype(np.int32)
  images = rng.integers(0, 120, (n, size, size, 1)).astype(np.uint8)
  for i in np.flatnonzero(labels):
    y, x = rng.integers(0, size - 5, 2)
    images[i, y:y + 5, x:x + 5] = 255
  return images, labels


@pytest.mark.slow
@pytest.mark.parametrize("feature_matching", [False, True])
def test_one_step_changes_c_d_and_g_params_and_keeps_them_finite(feature_matching):
  state, step, _ = _setup(feature_matching)
  images, labels = _learnable_batch(8)
  before = jax.tree.map(np.array, state)
  state, metrics = step(state, {"image": images, "label": labels, "unlabelled": images[::-1]},
                        jax.random.key(1))
  assert int(state.step) == 1
  for name in ("g_params", "d_params"):
    old, new = getattr(before, name), getattr(state, name)
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), old, new)
    assert all(jax.tree.leaves(changed)), (name, changed)  # every layer moved (C's too)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(new))
  assert all(np.isfinite(float(v)) for v in metrics.values()), metrics


@pytest.mark.slow
def test_tiny_sgan_classifier_beats_chance_with_few_labels():
  state, step, disc = _setup(False)
  images, labels = _learnable_batch(400)
  test_images, test_labels = _learnable_batch(200, seed=1)
  index = labelled_subset(labels, 40, seed=0)
  assert len(index) == 40 and 0 < labels[index].sum() < 40
  train = Split(images, labels, np.arange(len(labels)).astype(str))
  for epoch in range(1, 4):
    stream = zip(batches(train, 20, seed=0, epoch=epoch),
                 sgan.labelled_batches(train.take(index), 20, len(train) // 20, seed=0,
                                       epoch=epoch))
    for unlabelled, (x, y) in stream:
      state, metrics = step(state, {"image": x, "label": y, "unlabelled": unlabelled["image"]},
                            jax.random.key(1))
  probs = jax.jit(functools.partial(sgan.eval_step, discriminator=disc))(
      state, {"image": test_images})
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
  accuracy = float(np.mean(np.argmax(probs, -1) == test_labels))
  assert accuracy > 0.75, accuracy  # chance is ~0.5
  assert all(np.isfinite(float(v)) for v in metrics.values())


def test_labelled_subset_is_stratified_seeded_and_the_rest_is_unlabelled():
  labels = np.array([0] * 500 + [1] * 100)
  a = labelled_subset(labels, 60, seed=3)
  assert len(a) == 60 and labels[a].sum() == 10
  np.testing.assert_array_equal(a, labelled_subset(labels, 60, seed=3))
  assert not np.array_equal(a, labelled_subset(labels, 60, seed=4))
  with pytest.raises(DataError, match="num_labelled"):
    labelled_subset(labels, 1, seed=0)
  split = Split(np.zeros((600, 4, 4, 1), np.uint8), labels, np.arange(600).astype(str))
  dataset = Dataset("luna", train=split, test=split)
  assert with_labelled_subset(dataset, None, 0) is dataset
  assert with_labelled_subset(dataset, 600, 0) is dataset
  part = with_labelled_subset(dataset, 60, 3)
  np.testing.assert_array_equal(part.train.names, split.names[a])
  assert sorted(part.train.names.tolist() + part.unlabelled.names.tolist()) == sorted(
      split.names.tolist())


def test_sgan_epoch_streams_every_training_image_and_labels_only_the_subset():
  labels = np.array([0] * 50 + [1] * 30)
  ids = np.arange(80, dtype=np.uint8)  # every image holds its own index in each pixel
  split = Split(np.broadcast_to(ids[:, None, None, None], (80, 4, 4, 1)).copy(), labels,
                ids.astype(str))
  dataset = with_labelled_subset(Dataset("luna", train=split, test=split), 20, seed=1)
  stream = concatenate_splits(dataset.train, dataset.unlabelled)
  epochs = sgan.SGANEpochs(None, stream, dataset.train, 10, seed=0, chunk=2, rng=None)
  assert epochs.steps_per_epoch == 8  # a pass over all 80 images, not over the 20 labelled
  unlabelled = np.concatenate([b["image"][:, 0, 0, 0] for b in
                               batches(stream, 10, seed=0, epoch=1)])
  assert sorted(unlabelled.tolist()) == list(range(80))
  labelled = np.concatenate([x[:, 0, 0, 0] for x, _ in
                             sgan.labelled_batches(dataset.train, 10, 8, seed=0, epoch=1)])
  subset = set(dataset.train.images[:, 0, 0, 0].tolist())
  assert set(labelled.tolist()) == subset  # 4 passes over the 20 labelled images, no other
  assert np.bincount(labelled, minlength=80)[sorted(subset)].tolist() == [4] * 20


@pytest.mark.slow
def test_smoke_run_writes_results_and_sample_grids(tmp_path):
  import json
  import os

  from PIL import Image

  from experiments import luna_sgan
  from medjax import runner
  config = luna_sgan.get_config()
  config.smoke = True
  config.sgan.sample_grid = 3
  workdir = str(tmp_path / "run")
  results = runner.run(config, workdir)
  with open(os.path.join(workdir, "results.json")) as f:
    on_disk = json.load(f)
  assert on_disk == json.loads(json.dumps(results))
  assert on_disk["experiment"] == "luna_sgan" and on_disk["model"] == "sgan"
  test = on_disk["test"]
  (tn, fp), (fn, tp) = test["confusion_matrix"]
  assert tn + fp + fn + tp == on_disk["n_test"]
  assert test["accuracy"] == pytest.approx((tn + tp) / on_disk["n_test"])
  assert on_disk["num_labelled"] == on_disk["n_train"] and on_disk["n_unlabelled"] == 0
  generator = on_disk["generator"]
  assert set(generator) == {"sample_spread", "real_spread", "collapsed"}
  assert generator["real_spread"] > 0 and generator["sample_spread"] >= 0
  grid = Image.open(os.path.join(workdir, "samples", "epoch_001.png"))
  assert grid.size[0] > grid.size[1] >= 3 * 50  # real and generated panels side by side
  record = json.loads(open(os.path.join(workdir, "metrics.jsonl")).read())
  assert record["epoch"] == 1 and np.isfinite(record["train_g_loss"])
  assert "val_accuracy" in record
  # A finished run is not trained again: re-running restores it and gives the same result.
  again = runner.run(config, workdir)
  assert again["test"] == results["test"]
  assert again["generator"] == results["generator"]  # re-testing keeps the generator's check
  assert len(open(os.path.join(workdir, "metrics.jsonl")).read().splitlines()) == 1


def test_one_sided_label_smoothing_targets_real_images_at_one_minus_smoothing():
  logits = jnp.array([[0.3, -1.2], [2.0, 0.5], [-3.0, -2.0]])
  lse = jax.nn.logsumexp(logits, axis=-1)
  d = jax.nn.sigmoid(lse)
  np.testing.assert_allclose(sgan.real_loss(logits), -jnp.log(d).mean(), rtol=1e-5)
  # cross-entropy against the target 0.9 for "real"
  expected = -(0.9 * jnp.log(d) + 0.1 * jnp.log(1 - d)).mean()
  np.testing.assert_allclose(sgan.real_loss(logits, 0.1), expected, rtol=1e-5)


def test_generator_check_flags_collapsed_samples_and_not_varied_ones():
  rng = np.random.default_rng(0)
  real = rng.integers(0, 256, (64, 50, 50, 1)).astype(np.uint8)  # uint8, like patch folders
  white = np.ones((64, 50, 50, 1), np.float32)  # all samples saturated at the tanh maximum
  almost = white - rng.uniform(0, 0.02, white.shape).astype(np.float32)
  varied = rng.uniform(-1, 1, (64, 50, 50, 1)).astype(np.float32)
  check = sgan.generator_check(white, real)
  assert check["collapsed"] and check["sample_spread"] == 0.0
  assert check["real_spread"] == pytest.approx(np.std(real / 255.0, axis=0).mean(), rel=1e-4)
  assert sgan.generator_check(almost, real)["collapsed"]
  assert not sgan.generator_check(varied, real)["collapsed"]
  # the spread is on a [0, 1] scale whatever the range: tanh samples in [-1, 1] are halved
  assert sgan.sample_spread(varied, (-1.0, 1.0)) == pytest.approx(
      sgan.sample_spread((varied + 1) / 2, (0.0, 1.0)), rel=1e-5)


def _tiny_sgan():
  """(generator, discriminator, g_tx, d_tx, initial state) of a tiny SGAN on 16x16 images."""
  gen, disc = GeneratorTiny(image_shape=(16, 16, 1)), DiscriminatorTiny(dropout_rate=0.2)
  g_tx, d_tx = sgan.create_optimizers(config_lib.sgan_defaults())
  return gen, disc, g_tx, d_tx, sgan.create_state(gen, disc, g_tx, d_tx, jax.random.key(0),
                                                  (16, 16, 1), 8)


@pytest.mark.slow
def test_gan_augment_chooses_which_images_of_the_real_fake_game_are_augmented():
  gen, disc, g_tx, d_tx, state = _tiny_sgan()
  images, labels = _learnable_batch(8)
  # Constant labelled images: every dihedral transform and edge-padded shift leaves them as they
  # are, so only the real/fake game can see the augmentation.
  batch = {"image": np.full_like(images, 90), "label": labels, "unlabelled": images}
  augment = {"dihedral": True, "max_shift": 2}

  def step(**kw):
    new, metrics = jax.jit(functools.partial(
        sgan.train_step, generator=gen, discriminator=disc, g_tx=g_tx, d_tx=d_tx,
        latent_dim=8, **kw))(state, batch, jax.random.key(1))
    return jax.tree.map(np.asarray, (new.d_params, new.g_params)), metrics

  plain, _ = step(augment=None)
  none, _ = step(augment=augment, gan_augment="none")
  real, _ = step(augment=augment, gan_augment="real")
  both, metrics = step(augment=augment, gan_augment="both")
  same = lambda a, b: all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))
  assert same(none, plain)                      # "none": the game sees plain images
  assert not same(real, plain)                  # "real": D sees augmented real images
  assert not same(both[0], real[0])            # "both": D sees augmented fakes too
  assert not same(both[1], real[1])             # and G's loss goes through the transforms
  assert all(np.isfinite(float(v)) for v in metrics.values())


@pytest.mark.slow
def test_the_sgan_learns_from_its_unlabelled_images_and_the_ablation_does_not():
  gen, disc, g_tx, d_tx, state = _tiny_sgan()
  images, labels = _learnable_batch(8)
  other, _ = _learnable_batch(8, seed=5)
  same = lambda a, b: all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))

  def d_params(unlabelled, gan):
    step = jax.jit(functools.partial(sgan.train_step, generator=gen, discriminator=disc,
                                     g_tx=g_tx, d_tx=d_tx, latent_dim=8, gan=gan))
    new, _ = step(state, {"image": images, "label": labels, "unlabelled": unlabelled},
                  jax.random.key(1))
    return jax.tree.map(np.asarray, new.d_params)

  # the SGAN's discriminator depends on which unlabelled images it saw; the ablation's not
  assert not same(d_params(images[::-1], True), d_params(other, True))
  assert same(d_params(images[::-1], False), d_params(other, False))
