# Session 12 (issue 24): could an outside BLAS, called from a custom call, beat XLA:CPU's dot?
# Needs the mkl wheel unpacked to /tmp/mklx (pip download mkl==2025.3.1 --no-deps; unzip) and torch.
"""Time one float32 GEMM per shape in XLA, OpenBLAS (numpy), MKL (ctypes cblas_sgemm) and torch."""
import ctypes, os, time, sys
import numpy as np
os.environ.setdefault("MKL_THREADING_LAYER", "GNU")
ctypes.CDLL("libgomp.so.1", mode=ctypes.RTLD_GLOBAL)
mkl = ctypes.CDLL("/tmp/mklx/mkl-2025.3.1.data/data/lib/libmkl_rt.so.2", mode=ctypes.RTLD_GLOBAL)
import jax, jax.numpy as jnp
import torch
torch.set_num_threads(2)
RowMajor, NoTrans, Trans = 101, 111, 112
f = ctypes.c_float
def mkl_gemm(a, b, ta, out):
  # out = op(a) @ b, op = transpose if ta
  k, m = (a.shape if ta else a.shape[::-1])
  n = b.shape[1]
  mkl.cblas_sgemm(RowMajor, Trans if ta else NoTrans, NoTrans, m, n, k, f(1.0),
                  a.ctypes.data_as(ctypes.c_void_p), a.shape[1], b.ctypes.data_as(ctypes.c_void_p), n,
                  f(0.0), out.ctypes.data_as(ctypes.c_void_p), n)
def t(fn, reps=20):
  fn(); fn()
  best = 1e9
  for _ in range(3):
    s = time.perf_counter()
    for _ in range(reps): fn()
    best = min(best, (time.perf_counter() - s) / reps)
  return best * 1e3
shapes = [  # (name, M_or_K rows of a, a cols, b cols, transposed a)
  ("dk stage1 3x3 tap  x.T@g", 20480, 64, 64, True),
  ("dk 1x1 256->64      x.T@g", 20480, 256, 64, True),
  ("dk 1x1 64->256      x.T@g", 20480, 64, 256, True),
  ("fwd 1x1 256->64     x@w", 20480, 256, 64, False),
  ("fwd im2col 576->64  x@w", 20480, 576, 64, False),
  ("fwd 1x1 1024->256 @8px x@w", 1280*1, 1024, 256, False),
  ("dk 1x1 1024->256 @8px x.T@g", 1280, 1024, 256, True),
]
rng = np.random.default_rng(0)
for name, r, c, n, ta in shapes:
  a = rng.standard_normal((r, c), np.float32)
  b = rng.standard_normal((r if ta else c, n), np.float32)
  out = np.empty((c if ta else r, n), np.float32)
  ja, jb = jnp.asarray(a), jnp.asarray(b)
  jf = jax.jit((lambda x, y: x.T @ y) if ta else (lambda x, y: x @ y))
  ta_, tb_ = torch.from_numpy(a), torch.from_numpy(b)
  res = {
    "xla": t(lambda: jf(ja, jb).block_until_ready()),
    "openblas": t(lambda: (a.T @ b) if ta else (a @ b)),
    "mkl": t(lambda: mkl_gemm(a, b, ta, out)),
    "torch": t(lambda: (ta_.T @ tb_) if ta else (ta_ @ tb_)),
  }
  ref = (a.T @ b) if ta else (a @ b)
  mkl_gemm(a, b, ta, out)
  err = float(np.abs(out - ref).max() / np.abs(ref).max())
  gf = 2 * r * c * n / 1e9
  print(f"{name:32s} " + "  ".join(f"{k} {v:6.2f} ms ({gf / v * 1e3:5.0f} GF/s)" for k, v in res.items()) + f"  mkl rel err {err:.1e}", flush=True)
