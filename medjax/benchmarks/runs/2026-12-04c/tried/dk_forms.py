import time, jax, jax.numpy as jnp, numpy as np
def bench(f,*a,n=10):
  r=f(*a); jax.block_until_ready(r)
  ts=[]
  for _ in range(5):
    t0=time.perf_counter()
    for _ in range(n): r=f(*a)
    jax.block_until_ready(r); ts.append((time.perf_counter()-t0)/n)
  return sorted(ts)[2]*1e3
def win(x, H, s, dy, dx):
  return x[:, dy:dy+(H-1)*s+1:s, dx:dx+(H-1)*s+1:s, :]
for (Hin,C,Co,s) in [(32,64,64,1),(16,128,128,1),(32,128,128,2),(8,256,256,1),(16,256,256,2),(13,64,64,1),(7,128,128,1),(13,128,128,2)]:
  H=(Hin-1)//s+1
  x=jnp.asarray(np.random.rand(20,Hin+2,Hin+2,C).astype(np.float32)); g=jnp.asarray(np.random.rand(20*H*H,Co).astype(np.float32))
  taps=[(dy,dx) for dy in range(3) for dx in range(3)]
  a=jax.jit(lambda x,g: jnp.stack([win(x,H,s,dy,dx).reshape(-1,C).T@g for dy,dx in taps]))
  def b1(x,g):
    xT=jnp.transpose(x,(3,0,1,2))[...,None]  # [C,N,Hp,Wp,1]
    colsT=jnp.stack([jnp.transpose(win(jnp.transpose(x,(3,0,1,2)).reshape(C,20,Hin+2,Hin+2,1)[:, :, :, :, 0][..., None], H, s, dy, dx)[...,0].reshape(C,-1)) for dy,dx in taps]) if False else \
      jnp.stack([jnp.transpose(x,(3,0,1,2))[:, :, dy:dy+(H-1)*s+1:s, dx:dx+(H-1)*s+1:s].reshape(C,-1) for dy,dx in taps])
    return (colsT.reshape(9*C,-1)@g).reshape(9,C,Co)
  b1=jax.jit(b1)
  def b3(x,g):
    gT=g.T
    return jnp.stack([(gT@win(x,H,s,dy,dx).reshape(-1,C)).T for dy,dx in taps])
  b3=jax.jit(b3)
  def b4(x,g):  # one matmul: gT [Co,P] @ cols [P,9C]
    cols=jnp.concatenate([win(x,H,s,dy,dx) for dy,dx in taps],-1).reshape(-1,9*C)
    return (g.T@cols).T.reshape(9,C,Co)
  b4=jax.jit(b4)
  ra=a(x,g)
  for f in (b1,b3,b4): assert np.allclose(f(x,g),ra,rtol=1e-4,atol=1e-2), f
  print((Hin,C,Co,s),'taps TN %.2f | colsT NN %.2f | gT@x taps %.2f | gT@cols %.2f'%(bench(a,x,g),bench(b1,x,g),bench(b3,x,g),bench(b4,x,g)))
