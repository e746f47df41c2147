"""Benchmark of jitted train steps on synthetic device-resident data (no TensorFlow needed).

    python -m medjax.bench                                   # CNN and ResNet-50, batch 20, 50x50
    python -m medjax.bench --models=resnet --batch-sizes=20,256 --image-sizes=50,128 \
        --dtype=bfloat16 --seeds=1,8 --out=bench.json
    python -m medjax.bench --models=cnn --mode=scan          # whole chunks of steps in one scan
    python -m medjax.bench --input-pipeline --data-dir=...   # the tf.data input path alone

For each case: compile time, the median ms/step over repeated timing windows (after warm-up)
with min/max, images/s, model FLOPs per image (convolutions + matmuls of forward and backward,
counted from the jaxpr) and the resulting TFLOP/s, peak device memory where the backend reports
it. `--mode=step` times one jitted call per step (data already on device); `--mode=scan` times
chunks of `--scan-steps` steps run as one `lax.scan` (the device-resident epoch of training).
`--seeds=N` trains N vmapped models per step (images/s counts all N models' images).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from medjax.flops import count_flops
from medjax.models import create_model
from medjax.train import ensemble, supervised
from medjax.train.state import create_train_state


def _peak_memory() -> int | None:
  stats = jax.devices()[0].memory_stats()
  return stats.get("peak_bytes_in_use") if stats else None


def _time_windows(run_window, windows: int) -> list[float]:
  times = []
  for _ in range(windows):
    t = time.perf_counter()
    jax.block_until_ready(run_window())
    times.append(time.perf_counter() - t)
  return times


def bench_case(model_name: str, batch_size: int, image_size: int, *, dtype: str = "float32",
               seeds: int = 1, mode: str = "step", steps: int = 10, windows: int = 5,
               scan_steps: int = 50, channels: int = 1, model_size: str = "full",
               profile_dir: str | None = None) -> dict:
  model = create_model(model_name, size=model_size, num_classes=2, dtype=dtype)
  tx = optax.adam(1e-4)
  shape = (image_size, image_size, channels)
  step = functools.partial(supervised.train_step, model=model, tx=tx,
                           augment={"dihedral": True, "max_shift": 2})
  n_data = max(batch_size * 8, 512)
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (n_data, *shape), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 2, n_data).astype(np.int32))
  idx = rng.integers(0, n_data, (scan_steps, seeds, batch_size)).astype(np.int32)

  if seeds == 1:
    state = create_train_state(model, tx, jax.random.key(0), shape)
    rngs = jax.random.key(1)
    one_step = step
    batch_of = lambda i: {"image": images[i[0]], "label": labels[i[0]]}
  else:
    state = ensemble.create_train_states(model, tx, list(range(seeds)), shape)
    rngs = ensemble.step_rngs(list(range(seeds)))
    one_step = ensemble.stacked_step(step)
    batch_of = lambda i: ensemble.gather_batches(images, labels, i)

  flops = count_flops(lambda s, b, r: one_step(s, b, r), state, batch_of(idx[0]), rngs)
  flops_per_image = flops / (batch_size * seeds)

  if mode == "step":
    fn = jax.jit(lambda s, i, r: one_step(s, batch_of(i), r), donate_argnums=0)
    args = lambda: (jnp.asarray(idx[0]), rngs)
    steps_per_call = 1
  elif mode == "scan":
    def scan_fn(s, ix, r):
      def body(s, i):
        return one_step(s, batch_of(i), r)
      return jax.lax.scan(body, s, ix)
    fn = jax.jit(scan_fn, donate_argnums=0)
    args = lambda: (jnp.asarray(idx), rngs)
    steps_per_call = scan_steps
  else:
    raise ValueError(f"unknown mode {mode!r}: 'step' or 'scan'")

  t = time.perf_counter()
  compiled = fn.lower(state, *args()).compile()
  compile_seconds = time.perf_counter() - t
  call_args = args()
  for _ in range(2):  # warm-up
    state, metrics = compiled(state, *call_args)
  jax.block_until_ready(metrics)
  calls = max(1, steps // steps_per_call)

  def window():
    nonlocal state
    out = None
    for _ in range(calls):
      state, out = compiled(state, *call_args)
    return out

  times = [w / (calls * steps_per_call) for w in _time_windows(window, windows)]
  if profile_dir:
    with jax.profiler.trace(profile_dir):
      jax.block_until_ready(window())
  median = statistics.median(times)
  images_per_step = batch_size * seeds
  return {
      "model": model_name, "model_size": model_size, "batch_size": batch_size,
      "image_size": image_size, "channels": channels, "dtype": dtype, "seeds": seeds,
      "mode": mode, "compile_seconds": round(compile_seconds, 2),
      "ms_per_step": round(median * 1e3, 3),
      "ms_per_step_min": round(min(times) * 1e3, 3), "ms_per_step_max": round(max(times) * 1e3, 3),
      "images_per_second": round(images_per_step / median, 1),
      "gflops_per_image": round(flops_per_image / 1e9, 4),
      "tflops_per_second": round(flops / median / 1e12, 3),
      "peak_memory_bytes": _peak_memory(),
      "steps_timed": calls * steps_per_call * windows,
  }


def bench_input_pipeline(data_dir: str | None, batch_size: int, seconds: float = 10.0) -> dict:
  """Images/s of the tf.data path alone (host side), to compare with the step's rate."""
  from medjax import config as config_lib
  from medjax.data import load_dataset
  from medjax.data import pipeline  # imports TensorFlow lazily
  cfg = config_lib.base_config("luna", "cnn").data
  cfg.dir = data_dir
  dataset = load_dataset("luna", cfg, seed=0)
  it = pipeline.tf_batches(dataset.train, batch_size, train=True, seed=0, num_epochs=None,
                           max_shift=2)
  next(it)
  n, t = 0, time.perf_counter()
  while time.perf_counter() - t < seconds:
    next(it)
    n += batch_size
  return {"input_pipeline": "tf.data", "batch_size": batch_size,
          "images_per_second": round(n / (time.perf_counter() - t), 1)}


def _ints(text: str) -> list[int]:
  return [int(x) for x in text.split(",") if x]


def environment() -> dict:
  return {"jax": jax.__version__, "backend": jax.default_backend(),
          "device": jax.devices()[0].device_kind, "device_count": jax.device_count(),
          "python": platform.python_version(), "host": platform.machine(),
          "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}


def main(argv=None) -> list[dict]:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--models", default="cnn,resnet")
  p.add_argument("--model-size", default="full", choices=["full", "tiny"])
  p.add_argument("--batch-sizes", default="20", type=_ints)
  p.add_argument("--image-sizes", default="50", type=_ints)
  p.add_argument("--seeds", default="1", type=_ints, help="vmapped models per step")
  p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
  p.add_argument("--mode", default="step", choices=["step", "scan"])
  p.add_argument("--steps", type=int, default=10, help="steps per timing window")
  p.add_argument("--windows", type=int, default=5)
  p.add_argument("--scan-steps", type=int, default=50)
  p.add_argument("--channels", type=int, default=1)
  p.add_argument("--profile", default=None, help="write a jax.profiler trace here")
  p.add_argument("--input-pipeline", action="store_true", help="also time tf.data alone")
  p.add_argument("--data-dir", default=None)
  p.add_argument("--out", default=None, help="write the results as JSON here")
  args = p.parse_args(argv)

  env = environment()
  print(f"# {env['device']} ({env['backend']} x{env['device_count']}), jax {env['jax']}, "
        f"{args.dtype}, mode={args.mode}", flush=True)
  header = (f"{'model':<8}{'batch':>6}{'size':>6}{'seeds':>6}{'compile s':>10}{'ms/step':>10}"
            f"{'min-max':>16}{'img/s':>11}{'GFLOP/img':>11}{'TFLOP/s':>9}{'peak MiB':>10}")
  print(header)
  results = []
  for model in args.models.split(","):
    for bs in args.batch_sizes:
      for size in args.image_sizes:
        for seeds in args.seeds:
          profile = (os.path.join(args.profile, f"{model}_b{bs}_s{size}_n{seeds}")
                     if args.profile else None)
          r = bench_case(model, bs, size, dtype=args.dtype, seeds=seeds, mode=args.mode,
                         steps=args.steps, windows=args.windows, scan_steps=args.scan_steps,
                         channels=args.channels, model_size=args.model_size,
                         profile_dir=profile)
          results.append(r)
          mem = f"{r['peak_memory_bytes'] / 2**20:.0f}" if r["peak_memory_bytes"] else "n/a"
          spread = f"{r['ms_per_step_min']:.2f}-{r['ms_per_step_max']:.2f}"
          print(f"{model:<8}{bs:>6}{size:>6}{seeds:>6}{r['compile_seconds']:>10.1f}"
                f"{r['ms_per_step']:>10.2f}{spread:>16}{r['images_per_second']:>11,.0f}"
                f"{r['gflops_per_image']:>11.3f}{r['tflops_per_second']:>9.3f}{mem:>10}",
                flush=True)
  if args.input_pipeline:
    r = bench_input_pipeline(args.data_dir, args.batch_sizes[0])
    results.append(r)
    print(f"tf.data input path alone: {r['images_per_second']:,.0f} img/s at batch "
          f"{r['batch_size']}", flush=True)
  if args.out:
    with open(args.out, "w") as f:
      json.dump({"environment": env, "args": vars(args), "results": results}, f, indent=2)
  return results


if __name__ == "__main__":
  main(sys.argv[1:])
