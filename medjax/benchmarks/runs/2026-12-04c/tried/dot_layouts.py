import time, jax, jax.numpy as jnp, numpy as np
def bench(f,*a,n=10):
  r=f(*a); jax.block_until_ready(r)
  ts=[]
  for _ in range(5):
    t0=time.perf_counter()
    for _ in range(n): r=f(*a)
    jax.block_until_ready(r); ts.append((time.perf_counter()-t0)/n)
  return sorted(ts)[2]*1e3
for P,M,N in [(20480,64,64),(20480,576,64),(5120,128,128),(5120,1152,128)]:
  a=jnp.asarray(np.random.rand(P,M).astype(np.float32)); b=jnp.asarray(np.random.rand(P,N).astype(np.float32))
  at=jnp.asarray(np.asarray(a).T.copy()); bt=jnp.asarray(np.asarray(b).T.copy())
  tn=jax.jit(lambda a,b: a.T@b)
  nn_=jax.jit(lambda at,b: at@b)        # lhs [M,P] row-major, rhs [P,N]
  nt=jax.jit(lambda at,bt: at@bt.T)     # both [.,P]
  def bat(a,b,B=20):
    return jnp.einsum('bpk,bpn->kn', a.reshape(B,-1,a.shape[1]), b.reshape(B,-1,b.shape[1]))
  def bat2(a,b,B=20):
    return jnp.einsum('bpk,bpn->bkn', a.reshape(B,-1,a.shape[1]), b.reshape(B,-1,b.shape[1])).sum(0)
  gfl=2*P*M*N/1e9
  r={k:bench(jax.jit(f),x,y) for k,(f,x,y) in {'TN a.T@b':(tn,a,b),'NN at@b':(nn_,at,b),'NT at@bt.T':(nt,at,bt),'einsum b':(bat,a,b),'batched+sum':(bat2,a,b)}.items()}
  print((P,M,N), ' '.join('%s %.2f ms (%.0f GF/s)'%(k,v,gfl/v*1e3) for k,v in r.items()))
