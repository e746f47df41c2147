"""XLA:CPU's matmuls against PyTorch's on the shapes of ResNet-50's 1x1 convolutions, and the
memory bandwidth both work against.

    python -m medjax.benchmarks.gemm --image_size=128 --batch_size=20 [--out=gemm.json]

On a CPU medjax computes each 1x1 convolution of ResNet-50 (`medjax.models.layers`, impl
"matmul") as three matmuls over the P = batch x height x width pixels of its output:

  forward          x[P, in] @ w[in, out]
  input gradient   g[P, out] @ w.T
  kernel gradient  x.T @ g, which contracts the P rows of both operands ("TN")

This times every distinct (P, in, out) of torchvision's ResNet-50 at the given image size
(count: how many layers of one step have it) in jax (jitted, float32) and in PyTorch
(`torch.matmul`, if installed, `--threads` threads), each the median of `--windows` windows of
`--repeats` calls, and sums them over the network as one train step has them. `copy` is the
memory bandwidth: y = x + 1 over a `--copy_mib` MiB float32 array (read and write counted).
Measured figures: `medjax/benchmarks/RESULTS.md`.
"""

from __future__ import annotations

import statistics

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from medjax import benchmarks, cli

KINDS = ("forward", "input_grad", "kernel_grad")
STAGES = (3, 4, 6, 3)  # ResNet-50's bottlenecks per stage


def define_flags(fv) -> None:
  flags.DEFINE_integer("image_size", 128, "Image height and width.", lower_bound=32,
                       flag_values=fv)
  flags.DEFINE_integer("batch_size", 20, "Images per step.", lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("repeats", 10, "Calls per timing window.", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer("windows", 5, "Timing windows (the median is reported).", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer("threads", 0, "torch.set_num_threads (0: the CPU count).",
                       lower_bound=0, flag_values=fv)
  flags.DEFINE_integer("copy_mib", 256, "Size of the bandwidth probe's array.", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_bool("torch", True, "Time PyTorch beside jax (skipped if not installed).",
                    flag_values=fv)
  flags.DEFINE_string("out", None, "Write the results as JSON here.", flag_values=fv)


def _side(size: int, stride: int) -> int:
  return -(-size // stride)


def pointwise_shapes(image_size: int, batch_size: int) -> dict[tuple[int, int, int], int]:
  """{(P, in, out): layers of that shape} for the 1x1 convolutions of torchvision's ResNet-50
  (stride on the 3x3 of a bottleneck; the projection takes the stride itself)."""
  side = _side(_side(image_size, 2), 2)  # stem conv /2, max-pool /2
  shapes: dict[tuple[int, int, int], int] = {}

  def add(key):
    shapes[key] = shapes.get(key, 0) + 1

  cin = 64
  for i, blocks in enumerate(STAGES):
    width = 64 * 2**i
    out_side = side if i == 0 else _side(side, 2)
    for j in range(blocks):
      first = j == 0
      in_side = side if first else out_side
      add((batch_size * in_side**2, cin, width))                   # conv 1x1 in -> width
      add((batch_size * out_side**2, width, 4 * width))            # conv 1x1 width -> 4 width
      if first:
        add((batch_size * out_side**2, cin, 4 * width))            # projection shortcut
      cin = 4 * width
    side = out_side
  return shapes


def _median_seconds(fn, repeats: int, windows: int) -> float:
  def window():
    out = None
    for _ in range(repeats):
      out = fn()
    return out
  window()  # warm-up (and compilation)
  return statistics.median(benchmarks.time_windows(window, windows)) / repeats


def _jax_fns():
  return {"forward": jax.jit(lambda x, w, g: x @ w),
          "input_grad": jax.jit(lambda x, w, g: g @ w.T),
          "kernel_grad": jax.jit(lambda x, w, g: x.T @ g)}


def time_shape(p: int, cin: int, cout: int, *, repeats: int, windows: int, torch=None) -> dict:
  """Seconds of the three matmuls of one (P, in, out) shape in jax (and PyTorch)."""
  rng = np.random.default_rng(0)
  x, w, g = (rng.standard_normal(s, np.float32) for s in ((p, cin), (cin, cout), (p, cout)))
  row = {"p": p, "in": cin, "out": cout, "gflop": 2 * p * cin * cout / 1e9}
  jx, jw, jg = (jnp.asarray(a) for a in (x, w, g))
  for kind, fn in _jax_fns().items():
    row[f"jax_{kind}"] = _median_seconds(
        lambda: jax.block_until_ready(fn(jx, jw, jg)), repeats, windows)
  if torch is not None:
    tx, tw, tg = (torch.from_numpy(a) for a in (x, w, g))
    fns = {"forward": lambda: tx @ tw, "input_grad": lambda: tg @ tw.T,
           "kernel_grad": lambda: tx.T @ tg}
    with torch.no_grad():
      for kind, fn in fns.items():
        row[f"torch_{kind}"] = _median_seconds(fn, repeats, windows)
  return row


def copy_bandwidth(mib: int, *, repeats: int, windows: int, torch=None) -> dict:
  """GB/s of y = x + 1 over a float32 array of `mib` MiB (bytes read plus bytes written)."""
  n = mib * 2**20 // 4
  x = np.ones(n, np.float32)
  jx = jnp.asarray(x)
  add = jax.jit(lambda a: a + 1.0)
  moved = 2 * n * 4 / 1e9
  out = {"mib": mib, "jax_gbps": moved / _median_seconds(
      lambda: jax.block_until_ready(add(jx)), repeats, windows)}
  if torch is not None:
    tx = torch.from_numpy(x)
    out["torch_gbps"] = moved / _median_seconds(lambda: tx + 1.0, repeats, windows)
  return out


def report(rows: list[dict], copy: dict, torch_ok: bool) -> str:
  names = [("forward", "fwd"), ("input_grad", "dx"), ("kernel_grad", "dk")]
  head = "| P | in | out | layers | GFLOP | " + " | ".join(
      f"jax {s} ms" + (f" | torch {s} ms" if torch_ok else "") for _, s in names) + " |"
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  totals = {}
  for r in rows:
    cells = [str(r["p"]), str(r["in"]), str(r["out"]), str(r["count"]), f"{r['gflop']:.2f}"]
    for kind, _ in names:
      for lib in ("jax", "torch") if torch_ok else ("jax",):
        ms = 1e3 * r[f"{lib}_{kind}"]
        cells.append(f"{ms:.2f}")
        totals[(lib, kind)] = totals.get((lib, kind), 0.0) + ms * r["count"]
    lines.append("| " + " | ".join(cells) + " |")
  gflop = sum(r["gflop"] * r["count"] for r in rows)
  lines.append("")
  for kind, _ in names:
    t = f"jax {totals[('jax', kind)]:.1f} ms"
    if torch_ok:
      t += (f", PyTorch {totals[('torch', kind)]:.1f} ms (jax takes "
            f"{totals[('jax', kind)] / totals[('torch', kind)]:.2f}x PyTorch's time)")
    lines.append(f"- one step's {kind.replace('_', ' ')} matmuls ({gflop:.1f} GFLOP): {t}")
  c = f"- copy ({copy['mib']} MiB, read + write): jax {copy['jax_gbps']:.1f} GB/s"
  if torch_ok:
    c += f", PyTorch {copy['torch_gbps']:.1f} GB/s"
  lines.append(c)
  return "\n".join(lines)


def main(argv=None) -> dict:
  fv = cli.parse_flags(define_flags, argv, __doc__)
  torch = benchmarks.optional_torch(fv.torch, fv.threads)
  shapes = pointwise_shapes(fv.image_size, fv.batch_size)
  rows = []
  for (p, cin, cout), count in sorted(shapes.items(), key=lambda kv: (-kv[0][0], kv[0][1:])):
    row = time_shape(p, cin, cout, repeats=fv.repeats, windows=fv.windows, torch=torch)
    row["count"] = count
    rows.append(row)
  copy = copy_bandwidth(fv.copy_mib, repeats=max(1, fv.repeats // 2), windows=fv.windows,
                        torch=torch)
  env = benchmarks.comparison_env(torch)
  print(f"# ResNet-50 1x1 convolutions at {fv.image_size}x{fv.image_size}, batch "
        f"{fv.batch_size}, float32; {benchmarks.comparison_header(env)}")
  print(report(rows, copy, torch is not None), flush=True)
  result = {"shapes": rows, "copy": copy}
  benchmarks.write_results(fv.out, env, define_flags, fv, [result])
  return result


if __name__ == "__main__":
  cli.run(main)
