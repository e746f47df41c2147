"""Where a train step's time goes, op by op: an XLA profile joined with the compiled HLO.

    python -m medjax.bench --help                      # the step benchmark this builds on
    python -m medjax.benchmarks.op_profile --models=resnet --image_sizes=50,128 --steps=3
    python -m medjax.benchmarks.op_profile --models=sgan --image_sizes=50 --out=ops.json

For each case it compiles the step exactly as `medjax.bench` does (random data, Adam, the
platform's layers), runs `--steps` steps under `jax.profiler.trace`, and reads the trace's
XLA:CPU thunk events (`hlo_op` = the instruction of the compiled module each one ran). Each
instruction is classified from the optimized HLO (`compiled.as_text()`):

  category  conv (a convolution, alone or fused), matmul (a dot, alone or fused), reduce,
            elementwise (other fusions: batch norm, activations, the optimizer's updates),
            copy/transpose, slice/pad/concat, other
  phase     forward (`jvp(...)` in its op_name metadata), backward (`transpose(jvp(...))`),
            or update (neither: the optimizer, augmentation, the loss's bookkeeping)

and its FLOPs counted from its shapes (2 per multiply-add: convolutions from the output, the
window and the input features per group, dilations' zeros included; dots from the output and
the contracted size). The table sums the thunks' thread time per (phase, category) per step:
their share of all thunk time, GFLOP per step, and GFLOP/s per busy thread, beside
`--ceiling`: the GFLOP/s of one large float32 matmul on the same machine (per thread), the
practical peak the ops are compared with. Thread time exceeds wall time when both cores work.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import math
import os
import re
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from medjax import benchmarks, cli
from medjax.benchmarks import step as step_bench

CATEGORIES = ("conv", "matmul", "reduce", "elementwise", "copy/transpose", "slice/pad/concat",
              "other")
PHASES = ("forward", "backward", "update")

_INSTR = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.+?)\s+([a-z][\w\-]*)\((.*)$")
_COMP = re.compile(r"^(?:ENTRY\s+)?%?([\w.\-]+)")  # a computation's header, at column 0


def _shape_dims(shape: str) -> list[int]:
  """[20, 50, 50, 1] of 'f32[20,50,50,1]{3,2,1,0}' (the first array of a tuple)."""
  m = re.search(r"\[([\d,]*)\]", shape)
  if not m or not m.group(1):
    return []
  return [int(d) for d in m.group(1).split(",")]


def parse_hlo(text: str) -> dict[str, dict]:
  """Every instruction of an optimized HLO module by name: {"opcode", "shape", "operands",
  "computation", "calls", "op_name", "attrs"}; computations' bodies under "_computations"."""
  ops: dict[str, dict] = {}
  computations: dict[str, list[str]] = collections.defaultdict(list)
  current = None
  for line in text.splitlines():
    if line and not line[0].isspace() and line.rstrip().endswith("{"):
      current = _COMP.match(line).group(1)
      continue
    m = _INSTR.match(line)
    if m and current is not None:
      name, shape, opcode, rest = m.groups()
      args = rest.split(")", 1)[0]
      operands = re.findall(r"%([\w.\-]+)", args)
      calls = re.search(r"calls=%?([\w.\-]+)", rest)
      op_name = re.search(r'op_name="([^"]*)"', rest)
      ops[name] = {"opcode": opcode, "shape": shape, "operands": operands,
                   "computation": current, "calls": calls.group(1) if calls else None,
                   "op_name": op_name.group(1) if op_name else "", "attrs": rest}
      computations[current].append(name)
  ops["_computations"] = dict(computations)  # type: ignore[assignment]
  return ops


def _flops(op: dict, ops: dict) -> int:
  out = math.prod(_shape_dims(op["shape"]) or [0])
  if op["opcode"] == "dot":
    lhs = ops.get(op["operands"][0]) if op["operands"] else None
    m = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", op["attrs"])
    if lhs is None or not m:
      return 0
    dims = _shape_dims(lhs["shape"])
    return 2 * out * math.prod(dims[int(d)] for d in m.group(1).split(",") if d)
  if op["opcode"] == "convolution":
    rhs = ops.get(op["operands"][1]) if len(op["operands"]) > 1 else None
    window = re.search(r"size=([\dx]+)", op["attrs"])
    labels = re.search(r"dim_labels=\w+_(\w+)->", op["attrs"])
    if rhs is None or not window or not labels:
      return 0
    rhs_dims = _shape_dims(rhs["shape"])
    in_features = rhs_dims[labels.group(1).index("i")]
    return 2 * out * math.prod(int(s) for s in window.group(1).split("x")) * in_features
  return 0


def classify(name: str, ops: dict) -> dict:
  """{"category", "phase", "flops", "op_name"} of one instruction (a thunk of the trace)."""
  op = ops.get(name)
  if op is None:
    return {"category": "other", "phase": "update", "flops": 0, "op_name": ""}
  body = [op]
  if op["calls"]:
    body = [ops[n] for n in ops["_computations"].get(op["calls"], []) if n in ops]
  opcodes = {b["opcode"] for b in body}
  if "convolution" in opcodes:
    category = "conv"
  elif "dot" in opcodes:
    category = "matmul"
  elif op["opcode"] in ("copy", "transpose") or opcodes <= {"copy", "transpose", "parameter",
                                                             "bitcast"}:
    category = "copy/transpose"
  elif op["opcode"] in ("slice", "dynamic-slice", "pad", "concatenate",
                        "dynamic-update-slice") or (opcodes - {"parameter", "bitcast"} and
                                                    opcodes - {"parameter", "bitcast"} <= {
                                                        "slice", "pad", "concatenate",
                                                        "dynamic-slice", "dynamic-update-slice",
                                                        "copy", "reshape"}):
    category = "slice/pad/concat"
  elif "reduce" in opcodes or op["opcode"] == "reduce":
    category = "reduce"
  elif op["opcode"] == "fusion":
    category = "elementwise"
  else:
    category = "other"
  names = [op["op_name"]] + [b["op_name"] for b in body]
  if any("transpose(jvp(" in n for n in names):
    phase = "backward"
  elif any("jvp(" in n for n in names):
    phase = "forward"
  else:
    phase = "update"
  flops = sum(_flops(b, ops) for b in body if b["opcode"] in ("dot", "convolution"))
  label = next((n for n in names if n), "")
  return {"category": category, "phase": phase, "flops": flops, "op_name": label}


def thunk_seconds(trace_dir: str, module_hint: str | None = None) -> dict[str, float]:
  """Thread seconds per HLO instruction summed over the XLA:CPU thunk events of the trace."""
  files = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
  if not files:
    raise FileNotFoundError(f"no *.trace.json.gz under {trace_dir}")
  with gzip.open(max(files, key=os.path.getmtime)) as f:
    events = json.load(f)["traceEvents"]
  out: dict[str, float] = collections.defaultdict(float)
  for e in events:
    args = e.get("args") or {}
    if e.get("ph") == "X" and "hlo_op" in args:
      if module_hint and module_hint not in args.get("hlo_module", ""):
        continue
      out[args["hlo_op"]] += e.get("dur", 0.0) / 1e6
  return dict(out)


def matmul_ceiling(n: int = 2048, repeats: int = 5) -> float:
  """GFLOP/s of one n x n x n float32 matmul on this machine (all of JAX's threads)."""
  a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n), np.float32))
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    f(a).block_until_ready()
    times.append(time.perf_counter() - t)
  return 2 * n ** 3 / statistics.median(times) / 1e9


def profile_case(model: str, image_size: int, *, batch_size: int = 20, steps: int = 3,
                 augment: bool = False, dtype: str = "float32") -> dict:
  """Compiles one case as `medjax.bench` does, traces `steps` steps and returns its rows."""
  state, one_step, batch_of, rngs, _, data, idx = step_bench.build_case(
      model, batch_size, (image_size, image_size, 1), dtype=dtype, augment=augment)
  idx = jnp.asarray(idx[0])

  def train_step(s, d, i, r):
    return one_step(s, batch_of(d, i), r)

  compiled = jax.jit(train_step, donate_argnums=0).lower(state, data, idx, rngs).compile()
  ops = parse_hlo(compiled.as_text())
  for _ in range(2):
    state, metrics = compiled(state, data, idx, rngs)
  jax.block_until_ready(metrics)
  with tempfile.TemporaryDirectory() as trace_dir:
    t = time.perf_counter()
    with jax.profiler.trace(trace_dir):
      for _ in range(steps):
        state, metrics = compiled(state, data, idx, rngs)
      jax.block_until_ready(metrics)
    wall = (time.perf_counter() - t) / steps
    seconds = thunk_seconds(trace_dir, "train_step")
  groups: dict[tuple, dict] = {}
  top = []
  for name, sec in seconds.items():
    c = classify(name, ops)
    g = groups.setdefault((c["phase"], c["category"]), {"seconds": 0.0, "flops": 0, "ops": 0})
    g["seconds"] += sec / steps
    g["flops"] += c["flops"]
    g["ops"] += 1
    top.append((sec / steps, name, c))
  total = sum(g["seconds"] for g in groups.values())
  rows = []
  for phase in PHASES:
    for category in CATEGORIES:
      g = groups.get((phase, category))
      if g is None:
        continue
      rows.append({"phase": phase, "category": category, "ms_per_step": 1e3 * g["seconds"],
                   "share": g["seconds"] / total if total else None,
                   "gflop_per_step": g["flops"] / 1e9, "instructions": g["ops"],
                   "gflops": (g["flops"] / 1e9 / g["seconds"]
                                         if g["flops"] and g["seconds"] else None)})
  top.sort(key=lambda x: -x[0])
  return {"model": model, "image_size": image_size, "batch_size": batch_size, "dtype": dtype,
          "augment": augment, "steps": steps, "wall_ms_per_step": 1e3 * wall,
          "thread_ms_per_step": 1e3 * total,
          "gflop_per_step": sum(g["flops"] for g in groups.values()) / 1e9, "rows": rows,
          "top": [{"ms_per_step": 1e3 * s, "hlo_op": n, "phase": c["phase"],
                   "category": c["category"], "gflop": c["flops"] / 1e9,
                   "op_name": c["op_name"][-120:]} for s, n, c in top[:15]]}


def report(case: dict, ceiling: float | None) -> str:
  lines = [f"## {case['model']} {case['image_size']}x{case['image_size']}, batch "
           f"{case['batch_size']}, {case['dtype']}: wall {case['wall_ms_per_step']:.0f} ms/step, "
           f"thunk time {case['thread_ms_per_step']:.0f} ms/step, "
           f"{case['gflop_per_step']:.1f} GFLOP/step (convolutions and matmuls)", "",
           "| phase | category | ms/step (thunks) | share | GFLOP/step | GFLOP/s "
           "| of the matmul ceiling |", "|---|---|---|---|---|---|---|"]
  for r in case["rows"]:
    rate = r.get("gflops", r.get("gflops_per_thread"))
    lines.append(
        f"| {r['phase']} | {r['category']} | {r['ms_per_step']:.0f} | {100 * r['share']:.1f}% | "
        f"{r['gflop_per_step']:.2f} | {f'{rate:.1f}' if rate else '—'} | "
        f"{f'{100 * rate / ceiling:.0f}%' if rate and ceiling else '—'} |")
  lines += ["", "Slowest instructions:", "", "| ms/step | instruction | phase | category | GFLOP "
            "| op_name (end) |", "|---|---|---|---|---|---|"]
  for t in case["top"][:10]:
    lines.append(f"| {t['ms_per_step']:.1f} | {t['hlo_op']} | {t['phase']} | {t['category']} | "
                 f"{t['gflop']:.2f} | `{t['op_name'][-70:]}` |")
  return "\n".join(lines)


def define_flags(fv) -> None:
  flags.DEFINE_list("models", "resnet", "cnn, resnet or sgan.", flag_values=fv)
  flags.DEFINE_list("image_sizes", "50", "Image heights and widths.", flag_values=fv)
  flags.DEFINE_integer("batch_size", 20, "Images per step.", lower_bound=1, flag_values=fv)
  flags.DEFINE_integer("steps", 3, "Steps traced.", lower_bound=1, flag_values=fv)
  flags.DEFINE_bool("augment", False, "Augment in the step, as training does.", flag_values=fv)
  flags.DEFINE_bool("ceiling", True, "Time a 2048^3 float32 matmul for the ceiling column.",
                    flag_values=fv)
  flags.DEFINE_string("out", None, "Write the cases as JSON here.", flag_values=fv)


def main(argv=None) -> list[dict]:
  FLAGS = cli.parse_flags(define_flags, argv, __doc__)
  threads = os.cpu_count() or 1
  ceiling = matmul_ceiling() if FLAGS.ceiling else None
  env = step_bench.environment()
  print(f"# {env.get('cpu_model') or env.get('cpu')}, {threads} threads; matmul ceiling "
        + (f"{ceiling:.0f} GFLOP/s (2048^3 float32, all threads)" if ceiling else "not measured"))
  cases = []
  for model in FLAGS.models:
    for size in FLAGS.image_sizes:
      case = profile_case(model, int(size), batch_size=FLAGS.batch_size, steps=FLAGS.steps,
                          augment=FLAGS.augment)
      cases.append(case)
      print(report(case, ceiling), flush=True)
  benchmarks.write_results(FLAGS.out, {**env, "matmul_ceiling_gflops": ceiling,
                                       "threads": threads}, define_flags, FLAGS, cases)
  return cases


if __name__ == "__main__":
  cli.run(main)
