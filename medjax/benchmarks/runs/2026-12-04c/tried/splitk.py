import time, jax, jax.numpy as jnp, numpy as np
def bench(f,*a,n=20):
  r=f(*a); jax.block_until_ready(r)
  ts=[]
  for _ in range(5):
    t0=time.perf_counter()
    for _ in range(n): r=f(*a)
    jax.block_until_ready(r); ts.append((time.perf_counter()-t0)/n)
  return sorted(ts)[2]*1e3
P,M,N=20480,64,64
a=jnp.asarray(np.random.rand(P,M).astype(np.float32)); b=jnp.asarray(np.random.rand(P,N).astype(np.float32))
print('TN plain %.2f'%bench(jax.jit(lambda a,b: a.T@b),a,b))
for B in (2,4,8,20):
  f=jax.jit(lambda a,b: jnp.einsum('bpk,bpn->bkn', a.reshape(B,-1,M), b.reshape(B,-1,N)).sum(0))
  f2=jax.jit(lambda a,b: sum(a[i*(P//B):(i+1)*(P//B)].T@b[i*(P//B):(i+1)*(P//B)] for i in range(B)))
  print(B,'batched %.2f  separate dots %.2f'%(bench(f,a,b),bench(f2,a,b)))
import torch; torch.set_num_threads(2)
ta=torch.from_numpy(np.asarray(a)); tb_=torch.from_numpy(np.asarray(b))
def tb(f,n=20):
  f(); ts=[]
  for _ in range(5):
    t0=time.perf_counter()
    for _ in range(n): f()
    ts.append((time.perf_counter()-t0)/n)
  return sorted(ts)[2]*1e3
print('torch TN %.2f'%tb(lambda: ta.T@tb_))
