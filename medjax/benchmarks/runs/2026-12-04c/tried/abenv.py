"""A/B of environment variants of the bench step, each in its own process, alternating."""
import json, os, subprocess, sys
cases = sys.argv[1].split(',')
variants = {'none': {}, 'malloc': dict(MALLOC_ARENA_MAX='1', MALLOC_MMAP_MAX_='0', MALLOC_TRIM_THRESHOLD_='4294967296', MALLOC_TOP_PAD_='67108864')}
names = sys.argv[2].split(',')
rounds = int(sys.argv[3])
code = r'''
import sys, json, resource
sys.path.insert(0, "/work/main")
from medjax.benchmarks.step import bench_case
m, size = sys.argv[1], int(sys.argv[2])
steps = 3 if size >= 128 else 5
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
r = bench_case(m, 20, size, steps=steps, windows=3, augment=False)
print(json.dumps([r["ms_per_step"], r["ms_per_step_min"], r["ms_per_step_max"]]))
'''
res = {}
for rnd in range(rounds):
  for case in cases:
    m, size = case.split(':')
    for v in names:
      env = dict(os.environ, **variants[v])
      out = subprocess.run([sys.executable, '-c', code, m, size], env=env, capture_output=True, text=True)
      try:
        r = json.loads(out.stdout.strip().splitlines()[-1])
      except Exception:
        print(out.stderr[-2000:]); raise
      res.setdefault(f'{case} {v}', []).append(r)
      print(rnd, case, v, r, flush=True)
json.dump(res, open(sys.argv[4], 'w'), indent=1)
