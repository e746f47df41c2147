import time, jax, jax.numpy as jnp, numpy as np, torch
torch.set_num_threads(2)
def bench(f,*a,n=10):
  r=f(*a); jax.block_until_ready(r)
  ts=[]
  for _ in range(5):
    t0=time.perf_counter()
    for _ in range(n): r=f(*a)
    jax.block_until_ready(r); ts.append((time.perf_counter()-t0)/n)
  return sorted(ts)[2]*1e3
for (H,C) in [(32,64),(16,128),(8,256),(4,512)]:
  xp=np.random.rand(20,H+2,H+2,C).astype(np.float32); gn=np.random.rand(20,H,H,C).astype(np.float32)
  x=jnp.asarray(xp); g=jnp.asarray(gn.reshape(-1,C))
  taps=jax.jit(lambda x,g: jnp.stack([x[:,dy:dy+H,dx:dx+H,:].reshape(-1,C).T@g for dy in range(3) for dx in range(3)]))
  im2col=jax.jit(lambda x,g: jnp.concatenate([x[:,dy:dy+H,dx:dx+H,:] for dy in range(3) for dx in range(3)],-1).reshape(-1,9*C).T@g)
  im2colT=jax.jit(lambda x,g: g.T@jnp.concatenate([x[:,dy:dy+H,dx:dx+H,:] for dy in range(3) for dx in range(3)],-1).reshape(-1,9*C))
  # lax conv: treat batch*spatial as the contraction: lhs = x (C as batch dim), rhs = g
  def laxdk(x,g):
    return jax.lax.conv_general_dilated(x, g.reshape(20,H,H,C), (1,1), 'VALID', dimension_numbers=('CHWN','IHWO','HWNC') )
  # torch
  xt=torch.from_numpy(xp[:,1:-1,1:-1,:].copy()).permute(0,3,1,2).contiguous(); gt=torch.from_numpy(gn).permute(0,3,1,2).contiguous()
  xtl=xt.contiguous(memory_format=torch.channels_last); gtl=gt.contiguous(memory_format=torch.channels_last)
  def tb(f,n=10):
    f(); ts=[]
    for _ in range(5):
      t0=time.perf_counter()
      for _ in range(n): f()
      ts.append((time.perf_counter()-t0)/n)
    return sorted(ts)[2]*1e3
  w=torch.zeros(C,C,3,3)
  tw=lambda: torch.ops.aten.convolution_backward(gt, xt, w, None, (1,1), (1,1), (1,1), False, (0,0), 1, (False, False, True))
  twl=lambda: torch.ops.aten.convolution_backward(gtl, xtl, w, None, (1,1), (1,1), (1,1), False, (0,0), 1, (False, False, True))
  print((H,C),'taps %.2f im2col %.2f im2colT %.2f | torch dW nchw %.2f nhwc %.2f'%(bench(taps,x,g),bench(im2col,x,g),bench(im2colT,x,g),tb(tw),tb(twl)))
