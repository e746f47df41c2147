"""The paper's 6-layer CNN on hip X-rays, 256x256, cropped to the hip joint and femoral head (crop box from labels.csv).

    python -m experiments.hip256_crop_cnn                    # embedded synthetic radiographs
    python -m experiments.hip256_crop_cnn --config.data.dir=/path/to/hip_xray

Images are padded to square (keeping the aspect ratio) and resized to 256x256; the data dir
holds labels.csv (path,label[,x0,y0,x1,y1][,patient]) or positive/ and negative/ folders.
Paper (Table 2): 86.0% test accuracy on its private set.
"""

from medjax import config as config_lib
from medjax import runner


def get_config():
  config = config_lib.base_config("hip256_crop", "cnn")
  # The plain CNN (no BatchNorm, Adam 1e-4) needs ~1,000 steps before the synthetic fracture
  # shows in its loss: 40 epochs of the 720 synthetic training images.
  config.synthetic_num_epochs = 40
  return config


if __name__ == "__main__":
  runner.main(get_config)
