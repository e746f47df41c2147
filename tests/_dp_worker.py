"""Worker for test_parallel.py: trains a tiny ResNet a few steps data-parallel and saves params.

    python tests/_dp_worker.py OUT.npz [--devices N] [--process-id I --num-processes P --port Q]
"""

import argparse
import functools
import sys

parser = argparse.ArgumentParser()
parser.add_argument("out")
parser.add_argument("--devices", type=int, default=0, help="use only the first N devices")
parser.add_argument("--process-id", type=int, default=None)
parser.add_argument("--num-processes", type=int, default=1)
parser.add_argument("--port", type=int, default=0)
args = parser.parse_args()

import jax  # noqa: E402

if args.process_id is not None:
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{args.port}",
                             num_processes=args.num_processes, process_id=args.process_id)

import numpy as np  # noqa: E402
import optax  # noqa: E402

from medjax.models import ResNetTiny  # noqa: E402
from medjax.train import parallel, supervised  # noqa: E402
from medjax.data import epoch_indices  # noqa: E402
from medjax.train.state import create_train_state  # noqa: E402

devices = jax.devices()[:args.devices] if args.devices else jax.devices()
mesh = parallel.data_mesh(devices)
model, tx = ResNetTiny(), optax.adam(1e-3)
state = parallel.put_replicated(create_train_state(model, tx, jax.random.key(0), (32, 32, 1)), mesh)
rng = parallel.put_replicated(jax.random.key(1), mesh)
step = jax.jit(functools.partial(supervised.train_step, model=model, tx=tx,
                                 augment={"dihedral": True, "max_shift": 2}), donate_argnums=0)
data = np.random.default_rng(0)
images = data.integers(0, 256, (64, 32, 32, 1)).astype(np.uint8)
labels = data.integers(0, 2, 64).astype(np.int32)
losses = []
for idx in epoch_indices(64, 16, seed=0, epoch=1):
  state, m = step(state, parallel.put_batch({"image": images[idx], "label": labels[idx]}, mesh),
                  rng)
  losses.append(float(m["loss"]))
flat = {jax.tree_util.keystr(k): np.asarray(v) for k, v in
        jax.tree_util.tree_leaves_with_path({"params": state.params,
                                             "batch_stats": state.batch_stats})}
if jax.process_index() == 0:
  np.savez(args.out, losses=np.asarray(losses), devices=mesh.size, **flat)
print(f"process {jax.process_index()}: {mesh.size} devices, losses {losses}", file=sys.stderr)
