"""One read per volume, all its candidates cut in that pass; scans in parallel processes."""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import sys
import time
from concurrent import futures

import numpy as np

from medjax.data.luna16.mhd import read_volume
from medjax.data.luna16.patches import HU_WINDOW, cut_patches, to_uint8, window_hu

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ScanTask:
  """All the candidates to cut from one volume (picklable, for worker processes)."""
  path: str
  world: np.ndarray        # [K, 3] x, y, z mm
  shift: np.ndarray        # [K, 2] (dy, dx) voxel offsets (augmented copies), else zeros
  size: int = 50
  slices: int = 1
  window: tuple[float, float] = HU_WINDOW


def process_scan(task: ScanTask) -> tuple[np.ndarray, np.ndarray, int]:
  """One read of the volume -> uint8 patches [K, size, size, slices], centre-inside flags,
  bytes of volume read."""
  volume, geometry = read_volume(task.path)
  centres = geometry.world_to_voxel(task.world)
  centres[:, 1:] += task.shift
  patches, inside = cut_patches(volume, centres, task.size, task.slices, pad_value=task.window[0])
  return to_uint8(window_hu(patches, task.window)), inside, volume.nbytes


def _eta(seconds: float) -> str:
  seconds = int(seconds)
  return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else \
      f"{seconds // 60}m{seconds % 60:02d}s"


def run_tasks(tasks: list[ScanTask], workers: int = 1, *, log_every: float = 5.0) -> list:
  """process_scan over tasks in order, in `workers` processes with at most 2 x workers volumes
  in flight (bounded memory); logs scans done, candidates/s, MB/s and ETA."""
  total_cands = sum(len(t.world) for t in tasks)
  results: list = [None] * len(tasks)
  t0 = last = time.perf_counter()
  done = cands = nbytes = 0

  def report(force=False):
    nonlocal last
    now = time.perf_counter()
    if force or now - last >= log_every:
      last, rate = now, cands / max(now - t0, 1e-9)
      log.info("luna16: %d/%d scans, %d/%d candidates, %.0f candidates/s, %.0f MB/s read, ETA %s",
               done, len(tasks), cands, total_cands, rate, nbytes / 1e6 / max(now - t0, 1e-9),
               _eta((total_cands - cands) / max(rate, 1e-9)))

  def finish(i, result):
    nonlocal done, cands, nbytes
    results[i] = result
    done, cands, nbytes = done + 1, cands + len(tasks[i].world), nbytes + result[2]
    report()

  if workers <= 1:
    for i, task in enumerate(tasks):
      finish(i, process_scan(task))
  else:
    # fork starts fast and needs no `if __name__ == "__main__"` guard, but not under JAX's
    # threads: then spawn.
    ctx = multiprocessing.get_context("spawn" if "jax" in sys.modules else "fork")
    with futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
      pending, queue = {}, iter(enumerate(tasks))
      for i, task in queue:
        pending[pool.submit(process_scan, task)] = i
        if len(pending) >= 2 * workers:
          break
      while pending:
        finished, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
        for fut in finished:
          finish(pending.pop(fut), fut.result())
          nxt = next(queue, None)
          if nxt is not None:
            pending[pool.submit(process_scan, nxt[1])] = nxt[0]
  report(force=True)
  return results
