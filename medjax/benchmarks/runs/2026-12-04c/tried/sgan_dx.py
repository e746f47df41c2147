import sys, time, jax, jax.numpy as jnp, numpy as np, torch
sys.path.insert(0,'/work/main')
from medjax.models import sgan
torch.set_num_threads(2)
TAPS = sgan._PHASE_TAPS
NHWC = ("NHWC", "HWIO", "NHWC")
def bench(f,*a,n=10):
  r=f(*a); jax.block_until_ready(r)
  ts=[]
  for _ in range(5):
    t0=time.perf_counter()
    for _ in range(n): r=f(*a)
    jax.block_until_ready(r); ts.append((time.perf_counter()-t0)/n)
  return sorted(ts)[2]*1e3
def dx_current(g, kernel):
  return jax.lax.conv_general_dilated(g, kernel[::-1, ::-1].transpose(0, 1, 3, 2), (2, 2), ((1, 1), (1, 1)), dimension_numbers=NHWC)
def dx_taps(g, kernel, im2col=False):
  # y[2m+py] gets x[m + r - 1] k[ky] for (r, ky) in TAPS[py]  =>  dx[j] += g_py[j + 1 - r] k[ky]^T
  n, H, W, c = g.shape; h, w = H // 2, W // 2
  out = 0
  for py in range(2):
    for px in range(2):
      gp = jnp.pad(g[:, py::2, px::2], ((0, 0), (1, 1), (1, 1), (0, 0)))  # index j+1-r+1 = j + 2 - r
      sl, ks = [], []
      for ry, ky in TAPS[py]:
        for rx, kx in TAPS[px]:
          sl.append(gp[:, 2 - ry:2 - ry + h, 2 - rx:2 - rx + w]); ks.append(kernel[ky, kx].T)
      if im2col:
        out = out + (jnp.concatenate(sl, -1).reshape(-1, 4 * c) @ jnp.concatenate(ks, 0)).reshape(n, h, w, -1)
      else:
        for s_, k_ in zip(sl, ks):
          out = out + (s_.reshape(-1, c) @ k_).reshape(n, h, w, -1)
  return out
h=26
rs=np.random.RandomState(0)
g=jnp.asarray(rs.randn(20,2*h,2*h,128),jnp.float32); k=jnp.asarray(rs.randn(4,4,128,128)*0.05,jnp.float32)
r0=jax.jit(dx_current)(g,k)
for name,f in [('current',dx_current),('taps',dx_taps),('im2col',lambda g,k: dx_taps(g,k,True))]:
  f=jax.jit(f); r=f(g,k)
  print(name,'%.2f ms'%bench(f,g,k),'maxdiff %.1e'%float(jnp.max(jnp.abs(r-r0))))
# torch: input grad of conv_transpose2d(x, w, stride 2, padding 1) == conv2d(g, w, stride 2, padding 1)
tg=torch.from_numpy(np.asarray(g).transpose(0,3,1,2).copy()); tw=torch.from_numpy(np.asarray(k).transpose(2,3,0,1).copy())  # [cin, cout, kh, kw] for conv_transpose
def tb(f,n=10):
  f(); ts=[]
  for _ in range(5):
    t0=time.perf_counter()
    for _ in range(n): f()
    ts.append((time.perf_counter()-t0)/n)
  return sorted(ts)[2]*1e3
with torch.no_grad():
  print('torch conv2d(g) %.2f ms'%tb(lambda: torch.nn.functional.conv2d(tg, tw, stride=2, padding=1)))
