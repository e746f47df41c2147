import time, jax, jax.numpy as jnp, numpy as np
from jax import lax
def tj(f, *a, n=20):
  f = jax.jit(f); r0 = f(*a); jax.block_until_ready(r0); t0 = time.perf_counter()
  for _ in range(n): r = f(*a)
  jax.block_until_ready(r); return (time.perf_counter() - t0) / n * 1e3, r0
shapes = [(20480, 64, 256), (20480, 256, 64), (20480, 64, 64), (5120, 128, 512), (5120, 512, 128), (1280, 1024, 256)]
V = {
 "a.T@g": lambda a, g: a.T @ g,
 "(g.T@a).T": lambda a, g: (g.T @ a).T,
 "einsum blk20": lambda a, g: jnp.einsum("npa,npb->ab", a.reshape(20, -1, a.shape[1]), g.reshape(20, -1, g.shape[1])),
 "bmm sum 4": lambda a, g: jnp.einsum("npa,npb->nab", a.reshape(4, -1, a.shape[1]), g.reshape(4, -1, g.shape[1])).sum(0),
 "bmm sum 2": lambda a, g: jnp.einsum("npa,npb->nab", a.reshape(2, -1, a.shape[1]), g.reshape(2, -1, g.shape[1])).sum(0),
 "chunks2": lambda a, g: sum(a[i::2].T @ g[i::2] for i in range(2)),
 "halves": lambda a, g: a[:a.shape[0]//2].T @ g[:a.shape[0]//2] + a[a.shape[0]//2:].T @ g[a.shape[0]//2:],
 "HIGHEST": lambda a, g: lax.dot_general(a, g, (((0,), (0,)), ((), ())), precision=lax.Precision.HIGHEST),
}
for m, k, n in shapes:
  a = jnp.asarray(np.random.randn(m, k), jnp.float32); g = jnp.asarray(np.random.randn(m, n), jnp.float32)
  ref = None; out = []
  for name, f in V.items():
    ms, r = tj(f, a, g)
    ref = r if ref is None else ref
    out.append(f"{name} {ms:.2f}" + ("" if float(jnp.max(jnp.abs(r - ref))) < 1e-2 else " WRONG"))
  print(f"{m}x{k}x{n}:", " | ".join(out))
