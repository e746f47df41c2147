"""The supervised optimizer: Adam with the config's learning-rate schedule.

`lr_schedule`: "constant" (the paper's), "cosine" (linear warm-up over `warmup_epochs`, then
cosine decay to 0 at `num_epochs`) or "step" (times `lr_decay_factor` every `lr_decay_epochs`,
after the warm-up). Schedules count optimizer steps, so a resumed run continues the schedule.

Fine-tuning (`medjax.train.transfer`): `backbone_learning_rate` trains every layer but the head
at that rate (the same schedule, scaled); `freeze_backbone` does not update them at all.
"""

from __future__ import annotations

import optax

from medjax.train.transfer import param_labels


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
    tx = optax.adam(config.learning_rate)
  else:
    tx = optax.adam(schedule)
  if config.freeze_backbone:
    backbone = optax.set_to_zero()
  elif config.backbone_learning_rate is not None:
    ratio = config.backbone_learning_rate / config.learning_rate
    backbone = optax.adam(lambda step: schedule(step) * ratio)
  else:
    return tx, schedule
  return optax.multi_transform({"head": tx, "backbone": backbone}, param_labels), schedule
