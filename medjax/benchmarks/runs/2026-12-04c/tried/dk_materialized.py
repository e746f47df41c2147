import sys, tempfile, time, jax, jax.numpy as jnp, numpy as np
sys.path.insert(0,'/work/main')
from medjax.benchmarks import op_profile as op
taps=[(dy,dx) for dy in range(3) for dx in range(3)]
Hin,C,Co=32,64,64; H=Hin; N=20
x=jnp.asarray(np.random.rand(N,Hin+2,Hin+2,C).astype(np.float32)); g=jnp.asarray(np.random.rand(N*H*H,Co).astype(np.float32))
Wp=H+2; L=N*(H+2)*Wp - (2*Wp+2)
ref=jax.jit(lambda x,g: jnp.stack([x[:, dy:dy+H, dx:dx+H,:].reshape(-1,C).T@g for dy,dx in taps]))(x,g)
def mat(a, ref): return a / (1.0 + 0.0 * ref)
def v1(x,g):  # xT materialized once, plain slices, NN
  xT=mat(jnp.transpose(x,(3,0,1,2)).reshape(C,-1), x[0,0,0,0])
  gp=jnp.pad(g.reshape(N,H,H,Co),((0,0),(0,2),(0,2),(0,0))).reshape(-1,Co)[:L]
  return jnp.stack([xT[:, dy*Wp+dx: dy*Wp+dx+L]@gp for dy,dx in taps])
def v2(x,g):  # gT materialized once, x row-range slices (no transpose of x), NN: gT[Co,L] @ x[L,C]
  xf=x.reshape(-1,C)
  gpT=mat(jnp.pad(g.reshape(N,H,H,Co),((0,0),(0,2),(0,2),(0,0))).reshape(-1,Co)[:L].T, x[0,0,0,0])
  return jnp.stack([(gpT@xf[dy*Wp+dx: dy*Wp+dx+L]).T for dy,dx in taps])
def v3(x,g):  # gT once, plain NHWC tap slices: gT[Co,P] @ xs[P,C]
  gT=mat(g.T, x[0,0,0,0])
  return jnp.stack([(gT@x[:, dy:dy+H, dx:dx+H,:].reshape(-1,C)).T for dy,dx in taps])
def bench(f,*a,n=10):
  r=f(*a); jax.block_until_ready(r)
  ts=[]
  for _ in range(5):
    t0=time.perf_counter()
    for _ in range(n): r=f(*a)
    jax.block_until_ready(r); ts.append((time.perf_counter()-t0)/n)
  return sorted(ts)[2]*1e3
for name,f in [('v1',v1),('v2',v2),('v3',v3)]:
  c=jax.jit(f).lower(x,g).compile()
  assert np.allclose(c(x,g),ref,rtol=1e-4,atol=1e-2)
  print(name,'%.2f ms'%bench(c,x,g))
  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d):
      for _ in range(5): c(x,g).block_until_ready()
    sec=op.thunk_seconds(d)
  for k,v in sorted(sec.items(), key=lambda kv:-kv[1])[:4]: print('   %.2f'%(v/5*1e3), k)
