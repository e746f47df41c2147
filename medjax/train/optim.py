"""The supervised optimizer: Adam with the config's learning-rate schedule.

`lr_schedule`: "constant" (the paper's), "cosine" (linear warm-up over `warmup_epochs`, then
cosine decay to 0 at `num_epochs`) or "step" (times `lr_decay_factor` every `lr_decay_epochs`,
after the warm-up). Schedules count optimizer steps, so a resumed run continues the schedule.
"""

from __future__ import annotations

import optax


def learning_rate_schedule(config, steps_per_epoch: int) -> optax.Schedule:
  lr, kind = config.learning_rate, config.lr_schedule
  warmup = int(config.warmup_epochs * steps_per_epoch)
  if kind == "constant":
    main = optax.constant_schedule(lr)
  elif kind == "cosine":
    main = optax.cosine_decay_schedule(lr, max(1, config.num_epochs * steps_per_epoch - warmup))
  elif kind == "step":
    every = max(1, config.lr_decay_epochs * steps_per_epoch)
    main = optax.exponential_decay(lr, every, config.lr_decay_factor, staircase=True)
  else:  # config.resolve rejects it first
    raise ValueError(f"unknown lr_schedule {kind!r}")
  if not warmup:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), main], [warmup])


def adam(config, steps_per_epoch: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """(optimizer, schedule); the schedule is also what the driver logs as `learning_rate`."""
  schedule = learning_rate_schedule(config, steps_per_epoch)
  if config.lr_schedule == "constant" and not config.warmup_epochs:
    # A float keeps the optimizer state of the paper's setting free of a schedule counter.
    return optax.adam(config.learning_rate), schedule
  return optax.adam(schedule), schedule
