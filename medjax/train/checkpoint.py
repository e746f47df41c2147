"""Orbax checkpoints of the train state: the last epoch and the best by a validation metric."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from medjax.train.state import TrainState


class Checkpoints:
  """Wraps one `ocp.CheckpointManager` keyed by epoch, keeping the latest and the best."""

  def __init__(self, directory: str, metric: str = "val_accuracy"):
    self.directory = os.path.abspath(directory)
    self.metric = metric
    policy = ocp.checkpoint_managers
    options = ocp.CheckpointManagerOptions(
        create=True,
        cleanup_tmp_directories=True,  # a save cut short by a kill is discarded on restart
        best_fn=lambda m: m[metric],
        best_mode="max",
        preservation_policy=policy.AnyPreservationPolicy([
            policy.LatestN(1),
            policy.BestN(get_metric_fn=lambda m: m[metric], reverse=False, n=1),
        ]))
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def save(self, epoch: int, state: TrainState, meta: dict[str, Any],
           metrics: dict[str, float] | None) -> None:
    self.manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)),
                      metrics=metrics)

  @property
  def latest_epoch(self) -> int | None:
    return self.manager.latest_step()

  @property
  def best_epoch(self) -> int | None:
    return self.manager.best_step()

  def restore(self, epoch: int, like: TrainState) -> tuple[TrainState, dict[str, Any]]:
    """Restores epoch `epoch` with the shapes, dtypes and shardings of `like`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    restored = self.manager.restore(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return restored["state"], restored["meta"]

  def path(self, epoch: int) -> str:
    return os.path.join(self.directory, str(epoch))

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
