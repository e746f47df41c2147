"""TensorBoard event files beside metrics.jsonl, written with tensorboardX.

    writer = EventWriter(os.path.join(workdir, "events"), enabled=rundir.is_writer())
    writer.scalars(epoch, record)           # numbers only; lists, strings and None are skipped
    writer.image(epoch, "test/confusion_matrix", confusion_matrix_image(cm))
    writer.close()

tensorboardX is pure Python + protobuf: it needs neither TensorFlow nor PyTorch. Without it,
or with `enabled=False` (every process but the first in a multi-host run), every call does
nothing; a run never fails for want of TensorBoard. `tensorboard --logdir runs` shows them all.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
from typing import Any, Mapping

import numpy as np

from medjax.eval.plots import confusion_matrix_figure, figure_to_array, plt

log = logging.getLogger(__name__)

EVENT_FILE_GLOB = "events.out.tfevents.*"
_warned = False


def _summary_writer_class():
  """tensorboardX.SummaryWriter, or None (with one warning per process) if not installed."""
  global _warned
  # tensorboardX imports torch when it is installed, only to accept torch tensors: seconds and
  # hundreds of MB in a JAX process. Hidden during the import (tensorboardX falls back to NumPy),
  # torch stays importable afterwards.
  hide_torch = "torch" not in sys.modules
  if hide_torch:
    sys.modules["torch"] = None
  try:
    from tensorboardX import SummaryWriter
  except Exception as e:  # pylint: disable=broad-except  (a broken install must not stop a run)
    if not _warned:
      log.warning("TensorBoard events are not written (tensorboardX: %s); "
                  "pip install tensorboardX", e)
      _warned = True
    return None
  finally:
    if hide_torch and sys.modules.get("torch", 0) is None:
      del sys.modules["torch"]
  return SummaryWriter


def _as_scalar(value) -> float | None:
  """`value` as a float if it is one real number (Python, NumPy or 0-d array), else None."""
  if value is None or isinstance(value, (bool, np.bool_, str, bytes)):
    return None
  array = np.asarray(value)
  if array.ndim != 0 or not (np.issubdtype(array.dtype, np.integer)
                             or np.issubdtype(array.dtype, np.floating)):
    return None
  return float(array)


def as_uint8_image(image) -> np.ndarray:
  """[H, W, C] uint8 (C in 1, 3, 4) from an HW or HWC array, uint8 or float in [0, 1]."""
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
    raise ValueError(f"expected an HW or HWC image with 1, 3 or 4 channels, got {image.shape}")
  if image.dtype == np.uint8:
    return image
  return np.round(np.clip(np.asarray(image, np.float32), 0, 1) * 255).astype(np.uint8)


class EventWriter:
  """Scalars and images for TensorBoard in `logdir` (created on the first write).

  `purge_step`: when resuming, the first epoch this process logs (the restored epoch + 1):
  events a killed run logged from that epoch on are hidden, as metrics.jsonl is truncated.
  """

  def __init__(self, logdir: str, enabled: bool = True, *, purge_step: int | None = None,
               flush_secs: int = 30):
    self.logdir = logdir
    self.enabled = enabled
    self.purge_step = purge_step
    self._flush_secs = flush_secs
    self._writer = None

  def _get(self):
    if not self.enabled:
      return None
    if self._writer is None:
      cls = _summary_writer_class()
      if cls is None:
        self.enabled = False
        return None
      os.makedirs(self.logdir, exist_ok=True)
      self._writer = cls(self.logdir, purge_step=self.purge_step, flush_secs=self._flush_secs)
    return self._writer

  def scalars(self, step: int, values: Mapping[str, Any]) -> None:
    """One scalar per numeric entry of `values` (NaN and Inf included); others are skipped."""
    if not self.enabled:
      return
    numbers = {k: v for k, v in ((k, _as_scalar(v)) for k, v in values.items())
               if v is not None}
    writer = self._get()
    if writer is None:
      return
    for tag, value in numbers.items():
      writer.add_scalar(tag, value, int(step))

  def image(self, step: int, tag: str, image) -> None:
    """An HW or HWC image, uint8 or float in [0, 1]."""
    writer = self._get()
    if writer is not None:
      writer.add_image(tag, as_uint8_image(image), int(step), dataformats="HWC")

  def figure(self, step: int, tag: str, fig, close: bool = True) -> None:
    """A matplotlib figure, rendered to an image (and closed unless `close=False`)."""
    if self.enabled:
      self.image(step, tag, figure_to_array(fig))
    if close:
      plt.close(fig)

  def flush(self) -> None:
    if self._writer is not None:
      self._writer.flush()

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


def confusion_matrix_image(cm, title: str = "") -> np.ndarray:
  """A 2x2 confusion matrix [[TN, FP], [FN, TP]] drawn as an [H, W, 3] uint8 image."""
  fig = confusion_matrix_figure(cm, title, dpi=100)
  image = figure_to_array(fig)
  plt.close(fig)
  return image


def event_files(logdir: str) -> list[str]:
  """The event files in `logdir` (e.g. to remove them with a run's other outputs)."""
  return sorted(glob.glob(os.path.join(logdir, EVENT_FILE_GLOB)))

