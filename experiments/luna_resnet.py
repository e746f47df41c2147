"""ResNet-50 (1 input channel, 2 classes) on LUNA16 50x50 nodule-candidate patches.

    python -m experiments.luna_resnet                    # embedded synthetic patches
    python -m experiments.luna_resnet --config.data.dir=../shared/data/luna16_patches

Paper (Table 2): 93.1% test accuracy. On the embedded synthetic data (3 epochs) it finishes in
about 5 minutes on 2 CPU cores.
"""

from experiments import _runner
from medjax import config as config_lib


def get_config():
  config = config_lib.base_config("luna", "resnet")
  config.synthetic_num_epochs = 6  # keeps the default command near 4 minutes on 2 CPU cores
  return config


if __name__ == "__main__":
  _runner.main(get_config)
