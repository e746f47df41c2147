"""Orbax checkpoints of the train state: the last epoch and the best by a validation metric."""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

import jax
import orbax.checkpoint as ocp

from medjax.errors import UserError, WorkdirError
from medjax.train.state import TrainState


@contextlib.contextmanager
def reading(path: str) -> Iterator[None]:
  """Turns any failure to read checkpoints at `path` (files damaged or cut since they were
  written: orbax and tensorstore raise JSON, value and I/O errors) into one WorkdirError that
  names the folder, the cause and what to do."""
  try:
    yield
  except UserError:
    raise
  except Exception as e:
    cause = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    raise WorkdirError(
        f"cannot read checkpoint {path}: damaged ({type(e).__name__}: {cause[:300]}). Delete "
        "that epoch's folder to resume from an earlier checkpoint, or pass --overwrite to start "
        "over") from e


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
    with reading(self.directory):
      self.manager = ocp.CheckpointManager(self.directory, options=options)

  def save(self, epoch: int, state: TrainState, meta: dict[str, Any],
           metrics: dict[str, float] | None) -> None:
    self.manager.save(epoch, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                     meta=ocp.args.JsonSave(meta)),
                      metrics=metrics)

  @property
  def latest_epoch(self) -> int | None:
    with reading(self.directory):
      return self.manager.latest_step()

  @property
  def best_epoch(self) -> int | None:
    with reading(self.directory):
      return self.manager.best_step()

  def restore(self, epoch: int, like: TrainState) -> tuple[TrainState, dict[str, Any]]:
    """Restores epoch `epoch` with the shapes, dtypes and shardings of `like`."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
    with reading(self.path(epoch)):
      restored = self.manager.restore(epoch, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
      meta = restored["meta"]
      if not isinstance(meta, dict):
        raise ValueError(f"meta is {type(meta).__name__}, not a JSON object")
    return restored["state"], meta

  def path(self, epoch: int) -> str:
    return os.path.join(self.directory, str(epoch))

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
