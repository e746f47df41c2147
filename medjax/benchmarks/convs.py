"""ResNet-50's spatial convolutions (the 7x7 stem and the sixteen 3x3s) in medjax against
PyTorch, one layer at a time, forward and both gradients.

    python -m medjax.benchmarks.convs --image_size=128 --batch_size=20 [--out=convs.json]

`medjax.benchmarks.gemm` times the 1x1 convolutions (plain matmuls on a CPU); this times the
others, each as `medjax.models.layers.Conv` computes it in a train step on this platform
("auto": on a CPU, XLA's convolution forward and for the input gradient and the kernel gradient
by matmuls, one per tap or one im2col matmul for the 1-channel stem; all three by im2col on the
smallest maps) and, as a second jax column, XLA's own convolution for all three ("lax"), against
PyTorch's `conv2d` and `convolution_backward` (oneDNN, NCHW as
`medjax.benchmarks.torch_reference` runs them, `--threads` threads). For every distinct (input
side, in, out, kernel, stride) of torchvision's ResNet-50 at the given image size (count: how
many layers of one step have it), the median of `--windows` windows of `--repeats` calls, summed
over the network as one train step has them (the stem's input gradient is not part of a step:
the image needs none). Measured figures: `medjax/benchmarks/RESULTS.md`.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from medjax import benchmarks, cli
from medjax.benchmarks.gemm import STAGES, _median_seconds, _side
from medjax.models.layers import Conv

KINDS = ("forward", "input_grad", "kernel_grad")
IMPLS = ("auto", "lax")


def define_flags(fv) -> None:
  flags.DEFINE_integer("image_size", 128, "Image height and width.", lower_bound=32,
                       flag_values=fv)
  flags.DEFINE_integer("batch_size", 20, "Images per step.", lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("repeats", 5, "Calls per timing window.", lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("windows", 5, "Timing windows (the median is reported).", lower_bound=1,
                       flag_values=fv)
  flags.DEFINE_integer("threads", 0, "torch.set_num_threads (0: the CPU count).",
                       lower_bound=0, flag_values=fv)
  flags.DEFINE_bool("torch", True, "Time PyTorch beside jax (skipped if not installed).",
                    flag_values=fv)
  flags.DEFINE_string("out", None, "Write the results as JSON here.", flag_values=fv)


def spatial_shapes(image_size: int, batch_size: int) -> dict[tuple[int, ...], int]:
  """{(batch, input side, in, out, kernel, stride): layers of that shape} for the stem and the
  3x3 convolutions of torchvision's ResNet-50 (a 1-channel image; stride on the 3x3 of the
  first bottleneck of stages 2-4)."""
  shapes = {(batch_size, image_size, 1, 64, 7, 2): 1}
  side = _side(_side(image_size, 2), 2)  # stem conv /2, max-pool /2
  for i, blocks in enumerate(STAGES):
    width = 64 * 2**i
    for j in range(blocks):
      stride = 2 if i > 0 and j == 0 else 1
      key = (batch_size, side, width, width, 3, stride)
      shapes[key] = shapes.get(key, 0) + 1
      side = _side(side, stride)
  return shapes


def _jax_fns(impl: str, cin: int, cout: int, k: int, stride: int):
  pad = (k - 1) // 2
  conv = Conv(cout, (k, k), (stride, stride), ((pad, pad), (pad, pad)), impl=impl)

  def apply(w, x):
    return conv.apply({"params": {"kernel": w}}, x)

  return {"forward": jax.jit(lambda w, x, g: apply(w, x)),
          "input_grad": jax.jit(lambda w, x, g: jax.vjp(lambda x: apply(w, x), x)[1](g)[0]),
          "kernel_grad": jax.jit(lambda w, x, g: jax.vjp(lambda w: apply(w, x), w)[1](g)[0])}


def time_shape(batch: int, side: int, cin: int, cout: int, k: int, stride: int, *,
               repeats: int, windows: int, torch=None) -> dict:
  """Seconds of one layer's forward, input gradient and kernel gradient in jax (each impl) and
  PyTorch."""
  out_side = _side(side, stride)
  rng = np.random.default_rng(0)
  x = rng.standard_normal((batch, side, side, cin), np.float32)
  w = (rng.standard_normal((k, k, cin, cout), np.float32) / np.sqrt(k * k * cin)).astype(np.float32)
  g = rng.standard_normal((batch, out_side, out_side, cout), np.float32)
  row = {"batch": batch, "side": side, "in": cin, "out": cout, "kernel": k, "stride": stride,
         "gflop": 2 * batch * out_side**2 * k * k * cin * cout / 1e9}
  jw, jx, jg = (jnp.asarray(a) for a in (w, x, g))
  for impl in IMPLS:
    for kind, fn in _jax_fns(impl, cin, cout, k, stride).items():
      row[f"{impl}_{kind}"] = _median_seconds(
          lambda: jax.block_until_ready(fn(jw, jx, jg)), repeats, windows)
  if torch is not None:
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    tw = torch.from_numpy(w.transpose(3, 2, 0, 1).copy())
    tg = torch.from_numpy(g.transpose(0, 3, 1, 2).copy())
    pad = (k - 1) // 2
    conv = torch.nn.functional.conv2d
    back = torch.ops.aten.convolution_backward

    def grad(mask):
      return lambda: back(tg, tx, tw, None, (stride, stride), (pad, pad), (1, 1), False, (0, 0),
                          1, mask)

    fns = {"forward": lambda: conv(tx, tw, stride=stride, padding=pad),
           "input_grad": grad((True, False, False)), "kernel_grad": grad((False, True, False))}
    with torch.no_grad():
      for kind, fn in fns.items():
        row[f"torch_{kind}"] = _median_seconds(fn, repeats, windows)
  return row


def _in_step(row: dict, kind: str) -> bool:
  return not (kind == "input_grad" and row["in"] == 1)  # the image needs no gradient


def totals(rows: list[dict], libs: tuple[str, ...]) -> dict[str, dict[str, float]]:
  """{lib: {kind: ms}} summed over one step's layers (count times each shape)."""
  return {lib: {kind: 1e3 * sum(r[f"{lib}_{kind}"] * r["count"] for r in rows
                                if _in_step(r, kind)) for kind in KINDS} for lib in libs}


def report(rows: list[dict], libs: tuple[str, ...]) -> str:
  names = [("forward", "fwd"), ("input_grad", "dx"), ("kernel_grad", "dk")]
  head = ("| input | in | out | k/s | layers | GFLOP | "
          + " | ".join(f"{lib} {s} ms" for _, s in names for lib in libs) + " |")
  lines = [head, "|" + "---|" * (head.count("|") - 1)]
  for r in rows:
    cells = [f"{r['batch']}x{r['side']}x{r['side']}", str(r["in"]), str(r["out"]),
             f"{r['kernel']}/{r['stride']}", str(r["count"]), f"{r['gflop']:.2f}"]
    cells += [f"{1e3 * r[f'{lib}_{kind}']:.2f}" if _in_step(r, kind) else "-"
              for kind, _ in names for lib in libs]
    lines.append("| " + " | ".join(cells) + " |")
  sums = totals(rows, libs)
  lines.append("")
  for kind, _ in names:
    parts = [f"{lib} {sums[lib][kind]:.1f} ms" for lib in libs]
    if "torch" in libs:
      parts.append(f"medjax takes {sums['auto'][kind] / sums['torch'][kind]:.2f}x PyTorch's time")
    lines.append(f"- one step's {kind.replace('_', ' ')}s: " + ", ".join(parts))
  every = {lib: sum(sums[lib].values()) for lib in libs}
  lines.append("- all three: " + ", ".join(f"{lib} {ms:.1f} ms" for lib, ms in every.items()))
  return "\n".join(lines)


def main(argv=None) -> dict:
  fv = cli.parse_flags(define_flags, argv, __doc__)
  torch = benchmarks.optional_torch(fv.torch, fv.threads)
  libs = IMPLS + (("torch",) if torch is not None else ())
  rows = []
  for key, count in spatial_shapes(fv.image_size, fv.batch_size).items():
    row = time_shape(*key, repeats=fv.repeats, windows=fv.windows, torch=torch)
    row["count"] = count
    rows.append(row)
  env = benchmarks.comparison_env(torch)
  print(f"# ResNet-50 stem and 3x3 convolutions at {fv.image_size}x{fv.image_size}, batch "
        f"{fv.batch_size}, float32; auto = medjax's layer as a step runs it, lax = XLA's "
        f"convolution; {benchmarks.comparison_header(env)}")
  print(report(rows, libs), flush=True)
  result = {"shapes": rows, "totals_ms": totals(rows, libs)}
  benchmarks.write_results(fv.out, env, define_flags, fv, [result])
  return result


if __name__ == "__main__":
  cli.run(main)
