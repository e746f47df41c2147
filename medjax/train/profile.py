"""Traces chosen training steps of a real run with the JAX profiler (`config.profile_steps`).

    python -m experiments.luna_resnet --config.profile_steps=(20,24) --workdir=runs/prof
    tensorboard --logdir runs/prof/profile      # the Profile tab: trace viewer, op statistics
    # or open runs/prof/profile/plugins/profile/<run>/*.trace.json.gz in ui.perfetto.dev

Steps are counted from 1 over the whole run (step 1 is the first step of epoch 1; a resumed run
goes on counting). The trace starts just before step `first` is dispatched and stops when step
`last` has finished; each step is a `train` step in the trace (`StepTraceAnnotation`, its
global step number), inside it the jitted functions by name (`train_step`, the SGAN's
`discriminator_step` and `generator_step` scopes, `eval_step` of validation). Sources that run
a chunk of steps in one jitted scan (device-resident data) annotate and trace whole chunks: the
trace then holds the chunks that contain `first`..`last`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os

import jax

log = logging.getLogger(__name__)


class StepProfiler:
  """Starts and stops one trace around global steps `first`..`last` (None: never traces)."""

  def __init__(self, steps: tuple[int, int] | None, logdir: str):
    self.first, self.last = steps if steps else (None, None)
    self.logdir = logdir
    self.active = False
    self.done = False

  def step(self, first: int, last: int | None = None):
    """Context around dispatching steps `first`..`last` (one step, or a scanned chunk): starts
    the trace when they reach the window, annotates them."""
    last = first if last is None else last
    if self.first is None:
      return contextlib.nullcontext()
    if not self.active and not self.done and first <= self.last and last >= self.first:
      os.makedirs(self.logdir, exist_ok=True)
      jax.profiler.start_trace(self.logdir, create_perfetto_trace=True)
      self.active = True
      log.info("profiling steps %d-%d into %s", self.first, self.last, self.logdir)
    return jax.profiler.StepTraceAnnotation("train", step_num=first)

  def after(self, last: int, state) -> None:
    """Stops the trace once step `last` of the window has run (waits for `state`)."""
    if self.active and last >= self.last:
      jax.block_until_ready(state)
      self.stop()

  def stop(self) -> None:
    if self.active:
      jax.profiler.stop_trace()
      self.active, self.done = False, True
      log.info("profile written: tensorboard --logdir %s", self.logdir)


NO_PROFILER = StepProfiler(None, "")


def named(fn, name: str):
  """`fn` (a function or functools.partial) under `name`: the name `jax.jit` gives the compiled
  function, which profiles, HLO dumps and compile logs show (`jit_<name>`)."""
  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    return fn(*args, **kwargs)

  wrapper.__name__ = wrapper.__qualname__ = name
  return wrapper
