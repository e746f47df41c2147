import sys, time, jax, numpy as np
from medjax.train import driver
orig = driver.predict
def timed(eval_fn, state, split, bs):
  t0 = time.perf_counter(); jax.block_until_ready(state); t1 = time.perf_counter()
  r = orig(eval_fn, state, split, bs); t2 = time.perf_counter()
  print(f"VAL wait-state {1e3*(t1-t0):.1f} ms predict {1e3*(t2-t1):.1f} ms bs {bs}", flush=True)
  return r
driver.predict = timed
sys.argv = ["luna_cnn", "--config.data.dir=/work/shared/data/luna16_patches", "--config.num_epochs=12", "--workdir=/tmp/cnnov2"]
import runpy, shutil; shutil.rmtree("/tmp/cnnov2", ignore_errors=True)
runpy.run_module("experiments.luna_cnn", run_name="__main__")
