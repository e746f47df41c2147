"""The weights `config.init_from` names, read for `medjax.train.transfer`.

    pretrained = load(config)    # None when init_from is unset

- a directory: a finished medjax run (its tested checkpoint, restored as `medjax.analysis.restore`
  restores it) of the same model, e.g. a LUNA16 run to start a hip run from;
- `*.h5`: Keras's ResNet-50 weights, into `resnet_variant="keras"`: the files Keras applications
  download (`resnet50_weights_tf_dim_ordering_tf_kernels[_notop].h5`, the legacy HDF5 layout) or
  what Keras 3's `save_weights` writes (`*.weights.h5`);
- `*.pth` / `*.pt`: a torchvision ResNet-50 `state_dict`, into `resnet_variant="torchvision"`
  (needs torch).
"""

from __future__ import annotations

import os

from medjax.analysis.restore import Restored, restore
from medjax.errors import ConfigError
from medjax.models import convert
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
  run = restore(workdir)
  if not isinstance(run, Restored):
    raise ConfigError(f"init_from={workdir} is a seed ensemble: name one of its members' "
                      "workdirs")
  source = run.config
  mismatch = [f"{name}={source.get(name)!r} (this run: {config.get(name)!r})"
              for name in ("model", "model_size", "resnet_variant")
              if source.get(name) != config.get(name)]
  if mismatch:
    raise ConfigError(f"init_from={workdir} is a run of another model: {', '.join(mismatch)}")
  return Pretrained(run.variables, source=f"run {workdir} (epoch {run.epoch})", kind="run")
