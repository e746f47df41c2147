"""The paper's DBN on LUNA16 50x50 nodule-candidate patches.

    python -m experiments.luna_dbn                       # embedded synthetic CT volumes
    python -m experiments.luna_dbn --config.data.dir=../shared/data/luna16_patches

2500 visible units (flattened pixels), RBMs of 1500, 1000, 500 and 200 hidden units pretrained
greedily by CD-1 (config.dbn), then a softmax layer and fine-tuning of the whole stack (Adam 1e-4,
batch 20, 100 epochs). Paper (Table 2): 89.4% test accuracy. Measured results: README.md
("Results"), generated from results/.
"""

from medjax import config as config_lib
from medjax import runner


def get_config():
  return config_lib.base_config("luna", "dbn")


if __name__ == "__main__":
  runner.main(get_config)
