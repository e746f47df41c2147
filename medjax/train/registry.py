"""The model table: for each model name, how it is built, trained, restored and fed.

    spec = model_spec(config.model)
    results = spec.train(config, workdir, dataset)        # results.json's content
    classifier = spec.classifier(config, image_shape)     # the linen module a run tests
    template = spec.state_template(config, image_shape, n_train)   # for orbax restore
    logits = classifier.apply(spec.variables(state), spec.preprocess(images), train=False)

Whatever trains a run or loads a finished one decides by model name here only: the experiment
runner, stacked seeds and the post-run tools (`medjax.analysis`) read the table instead of
testing `config.model` (the configs' per-model defaults live in `medjax.config`).
The classifier of the SGAN is its discriminator, fed images in [-1, 1]; every other model is
fed floats in [0, 1].
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax

from medjax.errors import ConfigError
from medjax.models import create_model
from medjax.models.sgan import to_tanh_range
from medjax.train import dbn, loop, optim, sgan
from medjax.train.state import create_train_state
from medjax.train.supervised import to_float


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """What medjax needs to know about one model.

  classifier      (config, image_shape) -> the linen classifier a run tests
  train           (config, workdir, dataset, *, overwrite, init=None) -> results.json's
                  content; `init`: a `medjax.train.transfer.Pretrained` (config.init_from)
  state_template  (config, image_shape, n_train) -> abstract train state (`jax.eval_shape`),
                  the target a checkpoint is restored into
  variables       train state -> the classifier's variables for `apply`
  preprocess      images as the data feeds them (uint8 or float in [0, 1]) -> classifier input
  stackable       seeds can train together in one vmapped step (`medjax.train.seeds`)
  learning_rates  config -> the learning rates as a log line shows them
  architecture    config -> {dotted config field: value} of the fields besides model and
                  model_size that shape the weights: a run started from another (init_from)
                  must agree on them
  generator       train state -> the generator's variables, for the models that have one
                  (the SGAN: init_from carries it beside the classifier); None for the others
  """
  name: str
  classifier: Callable[[Any, tuple[int, int, int]], Any]
  train: Callable[..., dict[str, Any]]
  state_template: Callable[[Any, tuple[int, int, int], int], Any]
  variables: Callable[[Any], dict[str, Any]]
  preprocess: Callable[[Any], jax.Array]
  stackable: bool
  learning_rates: Callable[[Any], str]
  architecture: Callable[[Any], dict[str, Any]]
  generator: Callable[[Any], dict[str, Any]] | None = None


# --- the supervised models (CNN, ResNet-50, the fine-tuned DBN) --------------------------------

def supervised_classifier(config, image_shape=None):
  """The CNN or ResNet-50 of `config` (model, model_size, dtype, resnet_variant)."""
  variant = config.resnet_variant if config.model == "resnet" else "torchvision"
  return create_model(config.model, size=config.model_size, num_classes=2, dtype=config.dtype,
                      resnet_variant=variant)


def train_supervised(config, workdir: str, dataset, *, overwrite: bool = False, init=None):
  """`init`: a `medjax.train.transfer.Pretrained` to start from (config.init_from)."""
  return loop.train_and_evaluate(config, workdir, dataset, overwrite=overwrite,
                                 model=supervised_classifier(config, dataset.image_shape),
                                 init=init)


def dbn_classifier(config, image_shape=None):
  return dbn.create_classifier(config)


def cnn_architecture(config) -> dict[str, Any]:
  return {}


def resnet_architecture(config) -> dict[str, Any]:
  return {"resnet_variant": config.resnet_variant}


def dbn_architecture(config) -> dict[str, Any]:
  """The hidden sizes the DBN is built with (`dbn.tiny_hidden` for tiny models)."""
  field = "dbn.tiny_hidden" if config.model_size == "tiny" else "dbn.hidden"
  return {field: tuple(dbn.layer_sizes(config)[0])}


def supervised_template(classifier):
  """`state_template` of a model trained by `medjax.train.loop` with `classifier`'s model."""
  def template(config, image_shape, n_train: int):
    tx, _ = optim.adam(config, max(1, n_train // config.batch_size))
    return jax.eval_shape(lambda rng: create_train_state(
        classifier(config, image_shape), tx, rng, image_shape), jax.random.key(config.seed))
  return template


def supervised_variables(state) -> dict[str, Any]:
  return {"params": state.params, "batch_stats": state.batch_stats}


def supervised_learning_rates(config) -> str:
  return f"lr {config.learning_rate:g} ({config.lr_schedule})"


# --- the SGAN ----------------------------------------------------------------------------------

def sgan_discriminator(config, image_shape):
  return sgan.create_models(config, image_shape)[1]


def sgan_template(config, image_shape, n_train: int):
  generator, discriminator = sgan.create_models(config, image_shape)
  g_tx, d_tx = sgan.create_optimizers(config.sgan)
  return jax.eval_shape(lambda rng: sgan.create_state(
      generator, discriminator, g_tx, d_tx, rng, image_shape, config.sgan.latent_dim),
      jax.random.key(config.seed))


def sgan_learning_rates(config) -> str:
  return f"lr D {config.sgan.d_learning_rate:g} / G {config.sgan.g_learning_rate:g}"


def sgan_variables(state) -> dict[str, Any]:
  return {"params": state.d_params}


def sgan_generator(state) -> dict[str, Any]:
  return {"params": state.g_params}


def sgan_architecture(config) -> dict[str, Any]:
  """The channels G and D are built with (at most 8 in tiny models) and G's noise size."""
  return {"sgan.features": sgan.model_features(config), "sgan.latent_dim": config.sgan.latent_dim}


SUPERVISED = {"variables": supervised_variables, "preprocess": to_float,
              "learning_rates": supervised_learning_rates}
TABLE = {
    "cnn": ModelSpec("cnn", supervised_classifier, train_supervised,
                     supervised_template(supervised_classifier), stackable=True,
                     architecture=cnn_architecture, **SUPERVISED),
    "resnet": ModelSpec("resnet", supervised_classifier, train_supervised,
                        supervised_template(supervised_classifier), stackable=True,
                        architecture=resnet_architecture, **SUPERVISED),
    "dbn": ModelSpec("dbn", dbn_classifier, dbn.train_and_evaluate,
                     supervised_template(dbn_classifier), stackable=False,
                     architecture=dbn_architecture, **SUPERVISED),
    "sgan": ModelSpec("sgan", sgan_discriminator, sgan.train_and_evaluate, sgan_template,
                      variables=sgan_variables, preprocess=to_tanh_range, stackable=False,
                      learning_rates=sgan_learning_rates, architecture=sgan_architecture,
                      generator=sgan_generator),
}


def model_spec(name: str) -> ModelSpec:
  """The table's row of model `name`."""
  if name not in TABLE:
    raise ConfigError(f"unknown model {name!r}; known: {', '.join(TABLE)}")
  return TABLE[name]
