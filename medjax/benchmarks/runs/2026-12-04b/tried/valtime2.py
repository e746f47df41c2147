import sys, time
from medjax.train import checkpoint
orig_save = checkpoint.Checkpoints.save
def save(self, *a, **k):
  orig_save(self, *a, **k); t = time.perf_counter(); self.manager.wait_until_finished()
  print(f"SAVE wait {1e3*(time.perf_counter()-t):.1f} ms", flush=True)
checkpoint.Checkpoints.save = save
exec(open('/root/medjax-runs/s10/valtime.py').read())
