import time, jax, jax.numpy as jnp, numpy as np
from jax import lax
from medjax.models import sgan
from medjax.models.layers import _matmul
TAPS = sgan._PHASE_TAPS
def fwd_variant(x, kernel, barrier=True, mm2d=True):
  n, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  rows = []
  for py in range(2):
    cols = []
    for px in range(2):
      taps = sgan._phase_taps(py, px)
      src = lax.optimization_barrier(xp) if barrier else xp
      patches = jnp.concatenate([src[:, ry:ry + h, rx:rx + w] for ry, rx, _, _ in taps], -1)
      k = jnp.concatenate([kernel[ky, kx] for _, _, ky, kx in taps], 0)
      cols.append(_matmul(patches, k) if mm2d else patches @ k)
    rows.append(jnp.stack(cols, 3))
  y = jnp.stack(rows, 2)
  return y.reshape(n, 2 * h, 2 * w, kernel.shape[-1])
def tj(f, *a, n=10):
  f = jax.jit(f); r0 = f(*a); jax.block_until_ready(r0); t0 = time.perf_counter()
  for _ in range(n): r = f(*a)
  jax.block_until_ready(r); return (time.perf_counter() - t0) / n * 1e3, r0
for h in (13, 26):
  rs = np.random.RandomState(0)
  x = jnp.asarray(rs.randn(20, h, h, 128), jnp.float32); k = jnp.asarray(rs.randn(4, 4, 128, 128) * 0.05, jnp.float32)
  t0, r0 = tj(sgan._conv_transpose_4x4, x, k)
  out = [f"current {t0:.2f}"]
  for b in (False, True):
    for m in (False, True):
      t1, r1 = tj(lambda x, k: fwd_variant(x, k, b, m), x, k)
      out.append(f"barrier={b} mm2d={m} {t1:.2f} (diff {float(jnp.max(jnp.abs(r1 - r0))):.1e})")
  print(h, " | ".join(out))
x = jnp.asarray(np.random.randn(20, 26, 26, 128), jnp.float32); k = jnp.asarray(np.random.randn(4, 4, 128, 128), jnp.float32)
xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
print("one phase patches", tj(lambda xp: jnp.concatenate([xp[:, ry:ry + 26, rx:rx + 26] for ry, rx, _, _ in sgan._phase_taps(0, 0)], -1), xp)[0])
P = jnp.asarray(np.random.randn(13520, 512), jnp.float32); K = jnp.asarray(np.random.randn(512, 128), jnp.float32)
print("one phase matmul", tj(lambda P, K: P @ K, P, K)[0])
Y = [jnp.asarray(np.random.randn(20, 26, 26, 128), jnp.float32) for _ in range(4)]
print("interleave", tj(lambda a, b, c, d: jnp.stack([jnp.stack([a, b], 3), jnp.stack([c, d], 3)], 2).reshape(20, 52, 52, 128), *Y)[0])
print("4 patches+matmul", tj(lambda xp, K: [jnp.concatenate([xp[:, ry:ry + 26, rx:rx + 26] for ry, rx, _, _ in sgan._phase_taps(py, px)], -1).reshape(-1, 512) @ K for py in range(2) for px in range(2)], xp, K)[0])
