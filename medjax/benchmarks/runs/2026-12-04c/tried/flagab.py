"""A/B of XLA_FLAGS variants of the bench step, each in its own process, alternating."""
import json, os, subprocess, sys
cases = sys.argv[1].split(',')
variants = sys.argv[2].split('|')  # 'none' or XLA flag strings
rounds = int(sys.argv[3])
code = r'''
import sys, json
sys.path.insert(0, "/work/main")
from medjax.benchmarks.step import bench_case
m, size = sys.argv[1], int(sys.argv[2])
steps = 3 if size >= 128 else 5
r = bench_case(m, 20, size, steps=steps, windows=3, augment=False)
print(json.dumps([r["ms_per_step"], r["ms_per_step_min"], r["ms_per_step_max"], r["compile_seconds"]]))
'''
res = {}
for rnd in range(rounds):
  for case in cases:
    m, size = case.split(':')
    for v in variants:
      env = dict(os.environ)
      if v != 'none':
        env['XLA_FLAGS'] = v
      out = subprocess.run([sys.executable, '-c', code, m, size], env=env, capture_output=True, text=True)
      try:
        r = json.loads(out.stdout.strip().splitlines()[-1])
      except Exception:
        print(v, out.stderr[-1500:]); r = None
      res.setdefault(f'{case} {v}', []).append(r)
      print(rnd, case, v, r, flush=True)
json.dump(res, open(sys.argv[4], 'w'), indent=1)
