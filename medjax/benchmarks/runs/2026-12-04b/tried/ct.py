import time, functools, jax, jax.numpy as jnp, numpy as np
from medjax.models import sgan
from medjax.models.layers import _matmul
TAPS = sgan._PHASE_TAPS  # per output parity p: ((r, k), (r, k))

def _assemble(z):
  """z [n, h, w, 4, 4, c] (x @ k[ky, kx] for every tap) -> y [n, 2h, 2w, c]."""
  n, h, w = z.shape[:3]
  zp = jnp.pad(z, ((0, 0), (1, 1), (1, 1), (0, 0), (0, 0), (0, 0)))
  rows = []
  for py in range(2):
    cols = []
    for px in range(2):
      cols.append(sum(zp[:, ry:ry + h, rx:rx + w, ky, kx] for ry, ky in TAPS[py] for rx, kx in TAPS[px]))
    rows.append(jnp.stack(cols, 3))
  return jnp.stack(rows, 2).reshape(n, 2 * h, 2 * w, z.shape[-1])

def _flat(kernel):
  kh, kw, cin, cout = kernel.shape
  return kernel.transpose(2, 0, 1, 3).reshape(cin, kh * kw * cout)

@jax.custom_vjp
def ct_new(x, kernel):
  return _ct_fwd(x, kernel)[0]
def _ct_fwd(x, kernel):
  n, h, w, cin = x.shape
  z = _matmul(x, _flat(kernel)).reshape(n, h, w, 4, 4, kernel.shape[-1])
  return _assemble(z), (x, kernel)
def _ct_bwd(res, g):
  x, kernel = res
  n, h, w, cin = x.shape
  cout = kernel.shape[-1]
  taps = [[None] * 4 for _ in range(4)]
  for py in range(2):
    for px in range(2):
      gpp = jnp.pad(g[:, py::2, px::2], ((0, 0), (1, 1), (1, 1), (0, 0)))
      for ry, ky in TAPS[py]:
        for rx, kx in TAPS[px]:
          taps[ky][kx] = gpp[:, 2 - ry:2 - ry + h, 2 - rx:2 - rx + w]
  dz = jnp.stack([jnp.stack(r, 3) for r in taps], 3).reshape(n * h * w, 16 * cout)
  dx = (dz @ _flat(kernel).T).reshape(x.shape)
  dk = (x.reshape(-1, cin).T @ dz).reshape(cin, 4, 4, cout).transpose(1, 2, 0, 3)
  return dx, dk.astype(kernel.dtype)
ct_new.defvjp(_ct_fwd, _ct_bwd)

def bench(name, f, x, k, n=10):
  loss = lambda x, k: jnp.sum(f(x, k) ** 2)
  g = jax.jit(jax.value_and_grad(loss, (0, 1)))
  r = g(x, k); jax.block_until_ready(r)
  t = time.perf_counter()
  for _ in range(n): r = g(x, k)
  jax.block_until_ready(r)
  fw = jax.jit(f); jax.block_until_ready(fw(x, k)); t2 = time.perf_counter()
  for _ in range(n): y = fw(x, k)
  jax.block_until_ready(y)
  print(f"{name:10s} fwd+bwd {(t2 - t) / n * 1e3:7.2f} ms   fwd {(time.perf_counter() - t2) / n * 1e3:7.2f} ms")
  return r
for h in (13, 26):
  rs = np.random.RandomState(0)
  x = jnp.asarray(rs.randn(20, h, h, 128), jnp.float32); k = jnp.asarray(rs.randn(4, 4, 128, 128) * 0.05, jnp.float32)
  print("h", h)
  r0 = bench("current", sgan.conv_transpose_4x4, x, k)
  r1 = bench("new", ct_new, x, k)
  ref = lambda x, k: jax.lax.conv_transpose(x, k, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  print("  vs current", [float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a))) for a, b in zip(jax.tree.leaves(r0), jax.tree.leaves(r1))])
  print("  fwd vs ref", float(jnp.max(jnp.abs(ct_new(x, k) - sgan._conv_transpose_4x4(x, k)))))
from medjax.models.layers import lax_matmul_grad_conv
def ct_phaseconv(x, kernel, conv=None):
  n, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  rows = []
  for py in range(2):
    cols = []
    for px in range(2):
      (r0, _), _ = TAPS[py]; (c0, _), _ = TAPS[px]
      k = jnp.stack([jnp.stack([kernel[ky, kx] for _, kx in TAPS[px]]) for _, ky in TAPS[py]])
      xs = xp[:, r0:r0 + h + 1, c0:c0 + w + 1]
      if conv is None:
        cols.append(jax.lax.conv_general_dilated(xs, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")))
      else:
        cols.append(conv(xs, k, (1, 1), ((0, 0), (0, 0))))
    rows.append(jnp.stack(cols, 3))
  return jnp.stack(rows, 2).reshape(n, 2 * h, 2 * w, kernel.shape[-1])
for h in (13, 26):
  rs = np.random.RandomState(0)
  x = jnp.asarray(rs.randn(20, h, h, 128), jnp.float32); k = jnp.asarray(rs.randn(4, 4, 128, 128) * 0.05, jnp.float32)
  print("h", h)
  r0 = bench("current", sgan.conv_transpose_4x4, x, k)
  r1 = bench("phaseconv", ct_phaseconv, x, k)
  print("  vs current", [float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a))) for a, b in zip(jax.tree.leaves(r0), jax.tree.leaves(r1))])
  r1 = bench("phaseconv_mg", lambda x, k: ct_phaseconv(x, k, lax_matmul_grad_conv), x, k)
  print("  vs current", [float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a))) for a, b in zip(jax.tree.leaves(r0), jax.tree.leaves(r1))])
