"""Images/s of the tf.data input path alone (host side), to compare with the train step's rate.

    python -m medjax.benchmarks.pipeline --data_dir=/data/luna16_patches --batch_size=20

Reads the LUNA16 patch folders (the embedded synthetic data without `--data_dir`) through
`medjax.data.pipeline.tf_batches` as training does (shuffle, 2-pixel shifts) for `--seconds`.
Needs the `data` extra (TensorFlow).
"""

from __future__ import annotations

import time

from absl import flags

from medjax import benchmarks, cli
from medjax import config as config_lib
from medjax.data import load_dataset


def define_flags(fv) -> None:
  flags.DEFINE_string("data_dir", None, "LUNA16 patch folders (default: the embedded synthetic "
                      "data).", flag_values=fv)
  flags.DEFINE_integer("batch_size", 20, "Images per batch.", lower_bound=1, flag_values=fv)
  flags.DEFINE_float("seconds", 10.0, "How long to read batches.", lower_bound=0.1,
                     flag_values=fv)


def bench_input_pipeline(data_dir: str | None, batch_size: int, seconds: float = 10.0) -> dict:
  """Images/s of `tf_batches` over the LUNA16 training split."""
  benchmarks.require("tensorflow", "TensorFlow", "-e '.[data]'")
  from medjax.data import pipeline
  cfg = config_lib.base_config("luna", "cnn").data
  cfg.dir = data_dir
  dataset = load_dataset("luna", cfg, seed=0)
  it = pipeline.tf_batches(dataset.train, batch_size, train=True, seed=0, num_epochs=None,
                           max_shift=2)
  next(it)
  n, t = 0, time.perf_counter()
  while time.perf_counter() - t < seconds:
    next(it)
    n += batch_size
  return {"input_pipeline": "tf.data", "batch_size": batch_size,
          "images_per_second": round(n / (time.perf_counter() - t), 1)}


def report(r: dict) -> str:
  return (f"tf.data input path alone: {r['images_per_second']:,.0f} img/s at batch "
          f"{r['batch_size']}")


def main(argv=None) -> dict:
  fv = cli.parse_flags(define_flags, argv, __doc__)
  r = bench_input_pipeline(fv.data_dir, fv.batch_size, fv.seconds)
  print(report(r), flush=True)
  return r


if __name__ == "__main__":
  cli.run(main)
