"""The paper's 6-layer CNN on hip X-rays, 128x128, the full radiograph (no crop).

    python -m experiments.hip128_full_cnn                    # embedded synthetic radiographs
    python -m experiments.hip128_full_cnn --config.data.dir=/path/to/hip_xray

Images are padded to square (keeping the aspect ratio) and resized to 128x128; the data dir
holds labels.csv (path,label[,x0,y0,x1,y1][,patient]) or positive/ and negative/ folders.
Paper (Table 2): 82.6% test accuracy on its private set.
"""

from medjax import config as config_lib
from medjax import runner


def get_config():
  config = config_lib.base_config("hip128_full", "cnn")
  # The plain CNN (no BatchNorm, Adam 1e-4) needs ~1,000 steps before the synthetic fracture
  # shows in its loss: 40 epochs of the 720 synthetic training images.
  config.synthetic_num_epochs = 40
  return config


if __name__ == "__main__":
  runner.main(get_config)
