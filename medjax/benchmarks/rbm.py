"""RBM pretraining throughput, medjax against scikit-learn's `BernoulliRBM`, same data and machine.

    python -m medjax.benchmarks.rbm [--visible 2500] [--hidden 1500] [--batch 20] [--out FILE]

Random binary data (p = 0.3), one epoch = every full minibatch once. Reports samples per second,
the median of `--repeats` timed epochs after one warm-up epoch (compilation for medjax).
scikit-learn is timed on its own per-minibatch update (`_fit`, what `fit` loops over: PCD-1, no
momentum) after `partial_fit` has initialized it, in float64 (its default) and float32 (it keeps
float32 input). medjax runs CD-1 and PCD-1 with momentum and weight decay, as a whole epoch in
one jitted `lax.scan` and as one jitted call per minibatch.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import statistics
import time

import jax
import numpy as np
import sklearn
from sklearn.neural_network import BernoulliRBM

from medjax.models.rbm import init_rbm
from medjax.train import rbm as rbm_lib


def _median_rate(run_epoch, n_samples: int, repeats: int) -> tuple[float, list[float]]:
  run_epoch()  # warm-up
  seconds = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    run_epoch()
    seconds.append(time.perf_counter() - t0)
  return n_samples / statistics.median(seconds), seconds


def bench_sklearn(x: np.ndarray, hidden: int, batch: int, repeats: int, dtype) -> dict:
  x = x.astype(dtype)
  rbm = BernoulliRBM(hidden, learning_rate=0.05, batch_size=batch, random_state=0)
  rbm.partial_fit(x[:batch])
  rng = np.random.RandomState(0)
  n = len(x) // batch * batch

  def epoch():
    for start in range(0, n, batch):
      rbm._fit(x[start:start + batch], rng)

  rate, seconds = _median_rate(epoch, n, repeats)
  return {"name": f"sklearn BernoulliRBM ({np.dtype(dtype).name}, PCD-1)",
          "samples_per_second": rate, "epoch_seconds": seconds}


def bench_medjax(x: np.ndarray, hidden: int, batch: int, repeats: int, *, persistent: bool,
                 scanned: bool) -> dict:
  data = jax.device_put(x.astype(np.float32))
  state = rbm_lib.init_train_state(init_rbm(jax.random.key(0), x.shape[1], hidden), batch)
  hp = rbm_lib.hyperparams(0.05, 0.9, 2e-4)
  rng = jax.random.key(1)
  n = len(x) // batch * batch
  box = [state]
  if scanned:
    epoch_fn = jax.jit(functools.partial(rbm_lib.train_epoch, batch_size=batch,
                                         persistent=persistent), donate_argnums=0)

    def epoch():
      box[0] = jax.block_until_ready(epoch_fn(box[0], data, rng, hp))
  else:
    step = jax.jit(functools.partial(rbm_lib.cd_step, persistent=persistent), donate_argnums=0)
    batches = [data[i:i + batch] for i in range(0, n, batch)]

    def epoch():
      s = box[0]
      for b in batches:
        s = step(s, b, rng, hp)
      box[0] = jax.block_until_ready(s)

  rate, seconds = _median_rate(epoch, n, repeats)
  kind = "PCD-1" if persistent else "CD-1"
  how = "epoch as one lax.scan" if scanned else "one jit call per minibatch"
  return {"name": f"medjax ({kind}, float32, {how})", "samples_per_second": rate,
          "epoch_seconds": seconds}


def main(argv=None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--visible", type=int, default=2500)
  parser.add_argument("--hidden", type=int, default=1500)
  parser.add_argument("--batch", type=int, default=20)
  parser.add_argument("--samples", type=int, default=1000, help="examples per epoch")
  parser.add_argument("--repeats", type=int, default=3, help="timed epochs (median)")
  parser.add_argument("--out", default=os.path.join("runs", "benchmarks", "rbm.json"))
  args = parser.parse_args(argv)

  x = (np.random.default_rng(0).random((args.samples, args.visible)) < 0.3).astype(np.float32)
  rows = [bench_sklearn(x, args.hidden, args.batch, args.repeats, np.float64),
          bench_sklearn(x, args.hidden, args.batch, args.repeats, np.float32)]
  for persistent in (False, True):
    rows.append(bench_medjax(x, args.hidden, args.batch, args.repeats, persistent=persistent,
                             scanned=True))
  rows.append(bench_medjax(x, args.hidden, args.batch, args.repeats, persistent=False,
                           scanned=False))
  reference = max(r["samples_per_second"] for r in rows[:2])  # sklearn's faster dtype
  for r in rows:
    r["speedup_vs_best_sklearn"] = r["samples_per_second"] / reference

  report = {
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "shape": {"visible": args.visible, "hidden": args.hidden, "batch": args.batch,
                "samples_per_epoch": len(x) // args.batch * args.batch},
      "repeats": args.repeats, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
      "device": jax.devices()[0].device_kind, "load_average": list(os.getloadavg()),
      "versions": {"jax": jax.__version__, "sklearn": sklearn.__version__,
                   "numpy": np.__version__, "python": platform.python_version()},
      "results": rows,
  }
  print(f"RBM pretraining, {args.visible} visible x {args.hidden} hidden, batch {args.batch}, "
        f"{report['shape']['samples_per_epoch']} samples/epoch, median of {args.repeats}")
  print(f"{'implementation':58s} {'samples/s':>10s} {'vs sklearn':>10s}")
  for r in rows:
    print(f"{r['name']:58s} {r['samples_per_second']:10.0f} "
          f"{r['speedup_vs_best_sklearn']:9.1f}x")
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  with open(args.out, "w") as f:
    json.dump(report, f, indent=2)
  print(f"wrote {args.out}")
  return report


if __name__ == "__main__":
  main()
