"""The diagnosis behind `bn_stats_batches` (README.md here): a finished run's tested checkpoint,
evaluated on validation and test twice, with BatchNorm's moving averages as trained and with
the statistics re-estimated under the same weights from 8 training batches of 20
(`medjax.train.bn_stats`, as the runs now do before each validation). README.md's figures are
this script's output on the workdirs of the runs recorded in `moving_averages/` (their
checkpoints, about 250 MB each, are not committed).

    PYTHONPATH=. python results/synthetic_cpu/hips_v5_study/bn_diagnosis.py WORKDIR
"""

import dataclasses
import sys

from medjax import runner
from medjax.analysis.restore import restore
from medjax.eval.metrics import roc_auc
from medjax.train import bn_stats


def main(workdir: str) -> None:
  run = restore(workdir)
  data = runner.load_data(run.config)
  refresh = bn_stats.Refresher(run.model, data.train, batch_size=run.config.batch_size,
                               num_batches=8, seed=run.config.seed)
  stats = refresh.estimate(run.variables["params"], run.variables["batch_stats"])
  fresh = dataclasses.replace(run, variables={**run.variables, "batch_stats": stats})
  print(f"{workdir}: checkpoint of epoch {run.epoch}")
  for name in ("val", "test"):
    split = getattr(data, name)
    for label, model in (("moving averages", run), ("re-estimated", fresh)):
      p = model.predict(split.images)
      acc = float(((p >= 0.5) == split.labels).mean())
      print(f"  {name:4s} {label:15s} accuracy {acc:.3f}  AUC {roc_auc(split.labels, p):.3f}")


if __name__ == "__main__":
  main(sys.argv[1])
