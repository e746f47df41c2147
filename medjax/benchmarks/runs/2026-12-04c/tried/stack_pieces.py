import time, jax, jax.numpy as jnp, numpy as np
def bench(f,*a,n=10):
  r=f(*a); jax.block_until_ready(r)
  ts=[]
  for _ in range(5):
    t0=time.perf_counter()
    for _ in range(n): r=f(*a)
    jax.block_until_ready(r); ts.append((time.perf_counter()-t0)/n)
  return sorted(ts)[2]*1e3
Hin,C=32,64; H=32
x=jnp.asarray(np.random.rand(20,Hin+2,Hin+2,C).astype(np.float32)); g=jnp.asarray(np.random.rand(20*H*H,C).astype(np.float32))
taps=[(dy,dx) for dy in range(3) for dx in range(3)]
tr=jax.jit(lambda x: jnp.transpose(x,(3,0,1,2)))
xT=tr(x)
st=jax.jit(lambda xT: jnp.stack([xT[:, :, dy:dy+H, dx:dx+H].reshape(C,-1) for dy,dx in taps]).reshape(9*C,-1))
colsT=st(xT)
mm=jax.jit(lambda c,g: c@g)
print('transpose %.2f stack %.2f matmul %.2f'%(bench(tr,x),bench(st,xT),bench(mm,colsT,g)))
full=jax.jit(lambda x,g: mm(st(tr(x)),g))
print('all-in-one jit %.2f'%bench(jax.jit(lambda x,g: jnp.stack([jnp.transpose(x,(3,0,1,2))[:, :, dy:dy+H, dx:dx+H].reshape(C,-1) for dy,dx in taps]).reshape(9*C,-1)@g),x,g))
