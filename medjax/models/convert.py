"""Other frameworks' ResNet-50 weights as medjax variables ({"params", "batch_stats"}).

    layers = read_keras_h5(path)                # Keras's weights files, both layouts
    variables = keras_resnet_variables(layers, path)           # -> ResNet(variant="keras")
    variables = torchvision_resnet_variables(state_dict, path)  # -> ResNet(variant="torchvision")

The variables keep the source's shapes (3 input channels, its class count, or no head for
Keras's `include_top=False` files); `medjax.train.transfer` fits them to a model. A layer the
model does not have is a DataError naming it. h5py and torch are imported only here, inside the
functions that need them.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

import numpy as np

from medjax.errors import ConfigError, DataError

# Keras's classifier layer; medjax names every classifier's last layer "logits".
KERAS_HEAD = "predictions"
_KERAS_WEIGHTS = {"conv": ("kernel", "bias"), "bn": ("gamma", "beta", "moving_mean",
                                                      "moving_variance"),
                  "dense": ("kernel", "bias")}


def _h5py():
  try:
    import h5py
  except ImportError:
    raise ConfigError("reading a Keras .h5 weights file needs h5py: pip install "
                      "'medjax[h5]'") from None
  return h5py


def _attr_list(group, name: str) -> list[str]:
  """A list-of-strings attribute of the legacy layout, also when Keras split it into chunks
  (`name0`, `name1`, ...) to stay under HDF5's header limit."""
  if name in group.attrs:
    values = list(group.attrs[name])
  else:
    values, k = [], 0
    while f"{name}{k}" in group.attrs:
      values += list(group.attrs[f"{name}{k}"])
      k += 1
  return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def read_keras_h5(path: str) -> dict[str, dict[str, np.ndarray]]:
  """{layer name: {weight name: array}} of a Keras weights file: the legacy HDF5 layout
  (`layer_names` / `weight_names` attributes, as in keras-applications'
  `resnet50_weights_tf_dim_ordering_tf_kernels[_notop].h5`, Keras 2's `save_weights` and the
  `model_weights` group of a whole-model .h5) or Keras 3's `.weights.h5` (`layers/<key>/vars/<i>`,
  the layer's name in the `name` attribute of `vars`). Layers without weights are left out."""
  h5py = _h5py()
  if not os.path.isfile(path):
    raise DataError(f"{path}: no such file")
  try:
    f = h5py.File(path, "r")
  except OSError as e:
    raise DataError(f"{path} is not an HDF5 file ({e})") from None
  with f:
    root = f["model_weights"] if "model_weights" in f and "layer_names" not in f.attrs else f
    if _attr_list(root, "layer_names"):
      return _read_legacy(root, path)
    if "layers" in f:
      return _read_keras3(f["layers"], path)
  raise DataError(f"{path} is neither Keras's legacy HDF5 weights layout (no layer_names "
                  "attribute) nor a Keras 3 .weights.h5 (no layers/ group)")


def _read_legacy(root, path: str) -> dict[str, dict[str, np.ndarray]]:
  layers = {}
  for name in _attr_list(root, "layer_names"):
    if name not in root:
      raise DataError(f"{path}: layer {name} is listed in layer_names but has no group")
    group = root[name]
    weights = {}
    for weight in _attr_list(group, "weight_names"):
      # 'conv1_conv/kernel:0' (Keras 2, the applications files) or 'kernel' (Keras 3).
      weights[weight.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(group[weight])
    if weights:
      layers[name] = weights
  return layers


def _read_keras3(group, path: str) -> dict[str, dict[str, np.ndarray]]:
  layers = {}
  for key, layer in group.items():
    if "vars" not in layer or not len(layer["vars"]):
      continue
    variables = layer["vars"]
    name = variables.attrs.get("name", key)
    name = name.decode("utf8") if isinstance(name, bytes) else str(name)
    kind = _keras_kind(name)
    if kind is None:
      raise DataError(f"{path}: layer {name} (layers/{key}) is not a layer of Keras's "
                      "ResNet-50" + ("" if "name" in variables.attrs else
                                     " (this .weights.h5 does not record layer names: load it "
                                     "into keras.applications.ResNet50 and save it again with "
                                     "a recent Keras 3, or save the legacy .h5 layout)"))
    names = _KERAS_WEIGHTS[kind]
    if len(variables) != len(names):
      raise DataError(f"{path}: layer {name} holds {len(variables)} arrays, expected "
                      f"{len(names)} ({', '.join(names)})")
    layers[name] = {w: np.asarray(variables[str(i)]) for i, w in enumerate(names)}
  return layers


def _keras_kind(name: str) -> str | None:
  """"conv", "bn" or "dense" for a weighted layer name of Keras's ResNet-50, else None."""
  if name == KERAS_HEAD:
    return "dense"
  m = re.fullmatch(r"conv1_(conv|bn)|conv\d_block\d+_\d_(conv|bn)", name)
  return (m.group(1) or m.group(2)) if m else None


def keras_resnet_variables(layers: Mapping[str, Mapping[str, np.ndarray]],
                           source: str) -> dict[str, Any]:
  """`read_keras_h5`'s layers as variables of `ResNet(variant="keras")`; `source` names the
  file in errors."""
  params: dict[str, Any] = {}
  stats: dict[str, Any] = {}
  for name, weights in layers.items():
    kind = _keras_kind(name)
    if kind is None:
      raise DataError(f"{source}: layer {name} is not a layer of Keras's ResNet-50")
    missing = [w for w in _KERAS_WEIGHTS[kind] if w not in weights]
    if missing:
      raise DataError(f"{source}: layer {name} has no {', '.join(missing)}")
    if name == KERAS_HEAD:
      path = ("logits",)
    elif name.startswith("conv1_"):
      path = (name,)
    else:
      block, layer = re.fullmatch(r"(conv\d_block\d+)_(.*)", name).groups()
      path = (block, layer)
    w = {k: np.asarray(v, np.float32) for k, v in weights.items()}
    if kind == "bn":
      _put(params, path, {"scale": w["gamma"], "bias": w["beta"]})
      _put(stats, path, {"mean": w["moving_mean"], "var": w["moving_variance"]})
    else:
      _put(params, path, {"kernel": w["kernel"], "bias": w["bias"]})
  return {"params": params, "batch_stats": stats}


def _put(tree: dict, path: tuple[str, ...], value) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def read_torch_state_dict(path: str) -> dict[str, np.ndarray]:
  """A PyTorch `state_dict` (.pth / .pt) as numpy arrays, read on the CPU without running any
  pickled code (`weights_only=True`)."""
  try:
    import torch
  except ImportError:
    raise ConfigError(f"{path} is a PyTorch state_dict: reading it needs torch: pip install "
                      "'medjax[torch]'") from None
  if not os.path.isfile(path):
    raise DataError(f"{path}: no such file")
  try:
    state = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # pickle, zip and torch's own errors
    raise DataError(f"cannot read {path} as a PyTorch state_dict: {e}") from None
  if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
    state = state["state_dict"]  # a training checkpoint that wraps it
  if not isinstance(state, dict):
    raise DataError(f"{path} holds a {type(state).__name__}, not a state_dict")
  return {k: v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
          for k, v in state.items()}


TORCH_STAGES = (3, 4, 6, 3)


def torchvision_resnet_variables(state: Mapping[str, np.ndarray], source: str, *,
                                 stage_sizes=TORCH_STAGES) -> dict[str, Any]:
  """A torchvision ResNet-50 `state_dict` (keys `conv1.weight`, `layer1.0.bn2.running_mean`,
  ..., `fc.bias`; a `module.` prefix from DataParallel is dropped) as variables of
  `ResNet(variant="torchvision")`: OIHW kernels become HWIO, `fc.weight` [out, in] becomes
  [in, out]."""
  state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
  names = {"conv1": ("stem_conv",), "bn1": ("stem_norm",), "fc": ("logits",)}
  block = 0
  for s, n in enumerate(stage_sizes):
    for j in range(n):
      prefix, target = f"layer{s + 1}.{j}", f"Bottleneck_{block}"
      for i in range(3):
        names[f"{prefix}.conv{i + 1}"] = (target, f"Conv_{i}")
        names[f"{prefix}.bn{i + 1}"] = (target, f"BatchNorm_{i}")
      names[f"{prefix}.downsample.0"] = (target, "proj_conv")
      names[f"{prefix}.downsample.1"] = (target, "proj_norm")
      block += 1
  params: dict[str, Any] = {}
  stats: dict[str, Any] = {}
  for key, value in state.items():
    layer, _, weight = key.rpartition(".")
    if weight == "num_batches_tracked":
      continue
    if layer not in names:
      raise DataError(f"{source}: {key} is not a weight of torchvision's ResNet-50 "
                      "(a ResNet-50 v1.5 state_dict has conv1, bn1, layer1-4 and fc)")
    path, value = names[layer], np.asarray(value, np.float32)
    if weight == "weight" and value.ndim == 4:
      _put(params, path + ("kernel",), value.transpose(2, 3, 1, 0))
    elif weight == "weight" and value.ndim == 2:
      _put(params, path + ("kernel",), value.T)
    elif weight == "weight":
      _put(params, path + ("scale",), value)
    elif weight == "bias":
      _put(params, path + ("bias",), value)
    elif weight in ("running_mean", "running_var"):
      _put(stats, path + ({"running_mean": "mean", "running_var": "var"}[weight],), value)
    else:
      raise DataError(f"{source}: {key} is not a weight of torchvision's ResNet-50")
  return {"params": params, "batch_stats": stats}
