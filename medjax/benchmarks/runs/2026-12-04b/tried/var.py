"""python var.py MODEL SIZE 'stmt; stmt' ... : ms/step of each variant (exec'd with layers in scope)."""
import sys, json
from medjax.models import layers
from medjax.benchmarks import step
model, size = sys.argv[1], int(sys.argv[2])
for stmt in sys.argv[3:]:
  exec(stmt)
  r = step.bench_case(model, 20, size, steps=10 if size <= 50 else 4, windows=3, augment=False)
  print(f"{stmt:60s} {r['ms_per_step']:8.1f} ({r['ms_per_step_min']:.1f}-{r['ms_per_step_max']:.1f}) compile {r['compile_seconds']:.1f}s", flush=True)
