import resource, sys, time, os
sys.path.insert(0, '/work/main')
if len(sys.argv) > 2 and sys.argv[2] == 'mallopt':
  import ctypes
  libc = ctypes.CDLL("libc.so.6")
  print('mmap_max', libc.mallopt(-4, 0), 'trim', libc.mallopt(-1, 2**30 * 8 if False else 2**31 - 1), 'top_pad', libc.mallopt(-2, 64 << 20))
import jax, jax.numpy as jnp
from medjax.benchmarks import step as step_bench
size = int(sys.argv[1])
state, one_step, batch_of, rngs, _, data, idx = step_bench.build_case('resnet', 20, (size, size, 1), augment=False)
idx = jnp.asarray(idx[0])
c = jax.jit(lambda s, d, i, r: one_step(s, batch_of(d, i), r), donate_argnums=0).lower(state, data, idx, rngs).compile()
for _ in range(2):
  state, m = c(state, data, idx, rngs)
jax.block_until_ready(m)
for rep in range(2):
  r0 = resource.getrusage(resource.RUSAGE_SELF); t = time.perf_counter()
  n = 5
  for _ in range(n):
    state, m = c(state, data, idx, rngs)
  jax.block_until_ready(m)
  r1 = resource.getrusage(resource.RUSAGE_SELF)
  print('ms/step %.1f  minor faults/step %d  (%.0f MB/step)' % ((time.perf_counter() - t) / n * 1e3, (r1.ru_minflt - r0.ru_minflt) / n, (r1.ru_minflt - r0.ru_minflt) / n * 4096 / 1e6))
