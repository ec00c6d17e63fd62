"""Reading and writing still images as NHWC float arrays in [-1, 1]."""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, UnidentifiedImageError


def normalize(images_uint8: jax.Array, dtype=jnp.float32) -> jax.Array:
  """uint8 -> [-1, 1] in `dtype`; meant to run on device."""
  return images_uint8.astype(dtype) / 127.5 - 1.0


def read_image(path, size: int | None = None) -> np.ndarray:
  """(H, W, 3) float32 in [-1, 1]; resized (bilinear) to size x size when given.

  Raises FileNotFoundError for a missing file and ValueError for a file that is not a readable image.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"image not found: {path}")
  try:
    with Image.open(path) as image:
      image = image.convert("RGB")
      if size is not None and image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
      pixels = np.asarray(image, np.float32)
  except (UnidentifiedImageError, OSError) as e:
    raise ValueError(f"{path} is not a readable image: {e}") from e
  return pixels / 127.5 - 1.0


def to_uint8(image: np.ndarray) -> np.ndarray:
  """[-1, 1] float -> uint8, clamped (the model's output is not bounded)."""
  return np.round((np.clip(np.asarray(image, np.float32), -1, 1) + 1) * 127.5).astype(np.uint8)


def write_image(path, image: np.ndarray) -> pathlib.Path:
  """Write an (H, W, 3) [-1, 1] float or uint8 image."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  pixels = image if image.dtype == np.uint8 else to_uint8(image)
  Image.fromarray(pixels).save(path)
  return path
