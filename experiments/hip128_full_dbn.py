"""The paper's DBN on hip X-rays, 128x128, the full radiograph (no crop).

    python -m experiments.hip128_full_dbn                    # embedded synthetic radiographs
    python -m experiments.hip128_full_dbn --config.data.dir=/path/to/hip_xray

16,384 visible units (flattened pixels), RBMs of 1500, 1000, 500 and 200 hidden units pretrained
greedily by contrastive divergence (config.dbn), then a softmax layer and supervised fine-tuning.
The paper ran its DBN at 128x128 only (no 256 cells). Paper (Table 2): 70.1% test accuracy.
"""

from medjax import config as config_lib
from medjax import runner


def get_config():
  config = config_lib.base_config("hip128_full", "dbn")
  config.synthetic_num_epochs = 40  # fine-tuning epochs take seconds on 2 CPU cores (issue 22)
  return config


if __name__ == "__main__":
  runner.main(get_config)
