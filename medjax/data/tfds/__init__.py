"""Manual-data TFDS builders for LUNA16; importing this package registers them with TFDS.

    import tensorflow_datasets as tfds
    import medjax.data.tfds  # noqa: F401 (registers "luna16_patches" and "luna16_raw")
    builder = tfds.builder("luna16_patches", data_dir=DATA_DIR)
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=PATCH_FOLDER))
    ds = builder.as_dataset(split="train")

Both build offline (no download step) as tfrecord files.
"""

from medjax.data.pipeline import tensorflow as _tensorflow

_tensorflow()  # hide the GPUs from TensorFlow before TFDS uses it

from medjax.data.tfds.luna16_patches import Luna16Patches  # noqa: E402
from medjax.data.tfds.luna16_raw import Luna16Raw  # noqa: E402

__all__ = ["Luna16Patches", "Luna16Raw"]
