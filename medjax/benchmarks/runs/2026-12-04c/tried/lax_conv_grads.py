import time, jax, jax.numpy as jnp, numpy as np
def bench(f,*a,n=10):
  r=f(*a); jax.block_until_ready(r)
  ts=[]
  for _ in range(5):
    t0=time.perf_counter()
    for _ in range(n): r=f(*a)
    jax.block_until_ready(r); ts.append((time.perf_counter()-t0)/n)
  return sorted(ts)[2]*1e3
for (Hin,C,s) in [(32,64,1),(16,128,1),(32,128,2),(8,256,1),(16,256,2),(13,64,1),(7,128,1)]:
  H=(Hin-1)//s+1
  x=jnp.asarray(np.random.rand(20,Hin,Hin,C).astype(np.float32)); w=jnp.asarray(np.random.rand(3,3,C,C).astype(np.float32))
  g=jnp.asarray(np.random.rand(20,H,H,C).astype(np.float32))
  conv=lambda x,w: jax.lax.conv_general_dilated(x,w,(s,s),((1,1),(1,1)),dimension_numbers=('NHWC','HWIO','NHWC'))
  dw=jax.jit(lambda x,g: jax.vjp(lambda w: conv(x,w), w)[1](g)[0])
  dx=jax.jit(lambda w,g: jax.vjp(lambda x: conv(x,w), x)[1](g)[0])
  fw=jax.jit(conv)
  # explicit conv for dW: contract N,H,W: lhs x as [C(batch),H,W,N(feature)] ... use dimension numbers
  print((Hin,C,s),'fwd %.2f  dx %.2f  dW(xla) %.2f'%(bench(fw,x,w),bench(dx,w,g),bench(dw,x,g)))
