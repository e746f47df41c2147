"""The paper's semi-supervised GAN (K+1 classes) on LUNA16 50x50 nodule-candidate patches.

    python -m experiments.luna_sgan                      # embedded synthetic data, 2 epochs
    python -m experiments.luna_sgan --config.data.dir=../shared/data/luna16_patches
    python -m experiments.luna_sgan --config.data.dir=... --config.sgan.num_labelled=100

Every training image is used unlabelled; `sgan.num_labelled` of them (default: all) also with
labels. Writes results.json like the other models, and grids of generated samples in
<workdir>/samples/. The paper's optimizer (Adam 1e-4, beta1 0.9) instead of the default
(2e-4, beta1 0.5): --config.sgan.d_learning_rate=1e-4 --config.sgan.g_learning_rate=1e-4
--config.sgan.d_beta1=0.9 --config.sgan.g_beta1=0.9.

Paper (Table 2): 80.0% test accuracy, below the 82.7% of always answering "negative" on the
patch set's val split. A batch-20 step takes 1-4 s on the shared 2-core CPU (the generator's
52x52x128 transposed convolutions dominate), so the paper's 100 epochs are a GPU job.
Measured on that CPU, train (4,668) -> val (1,297), ONE epoch (~4 min): all labels accuracy 0.834,
AUC 0.72; 100 labels accuracy 0.830, AUC 0.71 (majority class: 0.827). With the non-saturating
loss the generator collapsed to near-black images within that epoch; with
--config.sgan.feature_matching=True it did not (accuracy 0.822 / 0.832, AUC 0.75 / 0.68).
"""

from experiments import _runner
from medjax import config as config_lib


def get_config():
  config = config_lib.base_config("luna", "sgan")
  config.synthetic_num_epochs = 2  # the default command: a few minutes on 2 CPU cores
  return config


if __name__ == "__main__":
  _runner.main(get_config)
