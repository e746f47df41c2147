"""tf.data input pipeline: a split (or a TFDS dataset) -> shuffled, augmented, batched, prefetched
numpy batches {"image", "label"} for the jitted step.

TensorFlow is imported inside the functions (GPU machines may not have it) and is kept off the
GPU, which belongs to JAX.
"""

from __future__ import annotations

from medjax.data.base import Split, check_batch_size


def tensorflow():
  """`import tensorflow`, with every GPU hidden from it."""
  import tensorflow as tf
  try:
    tf.config.set_visible_devices([], "GPU")
  except RuntimeError:  # TF already initialised its devices (an earlier call hid the GPUs)
    pass
  return tf


def edge_pad(tf, image, m: int):
  """`image` [H, W, C] padded by `m` copies of its border rows and columns, as the jitted step's
  shifts pad (`medjax.train.augment`, numpy's mode="edge"; tf.pad has no such mode)."""
  rows = tf.concat([tf.repeat(image[:1], m, 0), image, tf.repeat(image[-1:], m, 0)], 0)
  return tf.concat([tf.repeat(rows[:, :1], m, 1), rows, tf.repeat(rows[:, -1:], m, 1)], 1)


def _augment(tf, index, example, seed: int, dihedral: bool, max_shift: int, hflip: bool = False):
  """Per example, seeded by (seed, position in the stream): rot90 x k and a left-right flip
  (`dihedral`; `hflip` alone: the flip only, for radiographs), shift (edge padding, as in
  training)."""
  seeds = tf.random.experimental.stateless_split(
      tf.stack([tf.constant(seed, tf.int64), tf.cast(index, tf.int64)]), 3)
  image = example["image"]
  if dihedral:
    image = tf.image.rot90(image, tf.random.stateless_uniform([], seeds[0], 0, 4, tf.int32))
    image = tf.image.stateless_random_flip_left_right(image, seeds[1])
  elif hflip:
    image = tf.image.stateless_random_flip_left_right(image, seeds[1])
  if max_shift:
    image = tf.image.stateless_random_crop(edge_pad(tf, image, max_shift), tf.shape(image),
                                           seeds[2])
  return {"image": image, "label": example["label"]}


def tf_batches(source, batch_size: int, *, train: bool, seed: int = 0,
               num_epochs: int | None = 1, dihedral: bool = True, max_shift: int = 0,
               hflip: bool = False, shuffle_buffer: int | None = None, process_index: int = 0,
               process_count: int = 1):
  """Iterator of numpy batches {"image": [B, H, W, C], "label": int32 [B]}.

  source: a `Split` or a tf.data.Dataset of {"image", "label", ...} examples (e.g. from a
  medjax TFDS builder). Each host reads its own shard (`process_index` of `process_count`).
  Training: shuffled before repeat (a new order each epoch, seeded), augmented, full batches
  only; evaluation: in order, unaugmented, last batch kept. `num_epochs=None` repeats forever.
  """
  tf = tensorflow()
  if isinstance(source, Split):
    if train:
      check_batch_size(batch_size, len(source))
    ds = tf.data.Dataset.from_tensor_slices({"image": source.images, "label": source.labels})
    size = len(source)
  else:
    ds = source.map(lambda ex: {"image": ex["image"], "label": ex["label"]})
    size = None
  ds = ds.map(lambda ex: {"image": ex["image"], "label": tf.cast(ex["label"], tf.int32)})
  if process_count > 1:
    ds = ds.shard(process_count, process_index)
  if train:
    ds = ds.shuffle(shuffle_buffer or size or 10_000, seed=seed, reshuffle_each_iteration=True)
  ds = ds.repeat(num_epochs)
  if train and (dihedral or max_shift or hflip):
    ds = ds.enumerate().map(
        lambda i, ex: _augment(tf, i, ex, seed, dihedral, max_shift, hflip),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(batch_size, drop_remainder=train)
  return ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
