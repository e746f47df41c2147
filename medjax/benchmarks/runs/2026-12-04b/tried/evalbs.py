import sys, time, jax, jax.numpy as jnp, numpy as np
from medjax.models import create_model
name = sys.argv[1]; N = 518
m = create_model(name, num_classes=2)
x = np.random.randint(0, 255, (N, 50, 50, 1), np.uint8)
v = m.init(jax.random.key(0), jnp.zeros((1, 50, 50, 1)))
f = jax.jit(lambda v, im: jax.nn.softmax(m.apply(v, im.astype(jnp.float32) / 255.0, train=False)))
for bs in [int(b) for b in sys.argv[2].split(",")]:
  bs = -(-N // -(-N // bs))
  def run():
    out = []
    for i in range(0, N, bs):
      im = x[i:i + bs]
      if len(im) < bs: im = np.concatenate([im, np.zeros((bs - len(im), 50, 50, 1), np.uint8)])
      out.append(np.asarray(f(v, im)))
    return out
  run(); run(); ts = []
  for _ in range(7):
    t = time.perf_counter(); run(); ts.append(time.perf_counter() - t)
  print(name, bs, "median %.1f ms min %.1f" % (np.median(ts) * 1e3, min(ts) * 1e3), flush=True)
