import functools, jax, jax.numpy as jnp, numpy as np, optax
from medjax.models import create_model, layers
from medjax.train import supervised
from medjax.train.state import create_train_state
def run(size, name):
  model = create_model(name, num_classes=2)
  tx = optax.adam(1e-3)
  state = create_train_state(model, tx, jax.random.key(0), (size, size, 1))
  step = jax.jit(functools.partial(supervised.train_step, model=model, tx=tx, augment=None))
  rng = np.random.RandomState(0)
  for i in range(2):
    batch = {"image": jnp.asarray(rng.randint(0, 255, (20, size, size, 1)), jnp.uint8), "label": jnp.asarray(rng.randint(0, 2, 20), jnp.int32)}
    state, m = step(state, batch, jax.random.key(1))
  return jax.device_get((state.params, state.batch_stats, m))
for name, size in (("resnet", 50), ("cnn", 50)):
  new = run(size, name)
  new_mm = layers._matmul
  layers._matmul = lambda x, w: x @ w
  old = run(size, name)
  layers._matmul = new_mm
  diffs = [float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(old))]
  print(name, size, "max abs diff", max(diffs), "identical leaves", sum(d == 0 for d in diffs), "/", len(diffs))
