"""On-device augmentation for square patches, applied inside the jitted train step.

Per example: one of the 8 dihedral transforms (rotations by 90 degrees, with or without a flip)
and a small translation with edge padding. The paper augmented positives by rotation and
translation; these preserve a nodule's label and cost nothing next to the network.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _dihedral(image, k, flip):
  rotations = [jnp.rot90(image, r, axes=(0, 1)) for r in range(4)]
  rotated = jnp.select([k == r for r in range(4)], rotations)
  return jnp.where(flip, rotated[:, ::-1], rotated)


def _translate(image, dy, dx, max_shift):
  padded = jnp.pad(image, ((max_shift, max_shift), (max_shift, max_shift), (0, 0)), mode="edge")
  return jax.lax.dynamic_slice(padded, (max_shift + dy, max_shift + dx, 0), image.shape)


def augment_batch(images, rng, *, dihedral: bool = True, max_shift: int = 0,
                  hflip: bool = False):
  """images: [N, H, W, C] (H == W when dihedral). Returns a transformed copy.

  `hflip` (without `dihedral`): a random left-right mirror only, for images with an up and a
  down (a radiograph is not seen rotated by 90 degrees, but its mirror is another patient's).
  """
  if not dihedral and max_shift == 0 and not hflip:
    return images
  n = images.shape[0]
  k_rot, k_flip, k_shift = jax.random.split(rng, 3)
  k = jax.random.randint(k_rot, (n,), 0, 4)
  flip = jax.random.bernoulli(k_flip, 0.5, (n,))
  shifts = jax.random.randint(k_shift, (n, 2), -max_shift, max_shift + 1)

  def one(image, k, flip, shift):
    if dihedral:
      image = _dihedral(image, k, flip)
    elif hflip:
      image = jnp.where(flip, image[:, ::-1], image)
    if max_shift:
      image = _translate(image, shift[0], shift[1], max_shift)
    return image

  return jax.vmap(one)(images, k, flip, shifts)
