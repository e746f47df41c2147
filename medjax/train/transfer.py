"""Starting a run from other weights (`config.init_from`) and fine-tuning them.

    pretrained = Pretrained(variables, source="Keras ResNet-50 weights x.h5", kind="keras")
    state, summary = initialize(state, tx, pretrained)   # fitted to the model, fresh optimizer
    state, summary = initialize_sgan(state, g_tx, d_tx, pretrained)   # an SGAN run's D and G

`fit_variables` fits the source's variables to the model's, layer by layer:
- the input convolution takes the source's RGB kernels summed over the input channels when the
  model has 1 channel (a grey image gives the activations the source gives it as RGB), and a
  1-channel kernel repeated over 3 channels and divided by 3 (an image whose channels are equal
  gives the source's activations);
- the head (`logits`) is kept from the model's fresh initialisation when the source has none
  (Keras's `include_top=False` files) or another class count (ImageNet's 1000);
- any other difference (a layer missing on either side, another shape, a head of the same class
  count but another input size) is a ConfigError naming the layer.

Every model starts from a finished run of its own kind (`medjax.analysis.pretrained`): the CNN,
ResNet-50 and DBN through `initialize` (the supervised loop's state), the SGAN through
`initialize_sgan`, which fits its discriminator and its generator alike.

Fine-tuning: `param_labels` splits the parameters into "head" and "backbone" for the
supervised optimizer (`medjax.train.optim`: `backbone_learning_rate`, `freeze_backbone`), which
the CNN, ResNet-50 and DBN train with; the SGAN has optimizers of its own and refuses those
fields (`medjax.config`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from medjax.errors import ConfigError

HEAD = "logits"  # every medjax classifier's last layer


@dataclasses.dataclass(frozen=True)
class Pretrained:
  """Weights to start from: `variables` ({"params", "batch_stats"}) in the source's shapes;
  `source` says what they are in logs, errors and results.json; `kind`: "keras",
  "torchvision" or "run" (a finished medjax run). `generator`: the generator's variables
  ({"params"}) of an SGAN run, whose `variables` are its discriminator's; None otherwise."""
  variables: dict[str, Any]
  source: str
  kind: str
  generator: dict[str, Any] | None = None


def _flat(variables, collection: str) -> dict[tuple[str, ...], Any]:
  tree = variables.get(collection) or {}
  return traverse_util.flatten_dict(jax.tree.map(np.asarray, dict(tree)))


def _layer(path: tuple[str, ...]) -> str:
  """The layer of a parameter path; a parameter of the model itself (the DBN's input `shift`
  and `scale`) is named by itself."""
  return "/".join(path[:-1]) or path[-1]


def _weight(path: tuple[str, ...]) -> str:
  """"layer conv0 has kernel of shape", or "shift has shape" for a parameter of the model
  itself."""
  return (f"layer {_layer(path)} has {path[-1]} of shape" if len(path) > 1 else
          f"{path[0]} has shape")


def _adapt_channels(value: np.ndarray, want: tuple[int, ...]):
  """A conv kernel [kh, kw, in, out] for `want`'s input channels, or None if not adaptable."""
  have = value.shape
  if len(have) != 4 or len(want) != 4 or have[:2] + have[3:] != want[:2] + want[3:]:
    return None
  if want[2] == 1:
    return value.sum(axis=2, keepdims=True)
  if have[2] == 1:
    return np.repeat(value, want[2], axis=2) / want[2]
  return None


def fit_variables(pretrained: Pretrained, target: dict[str, Any], *,
                  head: str = HEAD) -> tuple[dict[str, Any], dict[str, Any]]:
  """(variables shaped as `target`, summary): the pretrained variables fitted to the model's
  (module docstring). Raises ConfigError naming the first layer that does not fit."""
  out, adapted, new_head = {}, [], None
  for collection in ("params", "batch_stats"):
    src, tgt = _flat(pretrained.variables, collection), _flat(target, collection)
    src_head = {p: v for p, v in src.items() if p[0] == head}
    tgt_head = {p: v for p, v in tgt.items() if p[0] == head}
    missing = sorted({_layer(p) for p in tgt if p not in src and p[0] != head})
    extra = sorted({_layer(p) for p in src if p not in tgt and p[0] != head})
    if missing:
      raise ConfigError(f"{pretrained.source} has no layer {missing[0]} of the model"
                        f"{_more(missing)}: is it weights of this model (model, "
                        "resnet_variant, model_size)?")
    if extra:
      raise ConfigError(f"{pretrained.source} has layer {extra[0]}, which the model does not "
                        f"have{_more(extra)}: is it weights of this model (model, "
                        "resnet_variant, model_size)?")
    fitted = {}
    for path, want in tgt.items():
      if path[0] == head:
        continue
      value = src[path]
      if value.shape != want.shape:
        changed = _adapt_channels(value, want.shape)
        if changed is None:
          raise ConfigError(f"{pretrained.source}: {_weight(path)} {value.shape}, "
                            f"the model's is {want.shape}")
        adapted.append(f"{_layer(path)}: {value.shape[2]} -> {want.shape[2]} input channels")
        value = changed
      fitted[path] = value.astype(want.dtype)
    if tgt_head:
      same = (set(src_head) == set(tgt_head) and
              all(src_head[p].shape == tgt_head[p].shape for p in tgt_head))
      classes = {v.shape[-1] for p, v in src_head.items() if p[-1] == "bias"}
      if same:
        fitted.update({p: src_head[p].astype(tgt_head[p].dtype) for p in tgt_head})
      elif src_head and classes == {v.shape[-1] for p, v in tgt_head.items() if p[-1] == "bias"}:
        # The same classes on other features (the SGAN discriminator's flattened maps of
        # another image size): not a head to replace, weights of another model.
        path = next(p for p in tgt_head if p not in src_head or
                    src_head[p].shape != tgt_head[p].shape)
        have = src_head[path].shape if path in src_head else "none"
        raise ConfigError(f"{pretrained.source}: {_weight(path)} {have}, the model's "
                          f"is {tgt_head[path].shape}")
      else:
        fitted.update(tgt_head)
        new_head = (f"{pretrained.source} has no {head} layer" if not src_head else
                    f"{pretrained.source} has {classes.pop() if len(classes) == 1 else '?'} "
                    f"classes, the model {tgt_head[(head, 'bias')].shape[-1]}"
                    if (head, "bias") in tgt_head else f"{head} shapes differ")
    out[collection] = traverse_util.unflatten_dict(fitted)
  summary = {"from": pretrained.source, "kind": pretrained.kind,
             "adapted_channels": adapted, "new_head": new_head}
  return {k: v for k, v in out.items() if k in target}, summary


def _more(names: list[str]) -> str:
  return f" (and {len(names) - 1} more)" if len(names) > 1 else ""


def initialize(state, tx, pretrained: Pretrained):
  """(state with the pretrained variables fitted to its own and a fresh optimizer state,
  summary for results.json)."""
  if pretrained.generator is not None:
    raise ConfigError(f"{pretrained.source} is an SGAN's discriminator and generator: it "
                      "starts an SGAN run")
  variables, summary = fit_variables(
      pretrained, {"params": state.params, "batch_stats": state.batch_stats})
  params = jax.tree.map(jnp.asarray, variables["params"])
  stats = jax.tree.map(jnp.asarray, variables.get("batch_stats", {}))
  return state.replace(params=params, batch_stats=stats, opt_state=tx.init(params)), summary


def initialize_sgan(state, g_tx, d_tx, pretrained: Pretrained):
  """(SGAN state (`medjax.train.sgan.SGANState`) with the pretrained discriminator and
  generator fitted to its own, fresh optimizer states and step 0, summary for results.json).
  The source must carry a generator: an SGAN starts from an SGAN run."""
  if pretrained.generator is None:
    raise ConfigError(f"{pretrained.source} has no generator: an SGAN starts from a finished "
                      "SGAN run's workdir")
  d_vars, summary = fit_variables(pretrained, {"params": state.d_params})
  g_vars, g_summary = fit_variables(
      dataclasses.replace(pretrained, variables=pretrained.generator, generator=None,
                          source=f"{pretrained.source}, generator"), {"params": state.g_params})
  summary["adapted_channels"] += [f"generator {a}" for a in g_summary["adapted_channels"]]
  summary["networks"] = ["discriminator", "generator"]
  d_params = jax.tree.map(jnp.asarray, d_vars["params"])
  g_params = jax.tree.map(jnp.asarray, g_vars["params"])
  return state.replace(step=jnp.zeros_like(state.step), d_params=d_params, g_params=g_params,
                       d_opt_state=d_tx.init(d_params), g_opt_state=g_tx.init(g_params)), summary


def describe(summary: dict[str, Any]) -> str:
  """The log line's text of a `fit_variables` summary."""
  return (summary["from"] +
          (f" ({' and '.join(summary['networks'])})" if summary.get("networks") else "") +
          (f"; new head ({summary['new_head']})" if summary["new_head"] else "") +
          "".join(f"; {a}" for a in summary["adapted_channels"]))


def param_labels(params, head: str = HEAD):
  """"head" for the parameters of the classifier's last layer, "backbone" for the others."""
  return {name: jax.tree.map(lambda _: "head" if name == head else "backbone", sub)
          for name, sub in params.items()}
