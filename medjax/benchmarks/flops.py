"""Model FLOPs counted from a function's jaxpr (convolutions and matmuls).

Counting from the jaxpr is backend-independent: `cost_analysis()` of a GPU executable does not
count cuDNN convolutions. Elementwise ops, reductions and the optimizer are ignored (they are a
few percent of a CNN's FLOPs); a multiply-add counts as 2 FLOPs.
"""

from __future__ import annotations

import math

import jax
from jax.extend import core as jcore


def _conv_flops(eqn) -> int:
  lhs, rhs = (v.aval for v in eqn.invars[:2])
  out = eqn.outvars[0].aval
  dn = eqn.params["dimension_numbers"]
  # rhs_spec = (out feature dim, in feature dim, *spatial dims)
  kernel_in = rhs.shape[dn.rhs_spec[1]]
  kernel_spatial = math.prod(rhs.shape[d] for d in dn.rhs_spec[2:])
  return 2 * math.prod(out.shape) * kernel_in * kernel_spatial


def _dot_flops(eqn) -> int:
  lhs, rhs = (v.aval for v in eqn.invars[:2])
  (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
  contract = math.prod(lhs.shape[d] for d in lc)
  return 2 * math.prod(eqn.outvars[0].aval.shape) * contract


def _sub_jaxprs(eqn):
  for name, param in eqn.params.items():
    if isinstance(param, jcore.ClosedJaxpr):
      yield name, param.jaxpr
    elif isinstance(param, jcore.Jaxpr):
      yield name, param
    elif isinstance(param, (tuple, list)):
      for p in param:
        if isinstance(p, jcore.ClosedJaxpr):
          yield name, p.jaxpr
        elif isinstance(p, jcore.Jaxpr):
          yield name, p


def jaxpr_flops(jaxpr) -> int:
  total = 0
  for eqn in jaxpr.eqns:
    prim = eqn.primitive.name
    if prim == "conv_general_dilated":
      total += _conv_flops(eqn)
    elif prim == "dot_general":
      total += _dot_flops(eqn)
    elif prim == "cond":
      total += max(jaxpr_flops(b.jaxpr) for b in eqn.params["branches"])
    elif prim == "scan":
      total += eqn.params["length"] * jaxpr_flops(eqn.params["jaxpr"].jaxpr)
    elif prim == "while":
      total += jaxpr_flops(eqn.params["body_jaxpr"].jaxpr)  # one iteration: trip count unknown
    else:
      total += sum(jaxpr_flops(sub) for _, sub in _sub_jaxprs(eqn))
  return total


def count_flops(fn, *args, **kwargs) -> int:
  """FLOPs of one call of `fn(*args, **kwargs)` (convolutions and matmuls)."""
  return jaxpr_flops(jax.make_jaxpr(fn)(*args, **kwargs).jaxpr)
