"""Robustness of trained models to image noise and to lower spatial resolution.

    python -m experiments.robustness --workdirs='runs/table2/*/seed0' [--out=runs/robustness]
    python -m experiments.robustness --workdirs=runs/luna_cnn-synthetic,runs/luna_resnet-synthetic

Finished runs of any model; what is measured and written: `medjax.analysis.robustness`.
"""

from medjax import cli
from medjax.analysis.robustness import main

if __name__ == "__main__":
  cli.run(main)
