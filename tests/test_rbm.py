import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.neural_network import BernoulliRBM

from medjax.models.rbm import RBM, init_rbm
from medjax.train import rbm as rbm_lib


def _random_rbm(n_visible=7, n_hidden=5, gaussian=False, seed=0):
  k_w, k_b, k_c = jax.random.split(jax.random.key(seed), 3)
  return RBM(0.5 * jax.random.normal(k_w, (n_visible, n_hidden)),
             0.5 * jax.random.normal(k_b, (n_visible,)),
             0.5 * jax.random.normal(k_c, (n_hidden,)), gaussian=gaussian)


def _sklearn_with(rbm: RBM) -> BernoulliRBM:
  sk = BernoulliRBM(n_components=rbm.n_hidden, random_state=0)
  sk.components_ = np.asarray(rbm.w, np.float64).T
  sk.intercept_visible_ = np.asarray(rbm.b_visible, np.float64)
  sk.intercept_hidden_ = np.asarray(rbm.b_hidden, np.float64)
  sk.n_features_in_ = rbm.n_visible
  return sk


def _all_binary(n):
  return jnp.array(list(itertools.product([0.0, 1.0], repeat=n)))


def _digits():
  return (load_digits().data / 16.0 > 0.5).astype(np.float32)  # 1797 x 64, binarized


def test_bernoulli_formulas_match_sklearn():
  rbm = _random_rbm(12, 9)
  sk = _sklearn_with(rbm)
  rng = np.random.default_rng(0)
  v = (rng.random((30, 12)) < 0.4).astype(np.float32)
  h = (rng.random((30, 9)) < 0.5).astype(np.float32)
  np.testing.assert_allclose(rbm.free_energy(v), sk._free_energy(v.astype(np.float64)),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(rbm.hidden_probs(v), sk.transform(v), rtol=1e-5, atol=1e-6)
  # sklearn's _sample_visibles draws uniform(size) < p(v | h): same draws, our means.
  samples = sk._sample_visibles(h.astype(np.float64), np.random.RandomState(3))
  u = np.random.RandomState(3).uniform(size=v.shape)
  mean = np.asarray(rbm.visible_mean(h), np.float64)
  assert not np.any(np.isclose(u, mean, atol=1e-5))  # no draw decided by rounding
  np.testing.assert_array_equal(samples, u < mean)


def test_stochastic_pseudo_likelihood_matches_sklearn_score_samples():
  rbm = _random_rbm(10, 6, seed=1)
  sk = _sklearn_with(rbm)
  v = (np.random.default_rng(1).random((25, 10)) < 0.5).astype(np.float64)
  units = np.random.RandomState(0).randint(0, 10, 25)  # what score_samples draws (seed 0)
  np.testing.assert_allclose(rbm_lib.pseudo_log_likelihood(rbm, jnp.asarray(v, jnp.float32),
                                                           jnp.asarray(units)),
                             sk.score_samples(v), rtol=1e-4, atol=1e-4)


def _energies(rbm, v, h):
  """E(v_a, h_b) for every pair: [len(v), len(h)]."""
  return rbm.energy(v[:, None, :], h[None, :, :])


def test_exact_pseudo_likelihood_and_free_energy_by_enumeration():
  rbm = _random_rbm(5, 4, seed=2)
  v, h = _all_binary(5), _all_binary(4)
  np.testing.assert_allclose(rbm.free_energy(v), -jax.nn.logsumexp(-_energies(rbm, v, h), 1),
                             rtol=1e-5, atol=1e-5)
  log_p = np.asarray(-rbm.free_energy(v))  # up to log Z, which cancels below
  index = {tuple(row): i for i, row in enumerate(np.asarray(v).tolist())}
  expected = []
  for row in np.asarray(v).tolist():
    total = 0.0
    for i in range(5):
      flipped = list(row)
      flipped[i] = 1 - flipped[i]
      a, b = log_p[index[tuple(row)]], log_p[index[tuple(flipped)]]
      total += a - np.logaddexp(a, b)
    expected.append(total)
  np.testing.assert_allclose(rbm_lib.pseudo_log_likelihood(rbm, v), expected, rtol=1e-4)


def test_bernoulli_conditionals_by_enumeration():
  rbm = _random_rbm(4, 3, seed=3)
  v, h = _all_binary(4), _all_binary(3)
  e = _energies(rbm, v, h)
  np.testing.assert_allclose(jax.nn.softmax(-e, axis=1) @ h, rbm.hidden_probs(v), rtol=1e-5)
  np.testing.assert_allclose(jax.nn.softmax(-e, axis=0).T @ v, rbm.visible_mean(h), rtol=1e-5)


@pytest.mark.slow
def test_gaussian_conditionals_match_closed_form():
  rbm = _random_rbm(6, 4, gaussian=True, seed=4)
  h = _all_binary(4)
  v = jax.random.normal(jax.random.key(5), (3, 6))
  e = _energies(rbm, v, h)
  # p(h | v) from exp(-E(v, h)) enumerated over h; F(v) = -log sum_h exp(-E(v, h)).
  np.testing.assert_allclose(jax.nn.softmax(-e, axis=1) @ h, rbm.hidden_probs(v), rtol=1e-5)
  np.testing.assert_allclose(rbm.free_energy(v), -jax.nn.logsumexp(-e, axis=1),
                             rtol=1e-5, atol=1e-5)
  # p(v | h) = N(b_v + W h, I): -E(., h) is that Gaussian's log-density up to a constant.
  mean = rbm.b_visible + h @ rbm.w.T
  np.testing.assert_allclose(rbm.visible_mean(h), mean, rtol=1e-5, atol=1e-6)
  log_density = -0.5 * jnp.sum((v[:, None, :] - mean[None]) ** 2, axis=-1)  # [3, 16]
  diffs = -e - log_density
  np.testing.assert_allclose(diffs, jnp.broadcast_to(diffs[:1], diffs.shape), rtol=1e-5,
                             atol=1e-4)
  samples = rbm.sample_visible(jax.random.key(6), jnp.repeat(h[6:7], 20000, axis=0))
  np.testing.assert_allclose(samples.mean(0), mean[6], atol=0.05)
  np.testing.assert_allclose(samples.std(0), 1.0, atol=0.03)


def _train(data, *, hidden, epochs, batch_size, lr, seed, persistent=False, momentum=True,
           weight_decay=2e-4):
  rbm = init_rbm(jax.random.key(seed), data.shape[1], hidden, visible_mean=data.mean(0))
  state = rbm_lib.init_train_state(jax.tree.map(jnp.copy, rbm), batch_size)  # donated below
  epoch_fn = jax.jit(functools.partial(rbm_lib.train_epoch, batch_size=batch_size,
                                       persistent=persistent), donate_argnums=0)
  for epoch in range(1, epochs + 1):
    m = (0.5 if epoch <= 5 else 0.9) if momentum else 0.0
    state = epoch_fn(state, data, jax.random.key(100 + seed),
                     rbm_lib.hyperparams(lr, m, weight_decay))
  return rbm, state


@pytest.mark.slow
def test_cd_on_digits_beats_sklearn_pseudo_likelihood():
  x = _digits()
  data = jnp.asarray(x)
  hidden, epochs, batch, lr = 64, 10, 10, 0.06
  ours, theirs, recon = [], [], []
  for seed in range(2):
    init, state = _train(data, hidden=hidden, epochs=epochs, batch_size=batch, lr=lr, seed=seed)
    recon.append((float(jnp.mean(rbm_lib.reconstruction_error(init, data))),
                  float(jnp.mean(rbm_lib.reconstruction_error(state.params, data)))))
    ours.append(float(jnp.mean(rbm_lib.pseudo_log_likelihood(state.params, data))))
    sk = BernoulliRBM(hidden, learning_rate=lr, batch_size=batch, n_iter=epochs,
                      random_state=seed).fit(x)
    sk_rbm = RBM(jnp.asarray(sk.components_.T, jnp.float32),
                 jnp.asarray(sk.intercept_visible_, jnp.float32),
                 jnp.asarray(sk.intercept_hidden_, jnp.float32))
    theirs.append(float(jnp.mean(rbm_lib.pseudo_log_likelihood(sk_rbm, data))))
  for before, after in recon:
    assert after < 0.25 * before, recon
  # Exact pseudo-likelihood (all 64 units), both models scored by the same function.
  assert np.mean(ours) >= np.mean(theirs), (ours, theirs)


def test_pcd_learns_and_keeps_its_chain():
  data = jnp.asarray(_digits())
  init, state = _train(data, hidden=32, epochs=4, batch_size=10, lr=0.06, seed=0,
                       persistent=True)
  assert int(state.step) == 4 * (len(data) // 10)
  assert set(np.unique(np.asarray(state.chain)).tolist()) <= {0.0, 1.0}
  assert np.asarray(state.chain).any()
  before = float(jnp.mean(rbm_lib.pseudo_log_likelihood(init, data)))
  after = float(jnp.mean(rbm_lib.pseudo_log_likelihood(state.params, data)))
  assert after > before + 4, (before, after)  # about -24.4 -> -18.6


def test_cd_k_chain_and_weight_decay():
  # With no data signal (learning rate 0 except weight decay), W decays geometrically.
  rbm = _random_rbm(8, 5, seed=7)
  state = rbm_lib.init_train_state(rbm, 4)
  step = jax.jit(functools.partial(rbm_lib.cd_step, k=3))
  v = jnp.zeros((4, 8))
  hp = rbm_lib.hyperparams(0.1, 0.0, 0.5)
  new = step(state, v, jax.random.key(0), hp)
  # The data and model terms do not cancel in general, so check the decay term alone by
  # differencing two steps that differ only in weight_decay.
  no_decay = step(state, v, jax.random.key(0), rbm_lib.hyperparams(0.1, 0.0, 0.0))
  np.testing.assert_allclose(new.params.w - no_decay.params.w, -0.1 * 0.5 * rbm.w, atol=1e-6)
  np.testing.assert_allclose(new.params.b_visible, no_decay.params.b_visible)
  assert int(new.step) == 1


def test_gaussian_rbm_reduces_reconstruction_error_on_standardized_data():
  x = _digits() + 0.1 * np.random.default_rng(0).normal(size=(1797, 64)).astype(np.float32)
  x = (x - x.mean(0)) / x.std(0)
  data = jnp.asarray(x)
  rbm = init_rbm(jax.random.key(0), 64, 32, gaussian=True)
  state = rbm_lib.init_train_state(jax.tree.map(jnp.copy, rbm), 20)
  epoch_fn = jax.jit(functools.partial(rbm_lib.train_epoch, batch_size=20), donate_argnums=0)
  for epoch in range(5):
    state = epoch_fn(state, data, jax.random.key(epoch), rbm_lib.hyperparams(0.01, 0.9, 2e-4))
  before = float(jnp.mean(rbm_lib.reconstruction_error(rbm, data)))
  after = float(jnp.mean(rbm_lib.reconstruction_error(state.params, data)))
  assert after < 0.6 * before, (before, after)  # about 1.0 -> 0.46
  m = rbm_lib.monitor(state.params, data[:200], data[200:400])
  assert np.isfinite([float(v) for v in m.values()]).all()
  with pytest.raises(ValueError, match="binary visible"):
    rbm_lib.pseudo_log_likelihood(state.params, data[:5])
