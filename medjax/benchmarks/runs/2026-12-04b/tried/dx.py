import time, jax, jax.numpy as jnp, numpy as np
from medjax.models import sgan
TAPS = sgan._PHASE_TAPS
NHWC = ("NHWC", "HWIO", "NHWC")
def dx_current(g, kernel):
  return jax.lax.conv_general_dilated(g, kernel[::-1, ::-1].transpose(0, 1, 3, 2), (2, 2), ((1, 1), (1, 1)), dimension_numbers=NHWC)
def dx_stacked(g, kernel):
  # dx[m] = sum_{p, (r, k) in TAPS[p]} g_p[m + 1 - r] @ k[k]^T  (per axis)
  # offsets 1 - r: p=0 -> r in {0,1} -> {1, 0}; p=1 -> r in {1,2} -> {0, -1}.
  # Shift phase 1 by one: g'_1[j] = g_1[j - 1] (pad 1 before) so its offsets become {1, 0} too,
  # and pad phase 0 by one after: then every phase reads window [m, m + 1] of its padded copy.
  n, H, W, c = g.shape
  h, w = H // 2, W // 2
  phases, ks = [], []
  for py in range(2):
    for px in range(2):
      gp = g[:, py::2, px::2]
      gp = jnp.pad(gp, ((0, 0), (py, 1 - py), (px, 1 - px), (0, 0)))   # [n, h+1, w+1, c]
      phases.append(gp)
      # window position a in {0, 1} (rows m + a of the padded copy) <-> offset: for py=0,
      # padded index m + a = original m + a -> offset a = 1 - r -> r = 1 - a; for py=1 padded
      # m + a = original m + a - 1 -> offset a - 1 = 1 - r -> r = 2 - a.
      kp = jnp.zeros((2, 2, c, kernel.shape[2]), kernel.dtype)
      rows = {r: k for r, k in TAPS[py]}; cols = {r: k for r, k in TAPS[px]}
      kp = jnp.stack([jnp.stack([kernel[rows[(1 if py == 0 else 2) - a]][cols[(1 if px == 0 else 2) - b]].T
                                 for b in range(2)]) for a in range(2)])  # [2, 2, cout(g), cin(x)]
      ks.append(kp)
  G = jnp.concatenate(phases, -1)             # [n, h+1, w+1, 4c]
  K = jnp.concatenate(ks, 2)                  # [2, 2, 4c, cin]
  return jax.lax.conv_general_dilated(G, K, (1, 1), "VALID", dimension_numbers=NHWC)
def tj(f, *a, n=10):
  f = jax.jit(f); r0 = f(*a); jax.block_until_ready(r0); t0 = time.perf_counter()
  for _ in range(n): r = f(*a)
  jax.block_until_ready(r); return (time.perf_counter() - t0) / n * 1e3, r0
for h in (13, 26):
  rs = np.random.RandomState(0)
  g = jnp.asarray(rs.randn(20, 2 * h, 2 * h, 128), jnp.float32); k = jnp.asarray(rs.randn(4, 4, 128, 128) * 0.05, jnp.float32)
  t0, r0 = tj(dx_current, g, k); t1, r1 = tj(dx_stacked, g, k)
  print(h, f"current {t0:.1f} ms, stacked {t1:.1f} ms, max diff {float(jnp.max(jnp.abs(r0 - r1))):.2e} (scale {float(jnp.max(jnp.abs(r0))):.1f})")
