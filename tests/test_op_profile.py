"""medjax.benchmarks.op_profile: the compiled HLO's FLOPs agree with the jaxpr count, and a
traced step is split into forward, backward and update by what its ops compute."""

import functools

import jax
import jax.numpy as jnp
import optax
import pytest

from medjax.benchmarks import op_profile
from medjax.benchmarks.flops import count_flops
from medjax.models import create_model
from medjax.train import supervised
from medjax.train.state import create_train_state


def test_the_hlo_flops_of_a_step_match_the_jaxpr_count():
  model = create_model("resnet", size="tiny", num_classes=2)
  tx = optax.adam(1e-4)
  state = create_train_state(model, tx, jax.random.key(0), (32, 32, 1))
  step = functools.partial(supervised.train_step, model=model, tx=tx, augment=None)
  batch = {"image": jnp.zeros((4, 32, 32, 1), jnp.uint8), "label": jnp.zeros((4,), jnp.int32)}
  ops = op_profile.parse_hlo(jax.jit(step).lower(state, batch, jax.random.key(1)).compile()
                             .as_text())
  thunks = [n for n, o in ops.items() if n != "_computations" and o["computation"] in
            [c for c in ops["_computations"] if c.startswith("main")]]
  classified = [op_profile.classify(n, ops) for n in thunks]
  total = sum(c["flops"] for c in classified)
  assert total == pytest.approx(count_flops(step, state, batch, jax.random.key(1)), rel=0.02)
  by_phase = {p: sum(c["flops"] for c in classified if c["phase"] == p)
              for p in op_profile.PHASES}
  # the backward pass computes an input and a kernel gradient per layer: about twice forward
  assert 1.5 < by_phase["backward"] / by_phase["forward"] < 2.5
  assert {c["category"] for c in classified if c["flops"]} <= {"conv", "matmul"}


@pytest.mark.slow  # traces steps with the profiler
def test_a_traced_step_is_summed_by_phase_and_category():
  case = op_profile.profile_case("cnn", 50, batch_size=8, steps=2)
  assert case["thread_ms_per_step"] > 0 and case["gflop_per_step"] > 0
  phases = {r["phase"] for r in case["rows"]}
  assert {"forward", "backward", "update"} <= phases
  assert sum(r["share"] for r in case["rows"]) == pytest.approx(1.0)
  assert sum(r["gflop_per_step"] for r in case["rows"]) == pytest.approx(case["gflop_per_step"])
  assert "| forward |" in op_profile.report(case, ceiling=100.0)
