"""Benchmark of jitted train steps on synthetic device-resident data (no TensorFlow needed).

    python -m medjax.bench                                   # CNN and ResNet-50, batch 20, 50x50
    python -m medjax.bench --models=resnet --batch_sizes=20,256 --image_sizes=50,128 \\
        --dtype=bfloat16 --seeds=1,8 --out=bench.json
    python -m medjax.bench --models=sgan --image_sizes=50    # the SGAN's D + G step
    python -m medjax.bench --models=cnn --mode=scan          # whole chunks of steps in one scan

For each case: compile time, the median ms/step over repeated timing windows (after warm-up)
with min/max, images/s, model FLOPs per image (convolutions + matmuls of forward and backward,
counted from the jaxpr) and the resulting TFLOP/s, peak device memory where the backend reports
it. `--mode=step` times one jitted call per step (data already on device); `--mode=scan` times
chunks of `--scan_steps` steps run as one `lax.scan` (the device-resident epoch of training).
`--seeds=N` trains N vmapped models per step (images/s counts all N models' images). The SGAN
step (`medjax.train.sgan.train_step`) takes a labelled and an unlabelled batch of
`--batch_sizes` each; its images/s counts the unlabelled stream (one epoch = one pass over it).
`python -m medjax.benchmarks.torch_reference` times the same steps in PyTorch.
"""

from __future__ import annotations

import functools
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from absl import flags

from medjax import benchmarks, cli
from medjax import config as config_lib
from medjax.benchmarks import pipeline
from medjax.benchmarks.flops import count_flops
from medjax.errors import UserError
from medjax.models import create_model
from medjax.train import ensemble, sgan, supervised
from medjax.train.state import create_train_state

MODELS = ("cnn", "resnet", "sgan")


def define_flags(fv) -> None:
  flags.DEFINE_list("models", "cnn,resnet", f"Models to time, from {', '.join(MODELS)}.",
                    flag_values=fv)
  flags.DEFINE_enum("model_size", "full", ["full", "tiny"], "The paper's models or the tiny "
                    "test variants.", flag_values=fv)
  flags.DEFINE_list("batch_sizes", "20", "Batch sizes (per model).", flag_values=fv)
  flags.DEFINE_list("image_sizes", "50", "Image heights and widths (pixels).", flag_values=fv)
  flags.DEFINE_list("seeds", "1", "Vmapped models per step (CNN, ResNet).", flag_values=fv)
  flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype (params stay "
                    "float32).", flag_values=fv)
  flags.DEFINE_enum("mode", "step", ["step", "scan"], "One jitted call per step, or chunks of "
                    "--scan_steps steps as one lax.scan.", flag_values=fv)
  flags.DEFINE_integer("steps", 10, "Steps per timing window.", lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("windows", 5, "Timing windows (the median is reported).", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer("scan_steps", 50, "Steps per lax.scan call with --mode=scan.",
                       lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("channels", 1, "Image channels.", lower_bound=1, flag_values=fv)
  flags.DEFINE_bool("augment", True, "Random dihedral transforms and 2-pixel shifts in the step, "
                    "as training does.", flag_values=fv)
  flags.DEFINE_string("profile", None, "Write a jax.profiler trace per case under this "
                      "directory.", flag_values=fv)
  flags.DEFINE_bool("input_pipeline", False, "Also time the tf.data input path alone "
                    "(medjax.benchmarks.pipeline; needs TensorFlow).", flag_values=fv)
  flags.DEFINE_string("data_dir", None, "LUNA16 patch folders for --input_pipeline (default: "
                      "the embedded synthetic data).", flag_values=fv)
  flags.DEFINE_string("out", None, "Write the results as JSON here.", flag_values=fv)


def _peak_memory() -> int | None:
  stats = jax.devices()[0].memory_stats()
  return stats.get("peak_bytes_in_use") if stats else None


def _supervised_case(model_name, shape, *, dtype, seeds, model_size, augment):
  """(state, one_step, batch_of, rngs, streams) of a CNN or ResNet-50 step."""
  model = create_model(model_name, size=model_size, num_classes=2, dtype=dtype)
  tx = optax.adam(1e-4)
  step = functools.partial(supervised.train_step, model=model, tx=tx, augment=augment)
  if seeds == 1:
    state = create_train_state(model, tx, jax.random.key(0), shape)
    return (state, step, lambda d, i: {"image": d["image"][i[0]], "label": d["label"][i[0]]},
            jax.random.key(1), 1)
  state = ensemble.create_train_states(model, tx, list(range(seeds)), shape)
  return (state, ensemble.stacked_step(step),
          lambda d, i: ensemble.gather_batches(d["image"], d["label"], i),
          ensemble.step_rngs(list(range(seeds))), seeds)


def _sgan_case(shape, *, dtype, model_size, augment):
  """(state, one_step, batch_of, rngs, streams) of the SGAN step (D on labelled + unlabelled +
  generated, then G through the updated D), with the paper's sizes and the trainer's defaults."""
  config = config_lib.base_config("luna", "sgan")
  config.model_size, config.dtype = model_size, dtype
  s = config.sgan
  generator, discriminator = sgan.create_models(config, shape)
  g_tx, d_tx = sgan.create_optimizers(s)
  state = sgan.create_state(generator, discriminator, g_tx, d_tx, jax.random.key(0), shape,
                            s.latent_dim)
  step = functools.partial(
      sgan.train_step, generator=generator, discriminator=discriminator, g_tx=g_tx, d_tx=d_tx,
      latent_dim=s.latent_dim, unsupervised_weight=s.unsupervised_weight,
      feature_matching=s.feature_matching, augment=augment)

  def batch_of(d, i):
    return {"image": d["image"][i[0]], "label": d["label"][i[0]], "unlabelled": d["image"][i[1]]}

  return state, step, batch_of, jax.random.key(1), 2


def build_case(model_name: str, batch_size: int, shape: tuple[int, int, int], *,
               dtype: str = "float32", seeds: int = 1, model_size: str = "full",
               augment: bool = True, index_rows: int = 1):
  """(state, one_step, batch_of, rngs, streams, data, idx): one model's train step on random
  device-resident uint8 images, and `index_rows` rows of batch indices (one per step)."""
  aug = {"dihedral": True, "max_shift": 2} if augment else None
  if model_name == "sgan":
    if seeds != 1:
      raise UserError("--seeds applies to cnn and resnet: the SGAN step is not vmapped")
    state, one_step, batch_of, rngs, streams = _sgan_case(
        shape, dtype=dtype, model_size=model_size, augment=aug)
  elif model_name in MODELS:
    state, one_step, batch_of, rngs, streams = _supervised_case(
        model_name, shape, dtype=dtype, seeds=seeds, model_size=model_size, augment=aug)
  else:
    raise UserError(f"unknown model {model_name!r} in --models; known: {', '.join(MODELS)}")
  n_data = max(batch_size * 8, 512)
  rng = np.random.default_rng(0)
  data = {"image": jnp.asarray(rng.integers(0, 256, (n_data, *shape), dtype=np.uint8)),
          "label": jnp.asarray(rng.integers(0, 2, n_data).astype(np.int32))}
  idx = rng.integers(0, n_data, (index_rows, streams, batch_size)).astype(np.int32)
  return state, one_step, batch_of, rngs, streams, data, idx


def bench_case(model_name: str, batch_size: int, image_size: int, *, dtype: str = "float32",
               seeds: int = 1, mode: str = "step", steps: int = 10, windows: int = 5,
               scan_steps: int = 50, channels: int = 1, model_size: str = "full",
               augment: bool = True, profile_dir: str | None = None) -> dict:
  """Compiles and times one model's train step; returns one result row."""
  shape = (image_size, image_size, channels)
  state, one_step, batch_of, rngs, streams, data, idx = build_case(
      model_name, batch_size, shape, dtype=dtype, seeds=seeds, model_size=model_size,
      augment=augment, index_rows=scan_steps)

  flops = count_flops(lambda s, b, r: one_step(s, b, r), state, batch_of(data, idx[0]), rngs)
  flops_per_image = flops / (batch_size * seeds)

  if mode == "step":
    fn = jax.jit(lambda s, d, i, r: one_step(s, batch_of(d, i), r), donate_argnums=0)
    call_args = (data, jnp.asarray(idx[0]), rngs)
    steps_per_call = 1
  elif mode == "scan":
    def scan_fn(s, d, ix, r):
      return jax.lax.scan(lambda s, i: one_step(s, batch_of(d, i), r), s, ix)
    fn = jax.jit(scan_fn, donate_argnums=0)
    call_args = (data, jnp.asarray(idx), rngs)
    steps_per_call = scan_steps
  else:
    raise UserError(f"unknown mode {mode!r}: 'step' or 'scan'")

  t = time.perf_counter()
  compiled = fn.lower(state, *call_args).compile()
  compile_seconds = time.perf_counter() - t
  for _ in range(2):  # warm-up
    state, metrics = compiled(state, *call_args)
  jax.block_until_ready(metrics)
  calls = max(1, steps // steps_per_call)

  def window():
    nonlocal state
    out = None
    for _ in range(calls):
      state, out = compiled(state, *call_args)
    return jax.block_until_ready(out)

  times = [w / (calls * steps_per_call) for w in benchmarks.time_windows(window, windows)]
  if profile_dir:
    with jax.profiler.trace(profile_dir):
      window()
  median = statistics.median(times)
  images_per_step = batch_size * seeds
  return {
      "model": model_name, "model_size": model_size, "batch_size": batch_size,
      "image_size": image_size, "channels": channels, "dtype": dtype, "seeds": seeds,
      "mode": mode, "augment": augment, "compile_seconds": round(compile_seconds, 2),
      "ms_per_step": round(median * 1e3, 3),
      "ms_per_step_min": round(min(times) * 1e3, 3), "ms_per_step_max": round(max(times) * 1e3, 3),
      "images_per_second": round(images_per_step / median, 1),
      "gflops_per_image": round(flops_per_image / 1e9, 4),
      "tflops_per_second": round(flops / median / 1e12, 3),
      "peak_memory_bytes": _peak_memory(),
      "steps_timed": calls * steps_per_call * windows,
  }


def environment() -> dict:
  return {"jax": jax.__version__, "backend": jax.default_backend(),
          "device": jax.devices()[0].device_kind, "device_count": jax.device_count(),
          **benchmarks.machine()}


def _row(r: dict) -> str:
  mem = f"{r['peak_memory_bytes'] / 2**20:.0f}" if r["peak_memory_bytes"] else "n/a"
  spread = f"{r['ms_per_step_min']:.2f}-{r['ms_per_step_max']:.2f}"
  return (f"{r['model']:<8}{r['batch_size']:>6}{r['image_size']:>6}{r['seeds']:>6}"
          f"{r['compile_seconds']:>10.1f}{r['ms_per_step']:>10.2f}{spread:>16}"
          f"{r['images_per_second']:>11,.0f}{r['gflops_per_image']:>11.3f}"
          f"{r['tflops_per_second']:>9.3f}{mem:>10}")


def main(argv=None) -> list[dict]:
  """Times every (model, batch size, image size, seeds) case of the flags; returns the rows."""
  fv = cli.parse_flags(define_flags, argv, __doc__)
  models = benchmarks.parse_models(fv.models, MODELS)
  batch_sizes = cli.parse_list(fv.batch_sizes, "batch_sizes")
  image_sizes = cli.parse_list(fv.image_sizes, "image_sizes")
  seeds_list = cli.parse_list(fv.seeds, "seeds")
  env = environment()
  print(f"# {env['device']} ({env['backend']} x{env['device_count']}, {env['cpu']}, "
        f"{env['cpu_count']} cores), jax {env['jax']}, "
        f"{fv.dtype}, mode={fv.mode}, load average {env['load_average'][0]:.1f}", flush=True)
  print(f"{'model':<8}{'batch':>6}{'size':>6}{'seeds':>6}{'compile s':>10}{'ms/step':>10}"
        f"{'min-max':>16}{'img/s':>11}{'GFLOP/img':>11}{'TFLOP/s':>9}{'peak MiB':>10}")
  results = []
  for model in models:
    for bs in batch_sizes:
      for size in image_sizes:
        for seeds in ([1] if model == "sgan" else seeds_list):
          profile = (os.path.join(fv.profile, f"{model}_b{bs}_s{size}_n{seeds}")
                     if fv.profile else None)
          r = bench_case(model, bs, size, dtype=fv.dtype, seeds=seeds, mode=fv.mode,
                         steps=fv.steps, windows=fv.windows, scan_steps=fv.scan_steps,
                         channels=fv.channels, model_size=fv.model_size, augment=fv.augment,
                         profile_dir=profile)
          results.append(r)
          print(_row(r), flush=True)
  if fv.input_pipeline:
    r = pipeline.bench_input_pipeline(fv.data_dir, batch_sizes[0])
    results.append(r)
    print(pipeline.report(r), flush=True)
  benchmarks.write_results(fv.out, env, define_flags, fv, results)
  return results


if __name__ == "__main__":
  cli.run(main)
