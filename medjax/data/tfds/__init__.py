"""Manual-data TFDS builders for LUNA16 and hip X-rays; importing this package registers them.

    import tensorflow_datasets as tfds
    import medjax.data.tfds  # noqa: F401 (registers "luna16_patches", "luna16_raw", "hip_xray")
    builder = tfds.builder("luna16_patches", data_dir=DATA_DIR)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=PATCH_FOLDER))
    ds = builder.as_dataset(split="train")

`hip_xray` has four configs, the paper's variants: `tfds.builder("hip_xray/128_crop")`, and
`128_full`, `256_crop`, `256_full`. All build offline (no download step) as tfrecord files.
"""

from medjax.data.pipeline import tensorflow as _tensorflow

_tensorflow()  # hide the GPUs from TensorFlow before TFDS uses it

from medjax.data.tfds.hip_xray import HipXray  # noqa: E402
from medjax.data.tfds.luna16_patches import Luna16Patches  # noqa: E402
from medjax.data.tfds.luna16_raw import Luna16Raw  # noqa: E402

__all__ = ["HipXray", "Luna16Patches", "Luna16Raw"]
