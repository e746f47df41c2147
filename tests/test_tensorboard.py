import logging
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from medjax import tensorboard


def read_events(logdir):
  """(scalars: tag -> [(step, value)], images: tag -> [(step, height, width)]) of logdir."""
  hide_tf = "tensorflow" not in sys.modules  # TensorBoard would import it (~15 s), needlessly
  if hide_tf:
    sys.modules["tensorflow"] = None
  try:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(logdir)
    acc.Reload()
  except ImportError:
    return _parse_records(logdir)
  finally:
    if hide_tf:
      sys.modules.pop("tensorflow", None)
  tags = acc.Tags()
  scalars = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]}
  images = {t: [(e.step, e.height, e.width) for e in acc.Images(t)] for t in tags["images"]}
  return scalars, images


def _parse_records(logdir):
  """TFRecord framing (length, crc, data, crc) and tensorboardX's Event proto. A SessionLog
  START at step s (a resumed run's purge_step) hides what came before at steps >= s, as
  TensorBoard's EventAccumulator does."""
  from tensorboardX.proto import event_pb2
  scalars, images = {}, {}
  for path in tensorboard.event_files(logdir):
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
      (n,) = struct.unpack("<Q", data[pos:pos + 8])
      event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + n])
      pos += 12 + n + 4
      if event.HasField("session_log") and event.session_log.status == event_pb2.SessionLog.START:
        for series in (*scalars.values(), *images.values()):
          series[:] = [e for e in series if e[0] < event.step]
      for v in event.summary.value:
        if v.HasField("simple_value"):
          scalars.setdefault(v.tag, []).append((event.step, v.simple_value))
        elif v.HasField("image"):
          images.setdefault(v.tag, []).append((event.step, v.image.height, v.image.width))
  return scalars, images


def test_scalars_and_images_read_back(tmp_path):
  logdir = str(tmp_path / "run")
  with tensorboard.EventWriter(logdir) as writer:
    writer.scalars(1, {"train_loss": 0.5, "val_auc": np.float32(0.75), "val_sensitivity": None,
                       "val_confusion_matrix": [[1, 2], [3, 4]], "note": "x", "flag": True})
    writer.scalars(2, {"train_loss": np.asarray(0.25), "val_auc": 0.875})
    writer.image(2, "test/confusion_matrix",
                 tensorboard.confusion_matrix_image([[82, 18], [16, 4]], "test"))
    writer.image(2, "gray", np.linspace(0, 1, 12 * 7).reshape(12, 7))
  assert len(tensorboard.event_files(logdir)) == 1
  scalars, images = read_events(logdir)
  assert set(scalars) == {"train_loss", "val_auc"}  # None, lists, strings, bools skipped
  assert scalars["train_loss"] == [(1, 0.5), (2, 0.25)]
  assert scalars["val_auc"] == [(1, 0.75), (2, 0.875)]
  (step, height, width), = images["test/confusion_matrix"]
  assert step == 2 and height > 100 and width > 100
  assert images["gray"] == [(2, 12, 7)]


def test_figure_is_logged_as_an_image_and_closed(tmp_path):
  from medjax.eval.plots import plt
  fig, ax = plt.subplots(figsize=(2, 1.5), dpi=50)
  ax.plot([0, 1], [1, 0])
  writer = tensorboard.EventWriter(str(tmp_path))
  writer.figure(3, "curve", fig)
  writer.close()
  assert not plt.fignum_exists(fig.number)
  assert read_events(str(tmp_path))[1]["curve"] == [(3, 75, 100)]


def test_confusion_matrix_image():
  image = tensorboard.confusion_matrix_image([[5, 1], [2, 3]])
  assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
  assert image.min() < 50 and image.max() == 255  # dark cells and white background


def test_disabled_writer_writes_nothing(tmp_path):
  logdir = tmp_path / "run"
  writer = tensorboard.EventWriter(str(logdir), enabled=False)
  writer.scalars(1, {"loss": 1.0})
  writer.image(1, "x", np.zeros((4, 4)))
  writer.flush()
  writer.close()
  assert not logdir.exists()


def test_without_tensorboardx_warns_once_and_does_nothing(tmp_path, monkeypatch, caplog):
  monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails
  monkeypatch.setattr(tensorboard, "_warned", False)
  with caplog.at_level(logging.WARNING):
    for name in ("a", "b"):
      writer = tensorboard.EventWriter(str(tmp_path / name))
      writer.scalars(1, {"loss": 1.0})
      writer.image(1, "x", np.zeros((4, 4)))
      writer.close()
  assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
  assert "pip install tensorboardX" in caplog.records[0].message
  assert not os.listdir(tmp_path)


def test_works_without_tensorflow_or_torch(tmp_path):
  code = ("import sys; sys.modules['tensorflow'] = None\n"
          "from medjax import tensorboard\n"
          f"w = tensorboard.EventWriter({str(tmp_path)!r}); w.scalars(1, {{'loss': 2.0}}); "
          "w.close()\n"
          "assert 'torch' not in sys.modules  # not pulled in by tensorboardX\n"
          "print(len(tensorboard.event_files(w.logdir)))\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=os.path.join(os.path.dirname(__file__), ".."), check=True)
  assert out.stdout.strip() == "1"
  assert read_events(str(tmp_path))[0]["loss"] == [(1, 2.0)]


def test_as_uint8_image_rejects_bad_shapes():
  with pytest.raises(ValueError, match="HWC"):
    tensorboard.as_uint8_image(np.zeros((2, 4, 4, 3)))
  np.testing.assert_array_equal(tensorboard.as_uint8_image(np.array([[0.0, 1.0, 2.0]]))[..., 0],
                                [[0, 255, 255]])
