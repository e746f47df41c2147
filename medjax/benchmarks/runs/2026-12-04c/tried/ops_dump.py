"""Per-instruction thunk times of one case + the optimized HLO, for reading."""
import sys, json, tempfile, time
sys.path.insert(0, '/work/main')
import jax, jax.numpy as jnp
from medjax.benchmarks import op_profile as op
from medjax.benchmarks import step as step_bench
model, size, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
state, one_step, batch_of, rngs, _, data, idx = step_bench.build_case(model, 20, (size, size, 1))
idx = jnp.asarray(idx[0])
def train_step(s, d, i, r):
  return one_step(s, batch_of(d, i), r)
compiled = jax.jit(train_step, donate_argnums=0).lower(state, data, idx, rngs).compile()
text = compiled.as_text()
open(out + '.hlo.txt', 'w').write(text)
ops = op.parse_hlo(text)
for _ in range(2):
  state, metrics = compiled(state, data, idx, rngs)
jax.block_until_ready(metrics)
with tempfile.TemporaryDirectory() as d:
  with jax.profiler.trace(d):
    for _ in range(3):
      state, metrics = compiled(state, data, idx, rngs)
    jax.block_until_ready(metrics)
  sec = op.thunk_seconds(d, "train_step")
rows = []
for name, s in sec.items():
  c = op.classify(name, ops)
  rows.append({'ms': s / 3 * 1e3, 'name': name, 'phase': c['phase'], 'cat': c['category'],
               'op_name': c['op_name'][-100:], 'shape': ops.get(name, {}).get('shape')})
rows.sort(key=lambda r: -r['ms'])
json.dump(rows, open(out + '.json', 'w'), indent=0)
print(sum(r['ms'] for r in rows))
