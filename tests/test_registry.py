import jax
import jax.numpy as jnp
import pytest

from medjax import config as config_lib
from medjax.errors import ConfigError
from medjax.train import registry


def _smoke_config(model):
  config = config_lib.base_config("luna", model)
  config.smoke = True
  return config_lib.resolve(config)


def test_the_table_has_every_model_and_only_those():
  assert tuple(registry.TABLE) == config_lib.MODELS
  assert all(registry.model_spec(m).name == m for m in config_lib.MODELS)
  assert [m for m in config_lib.MODELS if registry.model_spec(m).stackable] == ["cnn", "resnet"]
  with pytest.raises(ConfigError, match="unknown model 'vgg'; known: cnn, resnet, dbn, sgan"):
    registry.model_spec("vgg")


@pytest.mark.parametrize("model", config_lib.MODELS)
def test_the_classifier_applies_to_the_variables_of_the_state_template(model):
  """What restore does, in shapes only: the trainer's state template holds the variables the
  classifier takes, and the classifier maps preprocessed uint8 images to two logits."""
  spec = registry.model_spec(model)
  config = _smoke_config(model)
  shape = (50, 50, 1)
  template = spec.state_template(config, shape, 240)
  classifier = spec.classifier(config, shape)
  images = jax.ShapeDtypeStruct((3, *shape), jnp.uint8)
  logits = jax.eval_shape(
      lambda v, x: classifier.apply(v, spec.preprocess(x), train=False),
      spec.variables(template), images)
  assert logits.shape == (3, 2)
