"""The paper's 6-layer CNN on LUNA16 50x50 nodule-candidate patches.

    python -m experiments.luna_cnn                       # embedded synthetic CT volumes
    python -m experiments.luna_cnn --config.data.dir=../shared/data/luna16_patches

Paper (Table 2): 92.5% test accuracy. Measured results: README.md ("Results"), generated from
results/.
"""

from medjax import config as config_lib
from medjax import runner


def get_config():
  return config_lib.base_config("luna", "cnn")


if __name__ == "__main__":
  runner.main(get_config)
