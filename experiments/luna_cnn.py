"""The paper's 6-layer CNN on LUNA16 50x50 nodule-candidate patches.

    python -m experiments.luna_cnn                       # embedded synthetic CT volumes
    python -m experiments.luna_cnn --config.data.dir=../shared/data/luna16_patches

Paper (Table 2): 92.5% test accuracy. On the paper's patch set (train -> val) medjax reaches
0.930 accuracy, AUC 0.952 (100 epochs, batch 20, Adam 1e-4, about 5 min on 2 CPU cores); on the
embedded synthetic data (20 epochs, under a minute) about 0.93, AUC 0.95.
"""

from experiments import _runner
from medjax import config as config_lib


def get_config():
  return config_lib.base_config("luna", "cnn")


if __name__ == "__main__":
  _runner.main(get_config)
