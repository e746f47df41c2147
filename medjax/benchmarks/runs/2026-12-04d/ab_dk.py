"""Session 12, AMD EPYC: the ResNet-50 step with the 3x3 kernel gradients by matmuls (as now) or by
XLA's convolution (layers.MATMUL_KERNEL_GRAD=False); each variant in its own process, alternating."""
import json, os, subprocess, sys
code = r'''
import sys, json
sys.path.insert(0, "/work/main")
from medjax.models import layers
layers.MATMUL_KERNEL_GRAD = sys.argv[3] == "matmul"
from medjax.benchmarks.step import bench_case
m, size = sys.argv[1], int(sys.argv[2])
r = bench_case(m, 20, size, steps=3 if size >= 128 else 5, windows=3, augment=False)
print(json.dumps([r["ms_per_step"], r["ms_per_step_min"], r["ms_per_step_max"]]))
'''
res = {}
for rnd in range(2):
  for m, size in (("resnet", "128"), ("resnet", "50")):
    for v in ("matmul", "xla_conv"):
      out = subprocess.run([sys.executable, "-c", code, m, size, v], capture_output=True, text=True)
      r = json.loads(out.stdout.strip().splitlines()[-1])
      res.setdefault(f"{m}:{size} {v}", []).append(r)
      print(rnd, m, size, v, r, flush=True)
json.dump(res, open(sys.argv[1], "w"), indent=1)
