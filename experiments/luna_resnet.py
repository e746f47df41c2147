"""ResNet-50 (1 input channel, 2 classes) on LUNA16 50x50 nodule-candidate patches.

    python -m experiments.luna_resnet                    # embedded synthetic CT volumes
    python -m experiments.luna_resnet --config.data.dir=../shared/data/luna16_patches

Paper (Table 2): 93.1% test accuracy. On the embedded synthetic data it trains 6 epochs (the
README's first command, sized for a 2-core CPU); on real data the paper's 100 epochs, a GPU job.
Measured results: README.md ("Results"), generated from results/.
"""

from medjax import config as config_lib
from medjax import runner


def get_config():
  config = config_lib.base_config("luna", "resnet")
  config.synthetic_num_epochs = 6  # the README's first command: minutes on 2 CPU cores
  return config


if __name__ == "__main__":
  runner.main(get_config)
