"""Where an epoch's wall time goes: in the training steps, or around them.

The driver splits the run's wall time into windows, one per epoch, each ending when that epoch's
metrics line is written. A window holds the epoch's steps, the checks between chunks of steps,
the validation pass, and what the previous epoch did after its metrics line (checkpoint save,
the trainer's end-of-epoch work such as the SGAN's sample grids, the log line). So every second
of `fit` is counted once, and the last epoch's tail is added to the run's total at the end.

"steps" is the time spent inside the epoch source's iterator: dispatching the jitted steps,
feeding their batches (host gathers and copies of `HostEpochs`/`TFDataEpochs`) and waiting for
their metrics. Everything else is overhead, by part:

    compile      tracing and compiling jitted functions (or loading them from the persistent
                 cache) while the epoch ran: a process's first steps and first validation
                 (`medjax.train.compile_time`), taken out of the part it happened in
    checks       NaN/Inf checks of metrics and weights, progress bar, between chunks
    bn_stats     re-estimating BatchNorm statistics before validation (`bn_stats_batches`,
                 `medjax.train.bn_stats`): forward passes, part of the method, not waste
    validation   the validation pass and its metrics
    metrics      metrics.jsonl and TensorBoard writes
    checkpoint   checkpoint saves (orbax writes in the background; this is the blocking part,
                 including waiting for the previous save) and the final wait
    epoch_end    the trainer's end-of-epoch work (the SGAN's sample grids)
    log          the epoch log line
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterator

from medjax.train import compile_time

PARTS = ("compile", "checks", "bn_stats", "validation", "metrics", "checkpoint", "epoch_end", "log")


class EpochClock:
  """Accumulates seconds by part for the open window; `close()` returns and resets them."""

  def __init__(self):
    compile_time.listen()
    self._seconds = dict.fromkeys(("steps", *PARTS), 0.0)
    self._opened = time.perf_counter()

  def add(self, part: str, seconds: float, compiled: float = 0.0) -> None:
    """Books `seconds` to `part`, of which `compiled` (compilation inside it) to "compile"."""
    compiled = min(max(compiled, 0.0), seconds)
    self._seconds[part] += seconds - compiled
    self._seconds["compile"] += compiled

  @contextlib.contextmanager
  def timed(self, part: str) -> Iterator[None]:
    """Times the block as `part`, its compilation as "compile"."""
    start, compiled = time.perf_counter(), compile_time.total()
    try:
      yield
    finally:
      self.add(part, time.perf_counter() - start, compile_time.total() - compiled)

  def close(self) -> dict[str, Any]:
    """The window since the last close: {"step_seconds", "overhead_seconds",
    "overhead_fraction", "overhead": {part: seconds}}. Time not in any part (the loop's own
    bookkeeping) counts as overhead under "other"."""
    now = time.perf_counter()
    wall = now - self._opened
    steps = self._seconds["steps"]
    parts = {p: self._seconds[p] for p in PARTS}
    parts["other"] = max(0.0, wall - steps - sum(parts.values()))
    self._seconds = dict.fromkeys(self._seconds, 0.0)
    self._opened = now
    return window(steps, parts)


def window(step_seconds: float, parts: dict[str, float]) -> dict[str, Any]:
  """A window (or a run's total) as recorded in metrics.jsonl and results.json."""
  overhead = sum(parts.values())
  wall = step_seconds + overhead
  return {"step_seconds": round(step_seconds, 4), "overhead_seconds": round(overhead, 4),
          "overhead_fraction": round(overhead / wall, 5) if wall > 0 else None,
          "overhead": {p: round(s, 4) for p, s in parts.items()}}


def accumulate(total: dict[str, Any] | None, w: dict[str, Any]) -> dict[str, Any]:
  """Adds window `w` to a run's running total (both in the `window` layout, plus "epochs")."""
  total = total or {"epochs": 0, **window(0.0, {})}
  parts = dict(total["overhead"])
  for p, s in w["overhead"].items():
    parts[p] = parts.get(p, 0.0) + s
  summed = window(total["step_seconds"] + w["step_seconds"], parts)
  return {"epochs": total["epochs"] + w.get("epochs", 1), **summed}


def describe(w: dict[str, Any]) -> str:
  """'overhead 1.2 s = 2.3% (validation 0.8, checkpoint 0.3, ...)' for the epoch log line."""
  parts = sorted(((s, p) for p, s in w["overhead"].items() if s >= 0.05), reverse=True)
  detail = ", ".join(f"{p} {s:.1f}" for s, p in parts[:3])
  fraction = w["overhead_fraction"] or 0.0
  return (f"outside steps {w['overhead_seconds']:.1f}s = {100 * fraction:.1f}%"
          + (f" ({detail})" if detail else ""))
