"""The paper's semi-supervised GAN (K+1 classes) on LUNA16 50x50 nodule-candidate patches.

    python -m experiments.luna_sgan                      # embedded synthetic data, 2 epochs
    python -m experiments.luna_sgan --config.data.dir=../shared/data/luna16_patches
    python -m experiments.luna_sgan --config.data.dir=... --config.data.num_labelled=100

Every training image is used unlabelled; `data.num_labelled` of them (default: all) also with
labels. `--config.sgan.gan=False` trains the discriminator alone on the labelled images (the
ablation: no generator, no unlabelled images). Writes results.json like the other models, and grids of generated samples beside real
ones in <workdir>/samples/. The paper's optimizer (Adam 1e-4, beta1 0.9) instead of the default
(2e-4, beta1 0.5): --config.sgan.d_learning_rate=1e-4 --config.sgan.g_learning_rate=1e-4
--config.sgan.d_beta1=0.9 --config.sgan.g_beta1=0.9.

Paper (Table 2): 80.0% test accuracy, below the share of negatives in the patch set (the
majority baseline of every results table). Measured results: README.md ("Results"), generated
from results/.
"""

from medjax import config as config_lib
from medjax import runner


def get_config():
  config = config_lib.base_config("luna", "sgan")
  config.synthetic_num_epochs = 2  # minutes on 2 CPU cores
  return config


if __name__ == "__main__":
  runner.main(get_config)
