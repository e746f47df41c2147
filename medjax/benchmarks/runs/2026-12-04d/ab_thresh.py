"""Session 12, AMD EPYC: ResNet-50 steps with XLA's own kernel gradient for stride-1 convolutions
on output maps of at least N pixels (platform.XLA_KERNEL_GRAD_MIN_OUTPUT_PIXELS; 'none': the tap
matmuls everywhere, as before); each variant in its own process, alternating, 2 rounds."""
import json, subprocess, sys
code = r'''
import sys, json
sys.path.insert(0, "/work/main")
from medjax import platform
v = sys.argv[3]
platform.XLA_KERNEL_GRAD_MIN_OUTPUT_PIXELS = {} if v == "none" else {platform.cpu_vendor(): int(v)}
from medjax.benchmarks.step import bench_case
m, size = sys.argv[1], int(sys.argv[2])
r = bench_case(m, 20, size, steps=3 if size >= 128 else 5, windows=3, augment=False)
print(json.dumps([r["ms_per_step"], r["ms_per_step_min"], r["ms_per_step_max"]]))
'''
cases = [("128", v) for v in ("none", "1024", "256", "64")] + [("50", v) for v in ("none", "64")]
res = {}
for rnd in range(2):
  for size, v in cases:
    out = subprocess.run([sys.executable, "-c", code, "resnet", size, v], capture_output=True, text=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    res.setdefault(f"resnet:{size} {v}", []).append(r)
    print(rnd, size, v, r, flush=True)
json.dump(res, open(sys.argv[1], "w"), indent=1)
