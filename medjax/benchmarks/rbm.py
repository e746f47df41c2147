"""RBM pretraining throughput, medjax against scikit-learn's `BernoulliRBM`, same data and machine.

    python -m medjax.benchmarks.rbm [--visible=2500] [--hidden=1500] [--batch=20] [--out=FILE]

Random binary data (p = 0.3), one epoch = every full minibatch once. Reports samples per second,
the median of `--repeats` timed epochs after one warm-up epoch (compilation for medjax).
scikit-learn is timed on its own per-minibatch update (`_fit`, what `fit` loops over: PCD-1, no
momentum) after `partial_fit` has initialized it, in float64 (its default) and float32 (it keeps
float32 input). medjax runs CD-1 and PCD-1 with momentum and weight decay, as a whole epoch in
one jitted `lax.scan` and as one jitted call per minibatch. Without scikit-learn (it is in the
`test` extra) only the medjax rows are measured. `python -m medjax.benchmarks.torch_reference
--models=rbm` times the same CD-1 update in PyTorch. Results: `rbm.md` beside this file.
"""

from __future__ import annotations

import functools
import os
import statistics

import jax
import numpy as np

from absl import flags

from medjax import benchmarks, cli
from medjax.errors import UserError
from medjax.rundir import write_json
from medjax.models.rbm import init_rbm
from medjax.train import rbm as rbm_lib


def define_flags(fv) -> None:
  flags.DEFINE_integer("visible", 2500, "Visible units (50x50 pixels).", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer("hidden", 1500, "Hidden units (the DBN's first layer).", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer("batch", 20, "Minibatch size.", lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("samples", 1000, "Examples per epoch.", lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("repeats", 3, "Timed epochs (the median is reported).", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_string("out", os.path.join("runs", "benchmarks", "rbm.json"),
                      "Write the results as JSON here.", flag_values=fv)


def _median_rate(run_epoch, n_samples: int, repeats: int) -> tuple[float, list[float]]:
  run_epoch()  # warm-up
  seconds = benchmarks.time_windows(run_epoch, repeats)
  return n_samples / statistics.median(seconds), seconds


def bench_sklearn(x: np.ndarray, hidden: int, batch: int, repeats: int, dtype) -> dict:
  from sklearn.neural_network import BernoulliRBM
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
  """Times scikit-learn (when installed) and medjax; prints the table and writes `--out`."""
  fv = cli.parse_flags(define_flags, argv, __doc__)
  try:
    sklearn = benchmarks.require("sklearn", "scikit-learn", "scikit-learn")
  except UserError as e:
    sklearn = None
    print(f"{e}: measuring medjax only (the comparison needs scikit-learn)", flush=True)
  x = (np.random.default_rng(0).random((fv.samples, fv.visible)) < 0.3).astype(np.float32)
  rows = []
  if sklearn:
    for dtype in (np.float64, np.float32):
      rows.append(bench_sklearn(x, fv.hidden, fv.batch, fv.repeats, dtype))
  for persistent in (False, True):
    rows.append(bench_medjax(x, fv.hidden, fv.batch, fv.repeats, persistent=persistent,
                             scanned=True))
  rows.append(bench_medjax(x, fv.hidden, fv.batch, fv.repeats, persistent=False,
                           scanned=False))
  if sklearn:
    reference = max(r["samples_per_second"] for r in rows[:2])  # sklearn's faster dtype
    for r in rows:
      r["speedup_vs_best_sklearn"] = r["samples_per_second"] / reference

  report = {
      "shape": {"visible": fv.visible, "hidden": fv.hidden, "batch": fv.batch,
                "samples_per_epoch": len(x) // fv.batch * fv.batch},
      "repeats": fv.repeats, "machine": benchmarks.machine(),
      "device": jax.devices()[0].device_kind,
      "versions": {"jax": jax.__version__, "numpy": np.__version__,
                   "sklearn": sklearn.__version__ if sklearn else None},
      "results": rows,
  }
  print(f"RBM pretraining, {fv.visible} visible x {fv.hidden} hidden, batch {fv.batch}, "
        f"{report['shape']['samples_per_epoch']} samples/epoch, median of {fv.repeats}")
  print(f"{'implementation':58s} {'samples/s':>10s} {'vs sklearn':>10s}")
  for r in rows:
    ratio = r.get("speedup_vs_best_sklearn")
    print(f"{r['name']:58s} {r['samples_per_second']:10.0f} "
          + (f"{ratio:9.1f}x" if ratio else f"{'n/a':>10s}"))
  if fv.out:
    os.makedirs(os.path.dirname(os.path.abspath(fv.out)), exist_ok=True)
    write_json(fv.out, report)
    print(f"wrote {fv.out}")
  return report


if __name__ == "__main__":
  cli.run(main)
