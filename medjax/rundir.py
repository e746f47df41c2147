"""A run's working directory: its lock, config, data fingerprint, metrics and result files.

    workdir/
      .lock            held by the process training into it (pid, host)
      config.json      the resolved config; a re-run must match it (execution fields excepted)
      data.json        fingerprint of the data the run trained on; a re-run must match it
      metrics.jsonl    one JSON line per epoch
      events/          TensorBoard event files (the same scalars)
      checkpoints/     orbax, see medjax.train.checkpoint
      results.json, predictions.csv and figures

Only process 0 writes in a multi-host run; every write is temp + rename, and an OSError (a full
disk, a read-only mount) becomes one `WorkdirError` naming the file and the cause.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import hashlib
import io
import json
import logging
import math
import os
import shutil
import socket
import time
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from medjax import config as config_lib
from medjax.errors import WorkdirError

log = logging.getLogger(__name__)

# Fields that change how a run executes, not what it trains: a resumed run may change them.
# `num_epochs` may grow (continuing a finished run); it may not drop below the epochs done.
EXECUTION_FIELDS = frozenset({
    "num_epochs", "synthetic_num_epochs", "device_resident", "log_every", "profile_steps",
    "eval_batch_size",
    "eval_checkpoint", "temperature_scaling", "early_stopping_patience", "data.workers", "data.cache", "data.source",
    "data.allow_duplicates",
})

OUTPUTS = ("checkpoints", "metrics.jsonl", "events", "results.json", "predictions.csv",
           "confusion_matrix.png", "training_curves.png", "roc.png", "pr.png",
           "reliability.png", "saliency.png", "samples", "submission_luna16.csv", "submission_seriesuids.csv",
           "froc.json", "froc.png", "data.json", "pretrain")


def is_writer() -> bool:
  """Only process 0 writes files in a multi-host run (orbax coordinates checkpoints itself)."""
  import jax
  return jax.process_index() == 0


def seed_workdir(parent: str, seed: int) -> str:
  """Where seed `seed` of a several-seed run trains: `<parent>/seed<seed>` (--seeds, the grid,
  the label-efficiency study)."""
  return os.path.join(parent, f"seed{seed}")


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flatten(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def config_to_dict(config) -> dict[str, Any]:
  if hasattr(config, "to_json_best_effort"):
    return json.loads(config.to_json_best_effort())
  return dict(config)


@contextlib.contextmanager
def writing(path: str) -> Iterator[None]:
  """Turns an OSError while writing `path` into one WorkdirError naming it and the cause."""
  try:
    yield
  except OSError as e:
    raise WorkdirError(f"cannot write {path}: {e.strerror or e}") from e


def json_text(obj, indent: int | None = 2) -> str:
  """`obj` as strict JSON: NaN and Infinity are not JSON (other readers reject the file), so a
  non-finite number is a ValueError naming where it is (`test.auc = nan`)."""
  try:
    return json.dumps(obj, indent=indent, allow_nan=False)
  except ValueError:
    where = _non_finite(obj)
    raise ValueError(f"not written as JSON: {where or 'a non-finite number'}") from None


def _non_finite(obj, path: str = "") -> str | None:
  """`path = value` of the first NaN or infinity in `obj`."""
  if isinstance(obj, float) and not math.isfinite(obj):
    return f"{path or 'the value'} = {obj}"
  items = (obj.items() if isinstance(obj, dict) else
           enumerate(obj) if isinstance(obj, (list, tuple)) else ())
  for key, value in items:
    found = _non_finite(value, f"{path}[{key}]" if isinstance(key, int) else
                        f"{path}.{key}" if path else str(key))
    if found:
      return found
  return None


def write_json(path: str, obj) -> None:
  """Strict JSON (`json_text`), temp + rename: a crash never leaves a half-written file."""
  write_text(path, json_text(obj))


def write_text(path: str, text: str) -> None:
  """temp + rename: a crash never leaves a half-written file."""
  tmp = path + ".tmp"
  with writing(path):
    with open(tmp, "w", newline="") as f:
      f.write(text)
    os.replace(tmp, path)


def write_csv(path: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
  """A CSV written with the csv module (names with commas, quotes or newlines are quoted and
  read back whole), lines ending in \\n, through `write_text`."""
  out = io.StringIO()
  writer = csv.writer(out, lineterminator="\n")
  writer.writerow(header)
  writer.writerows(rows)
  write_text(path, out.getvalue())


def write_predictions(path: str, names, labels, probs, *, exact: bool = False) -> None:
  """predictions.csv: name,label,prob_positive per test example; P(positive) with 6 decimals,
  or every digit (`exact`, repr) where a file must equal a computation exactly."""
  write_csv(path, ("name", "label", "prob_positive"),
            ((name, int(label), repr(float(p)) if exact else f"{p:.6f}")
             for name, label, p in zip(names, labels, probs)))


def read_json(path: str, what: str = "file"):
  """A JSON file of a run, or None if it does not exist; damaged (cut short, not JSON, not an
  object) is one WorkdirError naming the file."""
  try:
    with open(path, encoding="utf-8") as f:
      obj = json.load(f)
  except FileNotFoundError:
    return None
  except (ValueError, UnicodeDecodeError) as e:
    raise WorkdirError(f"{path}: damaged {what}, not valid JSON ({e})") from None
  except OSError as e:
    raise WorkdirError(f"cannot read {path}: {e.strerror or e}") from None
  if not isinstance(obj, dict):
    raise WorkdirError(f"{path}: damaged {what}, expected a JSON object, got "
                       f"{type(obj).__name__}")
  return obj


def read_results(path: str) -> dict[str, Any] | None:
  """A run's results.json (None if absent). Damaged, without test metrics, or holding a
  non-finite number (a diverged run written by an older medjax) is a WorkdirError: such a run
  is never collected as a result."""
  results = read_json(path, "results")
  if results is None:
    return None
  if not isinstance(results.get("test"), dict) or "accuracy" not in results["test"]:
    raise WorkdirError(f"{path}: damaged results, no test metrics; delete it and re-run that "
                       "run's command to test it again")
  bad = _non_finite(results)
  if bad:
    raise WorkdirError(f"{path}: {bad} (a diverged run, not a result); train it again with a "
                       "lower learning rate in a new workdir (or --overwrite)")
  return results


def disk_full(e: BaseException) -> OSError | None:
  """The OSError (ENOSPC, EDQUOT, EROFS) somewhere in `e`'s cause chain, if any: orbax and
  tensorstore wrap them in their own exceptions, sometimes only as text."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
      return e
    if "No space left on device" in str(e):
      return OSError(errno.ENOSPC, "No space left on device")
    e = e.__cause__ or e.__context__
  return None


_HELD: dict[str, list] = {}  # realpath of a lock file -> [fd, holders in this process]


def read_metrics(path: str) -> list[dict[str, Any]]:
  """metrics.jsonl's records; a last line cut short by a kill (or still being written) is
  ignored, a bad line before it is a WorkdirError."""
  if not os.path.exists(path):
    return []
  with open(path) as f:
    lines = [line for line in f if line.strip()]
  records = []
  for n, line in enumerate(lines, 1):
    try:
      records.append(json.loads(line))
    except ValueError:
      if n < len(lines):
        raise WorkdirError(f"{path}, line {n}: not a JSON record") from None
      log.warning("%s: ignoring its last line, cut short", path)
  return records


def read_predictions(path: str) -> tuple[list[str], np.ndarray, np.ndarray] | None:
  """(names, labels, P(positive)) of a run's predictions.csv, or None if there is none."""
  if not os.path.exists(path):
    return None
  with open(path, newline="", encoding="utf-8-sig") as f:
    reader = csv.DictReader(f)
    if not {"name", "label", "prob_positive"} <= set(reader.fieldnames or ()):
      raise WorkdirError(f"{path}: expected the columns name,label,prob_positive, got "
                         f"{reader.fieldnames}")
    try:
      rows = [(r["name"], int(r["label"]), float(r["prob_positive"])) for r in reader]
    except (TypeError, ValueError) as e:
      raise WorkdirError(f"{path}: a row is not (name, label 0/1, probability): {e}") from None
  names = [r[0] for r in rows]
  return (names, np.array([r[1] for r in rows], np.int64),
          np.array([r[2] for r in rows], np.float64))


class WorkdirLock:
  """An exclusive `flock` on workdir/.lock. The OS drops it when its process dies, so a lock
  left by a killed run is simply taken over; a live holder is named in the error. Re-entrant
  within a process (the runner locks before loading data, the trainer again inside)."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, ".lock")
    self._key = os.path.realpath(self.path)
    self._held = False

  def acquire(self) -> None:
    if self._held:
      return
    if self._key in _HELD:
      _HELD[self._key][1] += 1
      self._held = True
      return
    with writing(self.path):
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        os.close(fd)
        raise
      holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
      os.close(fd)
      raise WorkdirError(
          f"{os.path.dirname(self.path) or '.'} is in use by {holder}; wait for that run to "
          "finish, stop it, or use another --workdir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()} since "
                  f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
    _HELD[self._key] = [fd, 1]
    self._held = True

  def release(self) -> None:
    if not self._held:
      return
    self._held = False
    entry = _HELD[self._key]
    entry[1] -= 1
    if entry[1] == 0:
      del _HELD[self._key]
      with contextlib.suppress(OSError):
        os.ftruncate(entry[0], 0)
      os.close(entry[0])  # closing drops the flock


@contextlib.contextmanager
def locked(*workdirs: str) -> Iterator[None]:
  """Holds the locks of `workdirs` (created if missing) for the block; process 0 only. A block
  that fails before writing anything leaves no folder it created behind (a refused run)."""
  locks, created = [], []
  try:
    for path in workdirs:
      created += _missing_folders(path)
      with writing(path):
        os.makedirs(path, exist_ok=True)
      if is_writer():
        lock = WorkdirLock(path)
        lock.acquire()
        locks.append(lock)
    yield
  except BaseException:
    for lock in reversed(locks):
      lock.release()
    locks = []
    for folder in reversed(created):  # deepest first; only folders holding nothing but a lock
      with contextlib.suppress(OSError):
        if set(os.listdir(folder)) <= {".lock"}:
          with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(folder, ".lock"))
          os.rmdir(folder)
    raise
  finally:
    for lock in reversed(locks):
      lock.release()


def _missing_folders(path: str) -> list[str]:
  """The folders `os.makedirs(path)` would create, outermost first."""
  missing = []
  path = os.path.abspath(path)
  while not os.path.exists(path):
    missing.append(path)
    parent = os.path.dirname(path)
    if parent == path:
      break
    path = parent
  return missing[::-1]


def data_fingerprint(dataset) -> dict[str, Any]:
  """What a run trained on: per split the size, class counts, and hashes of names, labels and
  image bytes (a few ms per MB), so a re-run on changed data is caught."""
  out = {"source": dataset.source, "synthetic": bool(dataset.synthetic),
         "image_shape": list(dataset.image_shape)}
  for name in ("train", "val", "test"):
    split = getattr(dataset, name)
    if split is None:
      out[name] = None
      continue
    neg, pos = split.class_counts
    images = np.ascontiguousarray(split.images)
    out[name] = {
        "n": len(split), "positive": pos, "negative": neg,
        "names": _digest("\n".join(map(str, split.names)).encode()),
        "labels": _digest(np.asarray(split.labels, np.int64).tobytes()),
        "images": _digest(images.dtype.str.encode() + str(images.shape).encode()
                          + images.tobytes()),
    }
  return out


def _digest(data: bytes) -> str:
  return hashlib.blake2b(data, digest_size=16).hexdigest()


def fingerprint_changes(saved: dict, current: dict) -> list[str]:
  """Human-readable differences between two data fingerprints."""
  changes = []
  if saved.get("image_shape") != current.get("image_shape"):
    changes.append(f"image shape {saved.get('image_shape')} -> {current.get('image_shape')}")
  for name in ("train", "val", "test"):
    a, b = saved.get(name), current.get(name)
    if a == b:
      continue
    if a is None or b is None:
      changes.append(f"{name} split {'added' if a is None else 'removed'}")
      continue
    what = []
    if a["n"] != b["n"]:
      what.append(f"{a['n']} -> {b['n']} examples")
    if (a["positive"], a["negative"]) != (b["positive"], b["negative"]):
      what.append(f"{a['positive']}/{a['negative']} -> {b['positive']}/{b['negative']} "
                  "positive/negative")
    for key in ("names", "labels", "images"):
      if a[key] != b[key]:
        what.append(f"{key} changed")
    changes.append(f"{name}: {', '.join(what)}")
  return changes


def _defaults(flat_config: dict[str, Any]) -> dict[str, Any]:
  """The flattened default config of `flat_config`'s experiment (empty if unknown)."""
  try:
    base = config_lib.base_config(flat_config["dataset"], flat_config["model"])
  except (KeyError, ValueError):
    return {}
  return flatten(config_to_dict(base))


class RunDir:
  """One run's workdir. Use as a context manager: `open` locks it and checks (or records) the
  config and the data; leaving the block releases the lock."""

  def __init__(self, path: str):
    self.path = path
    self.writer = is_writer()
    self._lock = WorkdirLock(path)

  def file(self, name: str) -> str:
    return os.path.join(self.path, name)

  @classmethod
  @contextlib.contextmanager
  def open(cls, config, path: str, dataset=None, *, overwrite: bool = False
           ) -> Iterator["RunDir"]:
    run = cls(path)
    with writing(path):
      os.makedirs(path, exist_ok=True)
    if run.writer:
      run._lock.acquire()
    try:
      run.prepare(config, dataset, overwrite=overwrite)
      yield run
    finally:
      run._lock.release()

  def prepare(self, config, dataset=None, *, overwrite: bool = False) -> None:
    """Records config.json and data.json, or checks them against a previous run's."""
    if overwrite and self.writer:
      self.remove_outputs()
    current = config_to_dict(config)
    path = self.file("config.json")
    resuming = self.has_run()
    if resuming:
      self.check_config(current)
    fingerprint = data_fingerprint(dataset) if dataset is not None else None
    data_path = self.file("data.json")
    if resuming and fingerprint is not None:
      saved = self._read_record("data.json", "the data it trained on")
      changes = fingerprint_changes(saved, fingerprint)
      if changes:
        raise WorkdirError(
            f"{self.path} holds a run trained on other data ({'; '.join(changes)}). Use "
            "another --workdir, or pass --overwrite to discard that run and start over.")
    if self.writer:
      write_json(path, current)
      if fingerprint is not None:
        write_json(data_path, fingerprint)

  def has_run(self) -> bool:
    """Whether the workdir holds trained state to resume (not just a config written by a run
    that failed before its first checkpoint)."""
    for name in ("checkpoints", "pretrain"):
      path = self.file(name)
      if os.path.isdir(path) and any(not n.startswith(".") for n in os.listdir(path)):
        return True
    return os.path.exists(self.file("results.json"))

  def _read_record(self, name: str, what: str) -> dict:
    """config.json or data.json of the run to resume: without it nothing says that the run
    matches, so a missing or damaged one stops the resume."""
    path = self.file(name)
    record = read_json(path, f"record of {what}")
    if record is None:
      raise WorkdirError(
          f"{self.path} holds a trained run but its {name} is missing, so nothing says that "
          f"this run matches {what}. Put the file back, pass --overwrite to discard that run "
          "and start over, or use another --workdir.")
    return record

  def check_config(self, current: dict) -> None:
    """Refuses a previous run whose config differs in a field that changes the model."""
    saved = flatten(self._read_record("config.json", "the config it was trained with"))
    now = flatten(current)
    defaults = _defaults(now)
    diffs = [f"{k}: {saved.get(k, '<absent>')!r} -> {now.get(k, '<absent>')!r}"
             for k in sorted(set(saved) | set(now))
             if k not in EXECUTION_FIELDS and saved.get(k) != now.get(k)
             # a field added since the run began, left at its default: the run had that default
             and not (k not in saved and k in defaults and now.get(k) == defaults[k])]
    if diffs:
      raise WorkdirError(
          f"{self.path} holds a run with another config ({'; '.join(diffs)}). Use another "
          "--workdir, or pass --overwrite to discard that run and start over.")

  def remove_outputs(self) -> None:
    """Deletes a previous run's outputs (for --overwrite)."""
    for name in OUTPUTS:
      path = self.file(name)
      if os.path.isdir(path):
        shutil.rmtree(path)
      elif os.path.exists(path):
        os.remove(path)

  def append_metrics(self, record: dict[str, Any], name: str = "metrics.jsonl") -> None:
    if not self.writer:
      return
    path = self.file(name)
    with writing(path):
      with open(path, "a") as f:
        f.write(json_text(record, indent=None) + "\n")

  def read_metrics(self, name: str = "metrics.jsonl") -> list[dict[str, Any]]:
    return read_metrics(self.file(name))

  def truncate_metrics(self, last_epoch: int, name: str = "metrics.jsonl") -> None:
    """Keeps the lines of epochs <= last_epoch: a run killed after logging an epoch but before
    its checkpoint was committed re-runs that epoch without a duplicate line."""
    path = self.file(name)
    if not self.writer or not os.path.exists(path):
      return
    with open(path) as f:
      lines = [line for line in f if line.strip()]
    kept, damaged, later = [], [], []
    for n, line in enumerate(lines, 1):
      try:
        epoch = json.loads(line)["epoch"]
      except (ValueError, KeyError, TypeError):  # cut short by a kill, or damaged since
        damaged.append((n, line))
        continue
      if epoch <= last_epoch:
        kept.append(line if line.endswith("\n") else line + "\n")
      else:
        later.append(epoch)
    if later:  # logged, but the run stopped before a checkpoint held them: they train again
      log.info("%s: %d logged %s after the last checkpoint (epoch %d) %s dropped; %s again",
               path, len(later), "epoch" if len(later) == 1 else "epochs", last_epoch,
               "is" if len(later) == 1 else "are", "it trains" if len(later) == 1 else "they train")
    cut_short = bool(damaged) and damaged[-1][0] == len(lines)
    if len(damaged) > cut_short:  # damaged lines between intact ones: kept aside, not lost
      aside = path + ".damaged"
      with writing(aside):
        with open(aside, "a") as f:
          f.writelines(line if line.endswith("\n") else line + "\n" for _, line in damaged)
      numbers = [str(n) for n, _ in damaged]
      log.warning("%s: %s %s not a JSON record; the %d intact records are kept, the damaged "
                  "lines moved to %s", path, "line" if len(numbers) == 1 else "lines",
                  ", ".join(numbers), len(kept), aside)
    if len(kept) != len(lines):
      write_text(path, "".join(kept))

  def write_json(self, name: str, obj) -> None:
    if self.writer:
      write_json(self.file(name), obj)

  def write_text(self, name: str, text: str) -> None:
    if self.writer:
      write_text(self.file(name), text)
