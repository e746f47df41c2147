"""The weights `config.init_from` names, read for `medjax.train.transfer`.

    pretrained = load(config)    # None when init_from is unset

- a directory: a finished medjax run (its tested checkpoint, restored as `medjax.analysis.restore`
  restores it) of the same model and architecture (model_size and the table's
  `ModelSpec.architecture` fields: resnet_variant, the DBN's hidden sizes, the SGAN's features
  and latent_dim), e.g. a LUNA16 run to start a hip run from; an SGAN run carries its
  generator too;
- `*.h5`: Keras's ResNet-50 weights, into `resnet_variant="keras"`: the files Keras applications
  download (`resnet50_weights_tf_dim_ordering_tf_kernels[_notop].h5`, the legacy HDF5 layout) or
  what Keras 3's `save_weights` writes (`*.weights.h5`);
- `*.pth` / `*.pt`: a torchvision ResNet-50 `state_dict`, into `resnet_variant="torchvision"`
  (needs torch).
"""

from __future__ import annotations

import os

from medjax.analysis.restore import is_ensemble, restore
from medjax.errors import ConfigError
from medjax.models import convert
from medjax.train.registry import model_spec
from medjax.train.transfer import Pretrained

TORCH_SUFFIXES = (".pth", ".pt")


def load(config) -> Pretrained | None:
  """The weights of `config.init_from`, or None when it is unset. ConfigError when they cannot
  go into the configured model (another model or ResNet variant, a tiny model); DataError when
  the file is not what its name says."""
  path = config.init_from
  if not path:
    return None
  if os.path.isdir(path):
    return _from_run(config, path)
  if path.endswith(".h5"):
    _check_resnet50(config, path, "keras", "a Keras ResNet-50 weights file")
    layers = convert.read_keras_h5(path)
    return Pretrained(convert.keras_resnet_variables(layers, path),
                      source=f"Keras ResNet-50 weights {path}", kind="keras")
  if path.endswith(TORCH_SUFFIXES):
    _check_resnet50(config, path, "torchvision", "a torchvision ResNet-50 state_dict")
    state = convert.read_torch_state_dict(path)
    return Pretrained(convert.torchvision_resnet_variables(state, path),
                      source=f"torchvision ResNet-50 state_dict {path}", kind="torchvision")
  if not os.path.exists(path):
    raise ConfigError(f"init_from={path}: no such file or directory")
  raise ConfigError(f"init_from={path}: expected a finished run's workdir, a Keras weights "
                    f"file (.h5) or a PyTorch state_dict ({', '.join(TORCH_SUFFIXES)})")


def _check_resnet50(config, path: str, variant: str, what: str) -> None:
  if config.model != "resnet":
    raise ConfigError(f"init_from={path} is {what}: it initialises a ResNet-50 "
                      f"(experiments *_resnet with resnet_variant={variant}), not a "
                      f"{config.model}")
  if config.resnet_variant != variant:
    raise ConfigError(f"init_from={path} is {what}: set --config.resnet_variant={variant} "
                      f"(the model is resnet_variant={config.resnet_variant})")
  if config.model_size != "full":
    raise ConfigError(f"init_from={path} is {what}: it needs model_size='full' (not smoke or "
                      "tiny)")


def _from_run(config, workdir: str) -> Pretrained:
  if is_ensemble(workdir):
    raise ConfigError(f"init_from={workdir} is a seed ensemble: name one of its members' "
                      "workdirs")
  run = restore(workdir, keep_state=True)
  source, spec = run.config, model_spec(run.config.model)
  # (the source's value, this run's) of the fields that shape the weights
  fields = {name: (source.get(name), config.get(name)) for name in ("model", "model_size")}
  if source.model == config.model:
    theirs, mine = spec.architecture(source), spec.architecture(config)
    fields.update({name: (theirs[name], mine[name]) for name in mine if name in theirs})
  mismatch = [f"{name}={value!r} (this run: {own!r})"
              for name, (value, own) in fields.items() if value != own]
  if mismatch:
    raise ConfigError(f"init_from={workdir} is a run of another model: {', '.join(mismatch)}")
  return Pretrained(run.variables, source=f"run {workdir} (epoch {run.epoch})", kind="run",
                    generator=spec.generator(run.state) if spec.generator else None)
