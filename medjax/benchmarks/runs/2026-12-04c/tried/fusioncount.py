import re, sys
sys.path.insert(0, '/work/main')
import jax, jax.numpy as jnp
from medjax.benchmarks import step as step_bench
size = int(sys.argv[1])
state, one_step, batch_of, rngs, _, data, idx = step_bench.build_case('resnet', 20, (size, size, 1), augment=False)
idx = jnp.asarray(idx[0])
t = jax.jit(lambda s, d, i, r: one_step(s, batch_of(d, i), r)).lower(state, data, idx, rngs).compile().as_text()
entry = t[t.index('ENTRY'):]
shapes = {m.group(1): m.group(2) for m in re.finditer(r'^\s*(?:ROOT )?(%[\w.\-]+) = (\w+\[[\d,]*\])', entry, re.M)}
def n(s):
  k = 1
  for d in re.findall(r'\d+', s.split('[')[1].split(']')[0]): k *= int(d)
  return k
tot = 0; cnt = 0
for m in re.finditer(r'(%[\w.\-]+) = (\S+) fusion\((.*?)\), kind=kLoop', entry):
  ops = [a.strip().split(' ')[0] for a in re.sub(r'/\*index=\d+\*/', '', m.group(3)).split(',')]
  big = sum(1 for o in ops if o in shapes and n(shapes[o]) >= n(m.group(2)) > 50000)
  if big >= 3: cnt += 1; tot += big
print('loop fusions with >= 3 full-size operands:', cnt, 'operands', tot)
if len(sys.argv) > 2:
  for m in re.finditer(r'(%[\w.\-]+) = (\S+) fusion\((.*?)\), kind=kLoop.*?op_name="([^"]*)"', entry):
    ops = [a.strip().split(' ')[0] for a in re.sub(r'/\*index=\d+\*/', '', m.group(3)).split(',')]
    big = sum(1 for o in ops if o in shapes and n(shapes[o]) >= n(m.group(2)) > 50000)
    if big >= int(sys.argv[2]): print(big, m.group(1), m.group(2), m.group(4)[-70:])
