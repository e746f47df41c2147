"""The diagnosis behind `bn_stats_batches` (README.md here): a finished run's tested checkpoint,
evaluated on validation and test twice, with BatchNorm's moving averages as trained and with
the statistics re-estimated under the same weights from 8 training batches of 20
(`medjax.train.bn_stats`, as the runs now do before each validation).

    PYTHONPATH=. python results/synthetic_cpu/hips_v5_study/bn_diagnosis.py WORKDIR

The figures of README.md were taken with an earlier form of this script (the statistics backed
out of a training-mode call at momentum 0.9, over all 36 training batches) on 2026-12-04; this
form uses the library's estimator.
"""

import sys

import numpy as np

from medjax import runner
from medjax.analysis.restore import restore
from medjax.eval.metrics import roc_auc
from medjax.train import bn_stats


def main(workdir: str) -> None:
  run = restore(workdir)
  data = runner.load_data(run.config)
  refresh = bn_stats.Refresher(run.model, data.train, batch_size=run.config.batch_size,
                               num_batches=8, seed=run.config.seed)

  class Variables:  # the restored variables in the train state's shape, for the refresher
    params, batch_stats = run.variables["params"], run.variables["batch_stats"]

    def replace(self, **kw):
      return kw

  fresh = {"params": run.variables["params"],
           "batch_stats": refresh(Variables())["batch_stats"]}
  print(f"{workdir}: checkpoint of epoch {run.epoch}")
  for name in ("val", "test"):
    split = getattr(data, name)
    for label, variables in (("moving averages", run.variables), ("re-estimated", fresh)):
      logits = np.concatenate([
          np.asarray(run.model.apply(variables, run.preprocess(split.images[i:i + 20])))
          for i in range(0, len(split.images), 20)])
      p = np.exp(logits[:, 1]) / np.exp(logits).sum(1)
      acc = float(((p >= 0.5) == split.labels).mean())
      print(f"  {name:4s} {label:15s} accuracy {acc:.3f}  AUC {roc_auc(split.labels, p):.3f}")


if __name__ == "__main__":
  main(sys.argv[1])
