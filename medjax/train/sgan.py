"""Semi-supervised GAN training (Odena 2016; Salimans et al. 2016, "Improved Techniques").

The discriminator's K logits serve two heads: C = softmax(logits) classifies real images, and
D = Z / (Z + 1), Z = sum(exp(logits)), says "real" (the K+1-th class, fake, has logit 0). With
lse = logsumexp(logits), D = sigmoid(lse), so every GAN term is a softplus of lse:
  -log D(x) = softplus(-lse),   -log(1 - D(x)) = softplus(lse).

One jitted step (`train_step`):
  1. G generates a batch from fresh noise (one forward pass, kept with its VJP).
  2. The discriminator takes ONE Adam step on
       L_disc = L_C + unsupervised_weight * (L_D_real + L_D_fake)
     with L_C the cross-entropy on a labelled batch, L_D_real = mean softplus(-lse) on an
     unlabelled real batch and L_D_fake = mean softplus(lse) on the generated batch (the
     sum used by Salimans et al.; C and D share every discriminator parameter, so one loss and
     one optimizer state is the exact joint update, not two half-steps).
  3. G takes one Adam step, through the updated discriminator, on the non-saturating loss
     mean softplus(-lse(G(z))) or, with `feature_matching`, on the squared distance between the
     mean trunk features of the real and generated batches. Its gradient reuses step 1's VJP.
G and the discriminator have separate optimizers and optimizer states.

`train_and_evaluate` is the epoch loop: one epoch = one pass over the training images as the
unlabelled stream; labelled batches cycle through the labelled ones (all of them, or the
`data.num_labelled` subset, `Dataset.unlabelled` holding the rest).

With `init` (config.init_from: a finished SGAN run's workdir) the discriminator and the generator
both start from the source's tested checkpoint (`medjax.train.transfer.initialize_sgan`), with
fresh Adam states; the game then goes on as in any run. The fine-tuning fields of the
supervised optimizer (freeze_backbone, backbone_learning_rate) do not apply (`medjax.config`).
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

from medjax.data import Dataset, Split, batches
from medjax.data.base import concatenate_splits
from medjax.models import DTYPES
from medjax.models.sgan import (Discriminator, DiscriminatorTiny, Generator, GeneratorTiny,
                                real_fake_logit, real_probability, to_tanh_range)
from medjax.eval import plots
from medjax.rundir import RunDir
from medjax.train import driver, loop, transfer
from medjax.train.augment import augment_batch
from medjax.train.epoch import first_step, run_chunks
from medjax.train.profile import NO_PROFILER, StepProfiler
from medjax.train.state import count_params, seed_rngs

log = logging.getLogger(__name__)


@flax.struct.dataclass
class SGANState:
  step: jax.Array
  g_params: Any
  d_params: Any
  g_opt_state: Any
  d_opt_state: Any


def model_features(config) -> int:
  """Channels of every G and D convolution: `sgan.features`, at most 8 in tiny models."""
  return min(config.sgan.features, 8) if config.model_size == "tiny" else config.sgan.features


def create_models(config, image_shape):
  """(generator, discriminator) for `config` (model_size, dtype, sgan block)."""
  s = config.sgan
  dtype = DTYPES[config.dtype] if isinstance(config.dtype, str) else config.dtype
  tiny = config.model_size == "tiny"
  features = model_features(config)
  gen = (GeneratorTiny if tiny else Generator)(
      image_shape=tuple(image_shape), features=features, dtype=dtype)
  disc = (DiscriminatorTiny if tiny else Discriminator)(
      num_classes=2, features=features, dropout_rate=s.dropout_rate, dtype=dtype)
  return gen, disc


def create_optimizers(sgan_config):
  """(g_tx, d_tx): separate Adam optimizers."""
  s = sgan_config
  return (optax.adam(s.g_learning_rate, b1=s.g_beta1),
          optax.adam(s.d_learning_rate, b1=s.d_beta1))


def create_state(generator, discriminator, g_tx, d_tx, rng, image_shape, latent_dim
                 ) -> SGANState:
  """Both networks and optimizer states in one jitted function, compiled once and cached
  (`medjax.train.state.create_train_state` says why)."""
  def init_sgan_state(rng):
    g_rng, d_rng = jax.random.split(rng)
    g_params = generator.init(g_rng, jnp.zeros((1, latent_dim)))["params"]
    d_params = discriminator.init(d_rng, jnp.zeros((1, *image_shape)))["params"]
    return SGANState(step=jnp.zeros((), jnp.int32), g_params=g_params, d_params=d_params,
                     g_opt_state=g_tx.init(g_params), d_opt_state=d_tx.init(d_params))
  return jax.jit(init_sgan_state)(rng)


def classification_loss(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def real_loss(logits, smoothing: float = 0.0):
  """-log D(x) for real x: softplus(-lse), finite for any finite logits. With one-sided label
  smoothing (Salimans et al. 2016) the real target is 1 - smoothing: the cross-entropy adds
  smoothing * -log(1 - D(x)) = smoothing * softplus(lse)."""
  lse = real_fake_logit(logits)
  return ((1 - smoothing) * jax.nn.softplus(-lse) + smoothing * jax.nn.softplus(lse)).mean()


def fake_loss(logits):
  """-log(1 - D(x)) for generated x: softplus(lse)."""
  return jax.nn.softplus(real_fake_logit(logits)).mean()


def train_step(state: SGANState, batch: dict[str, Any], rng, *, generator, discriminator,
               g_tx, d_tx, latent_dim: int, unsupervised_weight: float = 1.0,
               feature_matching: bool = False, label_smoothing: float = 0.0,
               augment: dict[str, Any] | None = None, gan_augment: str = "both",
               gan: bool = True) -> tuple[SGANState, dict[str, Any]]:
  """batch: {"image", "label"} (labelled) and "unlabelled" (real images, labels unused).

  `augment` always applies to the labelled batch (the classifier's); `gan_augment` says which
  images of the real/fake game see it: "both" (DiffAugment, Zhao et al. 2020: the same random
  transforms, differentiable, on real and generated images, in D's and G's losses), "real"
  (real images only: D can then tell real from generated by the transforms' traces, such as
  the edge-padded border rows of a shift) or "none".

  `gan=False` is the SGAN's ablation: the discriminator alone, a K-class classifier trained on
  the labelled batch (same architecture, dropout, augmentation and optimizer); no generator
  step, no unlabelled images.
  """
  step_rng = jax.random.fold_in(rng, state.step)
  z_rng, aug_rng, d_drop, g_drop = jax.random.split(step_rng, 4)
  l_rng, u_rng = jax.random.split(aug_rng)  # as before gan_augment existed ("real")
  f_rng, g_rng = jax.random.split(jax.random.fold_in(aug_rng, 1))

  def aug(images, rng, applies=True):
    return augment_batch(images, rng, **augment) if augment and applies else images

  labelled = aug(to_tanh_range(batch["image"]), l_rng)
  if not gan:
    return _classifier_step(state, labelled, batch["label"], d_drop, discriminator, d_tx)
  unlabelled = aug(to_tanh_range(batch["unlabelled"]), u_rng, gan_augment != "none")
  augment_fake = gan_augment == "both"
  n_l, n_u = labelled.shape[0], unlabelled.shape[0]
  z = jax.random.normal(z_rng, (n_u, latent_dim))
  fake, g_vjp = jax.vjp(lambda p: generator.apply({"params": p}, z), state.g_params)

  def apply_d(params, images, rng, **kw):
    return discriminator.apply({"params": params}, images, train=True, rngs={"dropout": rng},
                               **kw)

  def d_loss_fn(params):
    # One pass over the three batches (no BatchNorm, so batches do not interact): a third of
    # the graph to compile and larger matmuls than three separate passes.
    images = jnp.concatenate([labelled, unlabelled,
                              aug(jax.lax.stop_gradient(fake), f_rng, augment_fake)])
    logits = apply_d(params, images, d_drop)
    logits_l, logits_u, logits_f = logits[:n_l], logits[n_l:n_l + n_u], logits[n_l + n_u:]
    c_loss = classification_loss(logits_l, batch["label"])
    r_loss, f_loss = real_loss(logits_u, label_smoothing), fake_loss(logits_f)
    aux = {"c_loss": c_loss, "d_real_loss": r_loss, "d_fake_loss": f_loss,
           "accuracy": jnp.mean(jnp.argmax(logits_l, -1) == batch["label"]),
           "d_real": jnp.mean(real_probability(logits_u)),
           "d_fake": jnp.mean(real_probability(logits_f))}
    return c_loss + unsupervised_weight * (r_loss + f_loss), aux

  with jax.named_scope("discriminator_step"):  # the scopes name the two halves in profiles
    (d_loss, aux), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.d_params)
    d_updates, d_opt_state = d_tx.update(d_grads, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, d_updates)

  def g_loss_fn(fake):
    fake = aug(fake, g_rng, augment_fake)  # differentiable: G learns through the transforms
    if feature_matching:
      _, features = apply_d(d_params, jnp.concatenate([unlabelled, fake]), g_drop,
                            return_features=True)
      real_features = jax.lax.stop_gradient(features[:n_u])
      diff = jnp.mean(real_features, 0) - jnp.mean(features[n_u:], 0)
      return jnp.mean(jnp.square(diff))
    return real_loss(apply_d(d_params, fake, g_drop))  # non-saturating: -log D(G(z))

  with jax.named_scope("generator_step"):
    g_loss, fake_grads = jax.value_and_grad(g_loss_fn)(fake)
    (g_grads,) = g_vjp(fake_grads)
    g_updates, g_opt_state = g_tx.update(g_grads, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, g_updates)

  metrics = {"loss": d_loss, "g_loss": g_loss, **aux,
             "d_grad_norm": optax.tree.norm(d_grads), "g_grad_norm": optax.tree.norm(g_grads),
             "d_param_norm": optax.tree.norm(d_params),
             "g_param_norm": optax.tree.norm(g_params)}
  new_state = SGANState(step=state.step + 1, g_params=g_params, d_params=d_params,
                        g_opt_state=g_opt_state, d_opt_state=d_opt_state)
  return new_state, metrics


def _classifier_step(state: SGANState, images, labels, rng, discriminator, d_tx):
  """One Adam step of the discriminator on the classification loss alone (G untouched)."""
  def loss_fn(params):
    logits = discriminator.apply({"params": params}, images, train=True, rngs={"dropout": rng})
    loss = classification_loss(logits, labels)
    return loss, {"c_loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}

  (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.d_params)
  updates, d_opt_state = d_tx.update(grads, state.d_opt_state, state.d_params)
  d_params = optax.apply_updates(state.d_params, updates)
  metrics = {"loss": loss, **aux, "d_grad_norm": optax.tree.norm(grads),
             "d_param_norm": optax.tree.norm(d_params)}
  return state.replace(step=state.step + 1, d_params=d_params, d_opt_state=d_opt_state), metrics


def eval_step(state: SGANState, batch: dict[str, Any], *, discriminator):
  """C's class probabilities [N, K] (no dropout); real images mapped to [-1, 1] as in training."""
  logits = discriminator.apply({"params": state.d_params}, to_tanh_range(batch["image"]),
                               train=False)
  return jax.nn.softmax(logits, axis=-1)


def generate(state: SGANState, z, *, generator):
  return generator.apply({"params": state.g_params}, z)


# The generator counts as collapsed when its samples vary across images by less than this
# fraction of the real images' variation: the discriminator then rejects them all and the
# unsupervised half of the loss teaches it nothing (the classifier trains as a supervised one).
COLLAPSE_FRACTION = 0.1


def sample_spread(images, value_range: tuple[float, float]) -> float:
  """How much images differ from one another: the standard deviation across the images, per
  pixel, averaged over pixels, on a [0, 1] intensity scale."""
  return float(plots.unit_range(images, value_range).std(axis=0).mean())


def generator_check(fake, real) -> dict[str, Any]:
  """`results.json`'s "generator" block: the spread of G's samples (tanh range) against that of
  real images ([0, 1] or uint8), and whether G has collapsed."""
  fake_spread, real_spread = sample_spread(fake, (-1.0, 1.0)), sample_spread(real, (0.0, 1.0))
  collapsed = fake_spread < COLLAPSE_FRACTION * real_spread
  return {"sample_spread": round(fake_spread, 5), "real_spread": round(real_spread, 5),
          "collapsed": bool(collapsed)}


def labelled_batches(split: Split, batch_size: int, steps: int, *, seed: int, epoch: int):
  """`steps` batches cycling through `split` in reshuffled passes; depends only on (seed, epoch),
  so a resumed run sees the same batches."""
  rng = np.random.default_rng([seed, epoch, 0x1AB])
  need = steps * batch_size
  order = np.concatenate([rng.permutation(len(split)) for _ in range(-(-need // len(split)))])
  for i in range(steps):
    idx = order[i * batch_size:(i + 1) * batch_size]
    yield split.images[idx], split.labels[idx]


class SGANEpochs:
  """The SGAN's epoch source for the driver: one epoch is one pass over every training image
  (`split`, labelled or not) as the unlabelled stream, each step paired with a labelled batch
  cycling through `labelled`. Without `unlabelled` (the ablation, `sgan.gan=False`) the steps
  get the labelled batches only: the stream then sets the number of steps and nothing else."""

  def __init__(self, step_fn, split: Split, labelled: Split, batch_size: int, *,
               seed: int, chunk: int, rng, unlabelled: bool = True):
    self.step_fn, self.split, self.labelled = step_fn, split, labelled
    self.batch_size, self.seed, self.chunk, self.rng = batch_size, seed, chunk, rng
    self.unlabelled = unlabelled
    self.steps_per_epoch = len(split) // batch_size

  def run(self, state, epoch: int, profiler: StepProfiler = NO_PROFILER):
    steps = labelled_batches(self.labelled, self.batch_size, self.steps_per_epoch,
                             seed=self.seed, epoch=epoch)
    if self.unlabelled:
      steps = ({"image": images, "label": labels, "unlabelled": unlabelled["image"]}
               for unlabelled, (images, labels) in zip(
                   batches(self.split, self.batch_size, seed=self.seed, epoch=epoch), steps))
    else:
      steps = ({"image": images, "label": labels} for images, labels in steps)
    return run_chunks(self.step_fn, state, steps, self.rng, self.chunk,
                      first_step=first_step(epoch, self.steps_per_epoch), profiler=profiler)


def train_and_evaluate(config, workdir: str, dataset: Dataset, *, overwrite: bool = False,
                       init=None) -> dict[str, Any]:
  """Trains the SGAN, evaluates C on the test split and writes results.json (see results.py).
  `init`: a `medjax.train.transfer.Pretrained` of an SGAN run to start D and G from."""
  with RunDir.open(config, workdir, dataset, overwrite=overwrite) as run:
    log.info("data: %s", dataset.summary())
    s = config.sgan
    image_shape = dataset.image_shape
    generator, discriminator = create_models(config, image_shape)
    g_tx, d_tx = create_optimizers(s)
    init_rng, train_rng = seed_rngs(config.seed)
    sample_rng = jax.random.fold_in(init_rng, 0x5A)
    state = create_state(generator, discriminator, g_tx, d_tx, init_rng, image_shape,
                         s.latent_dim)
    init_summary = None
    if init is not None:
      state, init_summary = transfer.initialize_sgan(state, g_tx, d_tx, init)
      log.info("init_from: %s", transfer.describe(init_summary))
    # Every training image feeds the real/fake game; the labelled ones also the classifier.
    stream = dataset.train if dataset.unlabelled is None else concatenate_splits(
        dataset.train, dataset.unlabelled)
    if s.gan:
      log.info("sgan: G %s / D %s parameters (%s, %s); %d labelled of %d training images; "
               "Adam D %g (b1 %g), G %g (b1 %g); %s; augmented in the GAN terms: %s",
               f"{count_params(state.g_params):,}", f"{count_params(state.d_params):,}",
               config.model_size, config.dtype, len(dataset.train), len(stream),
               s.d_learning_rate, s.d_beta1, s.g_learning_rate, s.g_beta1,
               "G by feature matching" if s.feature_matching else "G non-saturating",
               s.gan_augment)
    else:
      log.info("sgan.gan=False: the discriminator alone (%s parameters) as a classifier of the "
               "%d labelled images, %d steps an epoch; no generator, no unlabelled images",
               f"{count_params(state.d_params):,}", len(dataset.train),
               len(stream) // config.batch_size)

    train_fn = jax.jit(functools.partial(
        train_step, generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx,
        latent_dim=s.latent_dim, unsupervised_weight=s.unsupervised_weight,
        feature_matching=s.feature_matching, label_smoothing=s.label_smoothing,
        augment=loop.augment_config(config), gan_augment=s.gan_augment, gan=s.gan),
        donate_argnums=0)
    eval_fn = jax.jit(functools.partial(eval_step, discriminator=discriminator))
    sample_fn = jax.jit(functools.partial(generate, generator=generator))
    sample_z = jax.random.normal(sample_rng, (s.sample_grid ** 2, s.latent_dim))
    samples_dir = run.file("samples")
    if run.writer and s.gan:
      os.makedirs(samples_dir, exist_ok=True)
    real = dataset.train.images[:s.sample_grid ** 2]
    member = driver.Member(config, run, events=loop.open_events(run))
    warned = []

    def on_epoch_end(epoch, state):
      if not s.gan or not (epoch == 1 or epoch % s.sample_every == 0 or epoch == config.num_epochs):
        return
      fake = np.asarray(sample_fn(state, sample_z))
      check = generator_check(fake, real)
      if check["collapsed"] and not warned:
        warned.append(epoch)
        log.warning(
            "the generator has collapsed after epoch %d: its samples differ by %.4f (real "
            "images: %.4f), so the discriminator rejects them all and the SGAN trains as a "
            "supervised classifier; see %s. Try --config.sgan.feature_matching=True, a lower "
            "--config.sgan.d_learning_rate or --config.sgan.label_smoothing=0.1", epoch,
            check["sample_spread"], check["real_spread"], samples_dir)
      member.events.scalars(epoch, {"generator_sample_spread": check["sample_spread"]})
      if run.writer:
        plots.save_sample_grid(
            os.path.join(samples_dir, f"epoch_{epoch:03d}.png"), fake, real,
            f"{config.experiment} seed {config.seed}: SGAN samples after epoch {epoch}",
            marks=plots.data_marks(dataset.synthetic, config.smoke))
      member.events.image(epoch, "samples/generated", plots.tile(fake, (-1.0, 1.0)))

    state, start = driver.restore([member], state)
    task = driver.Task(
        source=SGANEpochs(train_fn, stream, dataset.train, config.batch_size,
                          seed=config.seed, chunk=config.log_every, rng=train_rng,
                          unlabelled=s.gan),
        eval_fn=eval_fn, images_per_step=config.batch_size,
        finite=("loss", "g_loss", "d_grad_norm", "g_grad_norm") if s.gan else
        ("loss", "d_grad_norm"),
        shown=(("C loss", "c_loss"), ("acc", "accuracy"), ("D real", "d_real"),
               ("D fake", "d_fake"), ("G loss", "g_loss")) if s.gan else
        (("C loss", "c_loss"), ("acc", "accuracy")),
        on_epoch_end=on_epoch_end)
    try:
      state = driver.fit(task, [member], state, start, dataset)
      return driver.finish_member(
          member, state, dataset, eval_fn,
          extra={"learning_rate": s.d_learning_rate, "g_learning_rate": s.g_learning_rate,
                 "num_labelled": len(dataset.train),
                 "n_unlabelled": len(stream) - len(dataset.train) if s.gan else 0,
                 "gan": bool(s.gan), "feature_matching": bool(s.feature_matching),
                 "gan_augment": s.gan_augment, "samples": "samples" if s.gan else None,
                 # G as training left it (also when a finished run is only re-tested)
                 "generator": generator_check(np.asarray(sample_fn(state, sample_z)), real)
                 if s.gan else None,
                 **({"init_from": init_summary} if init_summary is not None else {})})
    finally:
      member.events.close()
