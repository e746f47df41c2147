"""Three ways to run a training epoch, yielding the same chunks of per-step metrics.

- `HostEpochs`: numpy batches from the host, one jitted step per batch (any dataset size).
- `TFDataEpochs`: the same batches read through a tf.data pipeline (parallel gather, prefetch
  while the previous step runs; on several hosts each process reads only its rows of a batch).
- `DeviceEpochs`: the training split lives on the accelerator (the paper's LUNA16 set is 17 MB
  as uint8) and each chunk of steps is one jitted `lax.scan` that gathers its batches on device,
  so the paper's batch-20 setting is not bound by Python dispatch.

All three take the batch order from `epoch_indices`, and the step's randomness from
`fold_in(rng, state.step)`, so for the same seed they train the same model. With a sequence of
seeds, each step gets one batch per seed ([n_seeds, batch, ...]) for a vmapped step over stacked
states (`medjax.train.seeds`); each model sees the order it would see alone.
"""

from __future__ import annotations

import functools
import math
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from medjax.data import Split, epoch_indices
from medjax.train import parallel
from medjax.train.profile import NO_PROFILER, StepProfiler, named


def step_indices(n: int, batch_size: int, *, seed: int | Sequence[int], epoch: int) -> np.ndarray:
  """[steps, batch] indices for one seed, [steps, n_seeds, batch] for a sequence of seeds."""
  if isinstance(seed, (int, np.integer)):
    return epoch_indices(n, batch_size, seed=int(seed), epoch=epoch)
  return np.stack([epoch_indices(n, batch_size, seed=s, epoch=epoch) for s in seed], axis=1)


def run_chunks(step_fn, state, batches, rng, chunk: int, *, first_step: int = 1,
               profiler: StepProfiler = NO_PROFILER) -> Iterator[tuple[object, list[dict]]]:
  """Runs `step_fn(state, batch, rng)` over `batches`, yielding (state, the metrics of up to
  `chunk` steps) with one host fetch per chunk, so steps are dispatched ahead of the fetches.
  Steps are numbered from `first_step` (their number in the whole run) for `profiler`."""
  pending = []
  for n, batch in enumerate(batches, first_step):
    with profiler.step(n):
      state, metrics = step_fn(state, batch, rng)
    profiler.after(n, state)
    pending.append(metrics)
    if len(pending) == chunk:
      yield state, jax.device_get(pending)
      pending = []
  if pending:
    yield state, jax.device_get(pending)


def first_step(epoch: int, steps_per_epoch: int) -> int:
  """The run's number of the first step of `epoch` (steps counted from 1 over the run)."""
  return (epoch - 1) * steps_per_epoch + 1


class HostEpochs:
  """One jitted `step(state, batch, rng)` per numpy batch, metrics fetched every `chunk` steps."""

  def __init__(self, step_fn, split: Split, batch_size: int, *, seed: int, chunk: int, rng,
               place_batch=None):
    self.step_fn, self.split, self.batch_size = step_fn, split, batch_size
    self.seed, self.chunk, self.rng = seed, chunk, rng
    self.place_batch = place_batch or (lambda batch: batch)
    self.steps_per_epoch = len(split) // batch_size

  def run(self, state, epoch: int, profiler: StepProfiler = NO_PROFILER
          ) -> Iterator[tuple[object, list[dict]]]:
    batches = (self.place_batch({"image": self.split.images[idx],
                                 "label": self.split.labels[idx]})
               for idx in step_indices(len(self.split), self.batch_size, seed=self.seed,
                                       epoch=epoch))
    return run_chunks(self.step_fn, state, batches, self.rng, self.chunk,
                      first_step=first_step(epoch, self.steps_per_epoch), profiler=profiler)


class TFDataEpochs:
  """`HostEpochs` with the batches produced by tf.data (`config.data.source="tfdata"`).

  The batch order is the same `step_indices`, so both sources train the same model for the
  same seed; tf.data gathers and prefetches batches in its own threads. TensorFlow is imported
  only here (and kept off the GPU). With several processes each reads the rows of every global
  batch that its devices hold (`parallel.process_slice`)."""

  def __init__(self, step_fn, split: Split, batch_size: int, *, seed, chunk: int, rng,
               mesh=None, prefetch: int = 2):
    from medjax.data.pipeline import tensorflow
    self.tf = tensorflow()
    self.step_fn, self.batch_size, self.seed = step_fn, batch_size, seed
    self.chunk, self.rng, self.mesh, self.prefetch = chunk, rng, mesh, prefetch
    self.n = len(split)
    self.steps_per_epoch = len(split) // batch_size
    self.rows = parallel.process_slice(batch_size) if mesh is not None else slice(None)
    self.images = self.tf.constant(split.images)
    self.labels = self.tf.constant(split.labels)

  def dataset(self, epoch: int):
    """The tf.data.Dataset of one epoch's {"image", "label"} batches (this process's rows)."""
    tf = self.tf
    idx = step_indices(self.n, self.batch_size, seed=self.seed, epoch=epoch)[..., self.rows]
    ds = tf.data.Dataset.from_tensor_slices(idx)
    ds = ds.map(lambda i: {"image": tf.gather(self.images, i),
                           "label": tf.gather(self.labels, i)},
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(self.prefetch)

  def run(self, state, epoch: int, profiler: StepProfiler = NO_PROFILER
          ) -> Iterator[tuple[object, list[dict]]]:
    batches = self.dataset(epoch).as_numpy_iterator()
    if self.mesh is not None:
      batches = (parallel.put_local_batch(b, self.mesh) for b in batches)
    return run_chunks(self.step_fn, state, batches, self.rng, self.chunk,
                      first_step=first_step(epoch, self.steps_per_epoch), profiler=profiler)


def _scan_chunk(state, images, labels, idx, valid, rng, *, step, batch_sharding=None):
  """Runs the steps of `idx` [chunk, batch] whose `valid` flag is set; padding steps are no-ops."""

  def gather(i):
    batch = {"image": images[i], "label": labels[i]}
    if batch_sharding is not None:  # split each gathered batch over the data axis
      batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
    return batch

  metrics_shape = jax.eval_shape(lambda s: step(s, gather(idx[0]), rng)[1], state)

  def body(state, xs):
    i, ok = xs

    def run(state):
      return step(state, gather(i), rng)

    def skip(state):
      return state, jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), metrics_shape)

    return jax.lax.cond(ok, run, skip, state)

  return jax.lax.scan(body, state, (idx, valid))


class DeviceEpochs:
  """The split on device; each chunk of about `chunk` steps is one jitted scan.

  Chunks are equal-sized (the last padded with skipped steps), so there is one compilation.
  `put_data` places the resident arrays (e.g. replicated on a mesh); `batch_sharding` is the
  sharding of each gathered batch (split over the mesh's data axis).
  """

  def __init__(self, step, split: Split, batch_size: int, *, seed: int, chunk: int, rng,
               put_data=jax.device_put, batch_sharding=None):
    self.split_len, self.batch_size, self.seed, self.rng = len(split), batch_size, seed, rng
    self.steps_per_epoch = len(split) // batch_size
    self.n_chunks = math.ceil(self.steps_per_epoch / max(1, min(chunk, self.steps_per_epoch)))
    self.chunk = math.ceil(self.steps_per_epoch / self.n_chunks)
    self.images, self.labels = put_data((split.images, split.labels))
    self.scan = jax.jit(named(functools.partial(_scan_chunk, step=step,
                                                batch_sharding=batch_sharding), "train_steps"),
                        donate_argnums=0)

  def run(self, state, epoch: int, profiler: StepProfiler = NO_PROFILER
          ) -> Iterator[tuple[object, list[dict]]]:
    rng = self.rng
    base = first_step(epoch, self.steps_per_epoch)
    idx = step_indices(self.split_len, self.batch_size, seed=self.seed, epoch=epoch)
    padded = self.n_chunks * self.chunk
    valid = np.arange(padded) < len(idx)
    idx = np.concatenate([idx, np.zeros((padded - len(idx), *idx.shape[1:]), np.int32)])
    idx = idx.reshape(self.n_chunks, self.chunk, *idx.shape[1:])
    valid = valid.reshape(self.n_chunks, self.chunk)
    for c in range(self.n_chunks):
      first = base + c * self.chunk
      last = base + min((c + 1) * self.chunk, self.steps_per_epoch) - 1
      with profiler.step(first, last):
        state, stacked = self.scan(state, self.images, self.labels, idx[c], valid[c], rng)
      profiler.after(last, state)
      stacked = jax.device_get(stacked)
      yield state, [{k: v[j] for k, v in stacked.items()} for j in np.flatnonzero(valid[c])]
