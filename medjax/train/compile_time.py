"""How much of a process's wall time went into compiling: JAX's own compile events, summed.

    compile_time.begin_run()         # listens (once per process) and starts a run's count
    before = compile_time.total()
    ...                              # anything that may trace, lower or compile a jitted function
    spent = compile_time.total() - before
    compile_time.summary()           # results.json's "compile_time": since begin_run()

JAX reports, per jitted function, the seconds it spent tracing the Python function to a jaxpr,
lowering the jaxpr to StableHLO, and compiling it with XLA or loading the executable from the
persistent compilation cache (`jax.monitoring` events `/jax/core/compile/*_duration`, each with
the function's name), and counts the persistent cache's hits and misses. The listener sums them
for the whole process; `medjax.train.epoch_time` uses the running total to book compilation
inside an epoch (the first step, the first validation) as "compile" instead of as steps or
validation.
"""

from __future__ import annotations

import threading
from typing import Any

from jax import monitoring

STAGES = {
    "/jax/core/compile/jaxpr_trace_duration": "trace",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
    "/jax/core/compile/backend_compile_duration": "xla",  # XLA compile, or a cache load
}
CACHE_EVENTS = {
    "/jax/compilation_cache/cache_hits": "hits",
    "/jax/compilation_cache/cache_misses": "misses",
}
SAVED_EVENT = "/jax/compilation_cache/compile_time_saved_sec"


class _Totals:
  def __init__(self):
    self.lock = threading.Lock()
    self.stages = dict.fromkeys(STAGES.values(), 0.0)
    self.by_function: dict[str, float] = {}
    self.compilations = 0  # XLA compiles or cache loads
    self.cache = dict.fromkeys(CACHE_EVENTS.values(), 0)
    self.saved = 0.0

  def on_duration(self, event: str, seconds: float, **kwargs) -> None:
    if event == SAVED_EVENT:
      with self.lock:
        self.saved += seconds
      return
    stage = STAGES.get(event)
    if stage is None:
      return
    name = str(kwargs.get("fun_name") or "?")
    if name.startswith("jit(") and name.endswith(")"):  # XLA's name of what was traced as name
      name = name[4:-1]
    with self.lock:
      self.stages[stage] += seconds
      self.by_function[name] = self.by_function.get(name, 0.0) + seconds
      if stage == "xla":
        self.compilations += 1

  def on_event(self, event: str, **kwargs) -> None:
    key = CACHE_EVENTS.get(event)
    if key is not None:
      with self.lock:
        self.cache[key] += 1

  def snapshot(self) -> dict[str, Any]:
    with self.lock:
      return {"stages": dict(self.stages),
              "by_function": dict(self.by_function), "compilations": self.compilations,
              "cache": dict(self.cache), "saved": self.saved}


_TOTALS: _Totals | None = None
_BASELINE: dict[str, Any] | None = None


def listen() -> None:
  """Starts summing the process's compile events (idempotent)."""
  global _TOTALS
  if _TOTALS is None:
    _TOTALS = _Totals()
    monitoring.register_event_duration_secs_listener(_TOTALS.on_duration)
    monitoring.register_event_listener(_TOTALS.on_event)


def begin_run() -> None:
  """Listens, and makes `summary()` count from now: the runner calls it as each run starts, so
  that a process running several runs (the grid) gives each its own compilation."""
  global _BASELINE
  listen()
  _BASELINE = _TOTALS.snapshot()


def total() -> float:
  """Seconds spent tracing, lowering and compiling (or loading compiled code) since `listen()`;
  0.0 before it."""
  return sum(_TOTALS.stages.values()) if _TOTALS is not None else 0.0


def summary(top: int = 5) -> dict[str, Any] | None:
  """The compilation since `begin_run()` (or since `listen()`), as results.json keeps it (None
  when not listening): {"seconds", "stages": {trace, lower, xla}, "compilations" (XLA compiles
  and cache loads), "persistent_cache": {"hits", "misses", "saved_seconds"}, "slowest": [[name, seconds],
  ...]}."""
  if _TOTALS is None:
    return None
  now = _TOTALS.snapshot()
  base = _BASELINE or {"stages": {}, "by_function": {}, "compilations": 0,
                       "cache": {}, "saved": 0.0}
  by_function = {name: s - base["by_function"].get(name, 0.0)
                 for name, s in now["by_function"].items()}
  by_function = {name: s for name, s in by_function.items() if s > 0}
  slowest = sorted(by_function.items(), key=lambda kv: -kv[1])[:top]
  cache = {k: v - base["cache"].get(k, 0) for k, v in now["cache"].items()}
  stages = {k: v - base["stages"].get(k, 0.0) for k, v in now["stages"].items()}
  return {"seconds": round(sum(stages.values()), 3),
          "stages": {k: round(v, 3) for k, v in stages.items()},
          "compilations": now["compilations"] - base["compilations"],
          "persistent_cache": {**cache, "saved_seconds": round(now["saved"] - base["saved"], 3)},
          "slowest": [[name, round(s, 3)] for name, s in slowest]}


def describe(s: dict[str, Any]) -> str:
  """'compilation in this run 41.2s (12 compilations, 10 loaded from the persistent cache);
  slowest: ...'."""
  cache = s["persistent_cache"]
  loaded = (f", {cache['hits']} loaded from the persistent cache"
            if cache["hits"] else ", none from the persistent cache")
  slowest = ", ".join(f"{name} {sec:.1f}" for name, sec in s["slowest"][:3])
  return (f"compilation in this run {s['seconds']:.1f}s ({s['compilations']} "
          f"compilations{loaded})"
          + (f"; slowest: {slowest}" if slowest else ""))
