"""ResNet-50 (1 input channel, 2 classes) on LUNA16 50x50 nodule-candidate patches.

    python -m experiments.luna_resnet                    # embedded synthetic CT volumes
    python -m experiments.luna_resnet --config.data.dir=../shared/data/luna16_patches

Paper (Table 2): 93.1% test accuracy. On the embedded synthetic data (6 epochs) it reaches 0.904
accuracy, AUC 0.88, in under 4 minutes on 2 CPU cores; on real data it trains the paper's 100
epochs (use a GPU: about 2 minutes an epoch on the 2-core CPU).
"""

from experiments import _runner
from medjax import config as config_lib


def get_config():
  config = config_lib.base_config("luna", "resnet")
  config.synthetic_num_epochs = 6  # keeps the default command near 4 minutes on 2 CPU cores
  return config


if __name__ == "__main__":
  _runner.main(get_config)
