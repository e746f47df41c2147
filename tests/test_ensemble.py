import functools

import jax
import numpy as np
import pytest
import optax

from medjax.models import CNNTiny
from medjax.train import ensemble, supervised
from medjax.data import epoch_indices
from medjax.train.state import create_train_state


@pytest.mark.slow
def test_vmapped_seeds_train_like_separate_runs():
  model, tx = CNNTiny(), optax.adam(1e-3)
  seeds = [0, 3]
  data = np.random.default_rng(0)
  images = data.integers(0, 256, (60, 40, 40, 1)).astype(np.uint8)
  labels = data.integers(0, 2, 60).astype(np.int32)
  step = functools.partial(supervised.train_step, model=model, tx=tx,
                           augment={"dihedral": True, "max_shift": 1})

  many = ensemble.create_train_states(model, tx, seeds, (40, 40, 1))
  many_step = jax.jit(ensemble.stacked_step(step))
  rngs = ensemble.step_rngs(seeds)
  for epoch in (1, 2):
    orders = np.stack([epoch_indices(60, 20, seed=s, epoch=epoch) for s in seeds], axis=1)
    for idx in orders:  # idx: [n_models, batch]
      many, _ = many_step(many, ensemble.gather_batches(images, labels, idx), rngs)

  one_step = jax.jit(step)
  for i, seed in enumerate(seeds):
    init_rng, rng = jax.random.split(jax.random.key(seed))
    state = create_train_state(model, tx, init_rng, (40, 40, 1))
    for epoch in (1, 2):
      for idx in epoch_indices(60, 20, seed=seed, epoch=epoch):
        state, _ = one_step(state, {"image": images[idx], "label": labels[idx]}, rng)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5),
                 ensemble.unstack(many.params, i), state.params)
  # The seeds really differ.
  a, b = (jax.tree.leaves(ensemble.unstack(many.params, i))[0] for i in (0, 1))
  assert not np.allclose(a, b)
