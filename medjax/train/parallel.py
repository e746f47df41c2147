"""Data parallelism with `jax.sharding`: a 1-D mesh over every device (all hosts), the batch
sharded over its `data` axis, params and optimizer state replicated. One code path for one
device, several devices, and several hosts (after `jax.distributed.initialize`).

With the global batch sharded, `jax.jit` partitions the step (GSPMD): gradients and BatchNorm
statistics are reduced over the whole global batch, so N devices train the same model as one.
"""

from __future__ import annotations

import numpy as np

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def data_mesh(devices=None) -> Mesh:
  """A mesh with one axis, "data", over `devices` (default: all devices of all processes)."""
  return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("data",))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  if batch_size % mesh.size:
    raise ValueError(f"batch_size {batch_size} is not divisible by the {mesh.size} devices of "
                     "the data-parallel mesh")


def _put(x, sharding):
  if jax.process_count() == 1:
    return jax.device_put(x, sharding)
  if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
    data = _put(jax.random.key_data(x), sharding)
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
  x = np.asarray(x)  # identical on every process (same seed, same data)
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def put_replicated(tree, mesh: Mesh):
  """Places identical host values on every device of the mesh (works across processes)."""
  return jax.tree.map(lambda x: _put(x, replicated(mesh)), tree)


def put_batch(batch, mesh: Mesh):
  """A global batch sharded over "data" from the full host batch that every process holds
  (all processes compute the same seeded epoch order); each feeds its own devices' rows."""
  return jax.tree.map(lambda x: _put(x, batch_sharded(mesh)), batch)


def put_local_batch(batch, mesh: Mesh):
  """A global batch sharded over "data" from this process's rows of it (`process_slice`), for
  input pipelines in which every host reads only its own part."""
  if jax.process_count() == 1:
    return put_batch(batch, mesh)
  sharding = batch_sharded(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)),
                      batch)


def process_slice(batch_size: int) -> slice:
  """The rows of a global batch that this process feeds (for per-host input pipelines)."""
  per = batch_size // jax.process_count()
  return slice(jax.process_index() * per, (jax.process_index() + 1) * per)
