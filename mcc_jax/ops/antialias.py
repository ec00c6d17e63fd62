"""FOMM's band-limited downsampling (`AntiAliasInterpolation2d`): Gaussian blur, then keep every n-th pixel."""
import jax
import jax.numpy as jnp
import numpy as np


def antialias_kernel_size(scale: float) -> int:
  sigma = (1 / scale - 1) / 2
  return 2 * round(sigma * 4) + 1


def antialias_kernel(scale: float, channels: int) -> np.ndarray:
  """Depthwise HWIO (k, k, 1, channels) normalised Gaussian with sigma = (1/scale - 1) / 2, built in float32."""
  sigma = (1 / scale - 1) / 2
  size = antialias_kernel_size(scale)
  coords = np.arange(size, dtype=np.float32)
  mean = (size - 1) / 2
  one_d = np.exp(-((coords - mean) ** 2) / np.float32(2 * sigma**2)).astype(np.float32)
  kernel = one_d[:, None] * one_d[None, :]
  kernel = (kernel / kernel.sum()).astype(np.float32)
  return np.tile(kernel[:, :, None, None], (1, 1, 1, channels))


def antialias_downsample(x: jnp.ndarray, kernel: jnp.ndarray, scale: float) -> jnp.ndarray:
  """Blur NHWC `x` with the depthwise `kernel` (zero padding) and subsample by 1/scale."""
  if scale == 1.0:
    return x
  size = kernel.shape[0]
  ka = size // 2
  kb = ka - 1 if size % 2 == 0 else ka
  stride = int(1 / scale)
  return jax.lax.conv_general_dilated(
      x, kernel.astype(x.dtype), window_strides=(stride, stride), padding=((ka, kb), (ka, kb)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=x.shape[-1],
      precision=jax.lax.Precision.HIGHEST)
