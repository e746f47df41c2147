"""The paper's semi-supervised GAN on hip X-rays, 256x256, the full radiograph (no crop).

    python -m experiments.hip256_full_sgan                    # embedded synthetic radiographs
    python -m experiments.hip256_full_sgan --config.data.dir=/path/to/hip_xray --config.data.num_labelled=100

The generator grows a 256/4 seed by two stride-2 transposed convolutions to 256x256;
the discriminator's K logits give the classifier (softmax) and the real/fake head
(sigmoid(logsumexp)). Paper (Table 2): 64.1% test accuracy.
"""

from medjax import config as config_lib
from medjax import runner


def get_config():
  config = config_lib.base_config("hip256_full", "sgan")
  config.synthetic_num_epochs = 2  # GAN steps at 256px on 2 CPU cores: minutes per epoch
  return config


if __name__ == "__main__":
  runner.main(get_config)
