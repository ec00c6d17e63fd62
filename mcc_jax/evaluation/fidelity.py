"""Pixel fidelity of generated frames: L1, PSNR and SSIM as the official basicsr metrics define them.

Inputs are uint8 NHWC (B, H, W, 3) batches, as the official code scores its frames after rounding them to uint8.
Each function returns one float32 value per image. Channel order does not matter: every metric averages the
channels with equal weight, so RGB and the official BGR agree.
"""
import jax
import jax.numpy as jnp
import numpy as np

_PEAK = 255.0
# SSIM: an 11x11 Gaussian window of sigma 1.5 and the stabilisers (0.01 * 255)^2, (0.03 * 255)^2.
_SSIM_RADIUS = 5
_SSIM_SIGMA = 1.5
_SSIM_C1 = (0.01 * _PEAK) ** 2
_SSIM_C2 = (0.03 * _PEAK) ** 2


def check_image_pair(pred: jax.Array, target: jax.Array, *, min_size: int = 1) -> None:
  """Raise ValueError / TypeError unless both are uint8 (B, H, W, 3) batches of one shape, H and W >= min_size."""
  for name, x in (("pred", pred), ("target", target)):
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"{name} must be a uint8 NHWC batch (B, H, W, 3); got shape {x.shape}")
    if x.dtype != jnp.uint8:
      raise TypeError(f"{name} must be uint8 (0-255), as the official code scores rounded frames; got {x.dtype}. "
                      "Convert [-1, 1] model outputs with mcc_jax.io.images.to_uint8")
  if pred.shape != target.shape:
    raise ValueError(f"pred and target shapes differ: {pred.shape} vs {target.shape}")
  if min(pred.shape[1:3]) < min_size:
    raise ValueError(f"images of {pred.shape[1]}x{pred.shape[2]} are too small: this metric needs at least "
                     f"{min_size}x{min_size}")


def _per_image_sum(x: jax.Array) -> jax.Array:
  """Sum of a non-negative int32 (B, H, W, C) array per image, as float32.

  Row sums stay exact in int32; only the H row totals are added in float32.
  """
  return jnp.sum(jnp.sum(x, axis=(2, 3)).astype(jnp.float32), axis=1)


def _abs_diff(pred: jax.Array, target: jax.Array) -> jax.Array:
  return jnp.abs(pred.astype(jnp.int32) - target.astype(jnp.int32))


@jax.jit
def l1(pred: jax.Array, target: jax.Array) -> jax.Array:
  """(B,) mean absolute difference on the [0, 1] scale: the official `l1_255` (its 0-255 `l1` divided by 255)."""
  check_image_pair(pred, target)
  count = int(np.prod(pred.shape[1:]))
  return _per_image_sum(_abs_diff(pred, target)) / (count * _PEAK)


@jax.jit
def mean_squared_error(pred: jax.Array, target: jax.Array) -> jax.Array:
  """(B,) mean squared difference on the 0-255 scale."""
  check_image_pair(pred, target)
  count = int(np.prod(pred.shape[1:]))
  return _per_image_sum(jnp.square(_abs_diff(pred, target))) / count


@jax.jit
def psnr(pred: jax.Array, target: jax.Array) -> jax.Array:
  """(B,) PSNR in dB on 0-255 over all three channels (basicsr `calculate_psnr`, crop_border 0, not the Y channel).

  Identical images give +inf, as the official code returns float('inf'); averaging over frames then gives inf too.
  """
  mse = mean_squared_error(pred, target)
  return jnp.where(mse == 0, jnp.inf, 10.0 * jnp.log10(_PEAK ** 2 / jnp.where(mse == 0, 1.0, mse)))


def gaussian_window_1d() -> np.ndarray:
  """The normalised 11-tap Gaussian (sigma 1.5) whose outer product is basicsr's SSIM window, in float64."""
  offsets = np.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1, dtype=np.float64)
  taps = np.exp(-offsets ** 2 / (2 * _SSIM_SIGMA ** 2))
  return taps / taps.sum()


def _filter_valid(x: jax.Array, taps: np.ndarray) -> jax.Array:
  """Separable correlation of (B, H, W, C) with the window, keeping only the fully covered ('valid') region.

  Written as shifted multiply-adds rather than a convolution so that no backend lowers its precision.
  """
  size = len(taps)
  h, w = x.shape[1] - size + 1, x.shape[2] - size + 1
  x = sum(float(t) * x[:, k:k + h] for k, t in enumerate(taps))
  return sum(float(t) * x[:, :, k:k + w] for k, t in enumerate(taps))


def _local_statistics(x: jax.Array, y: jax.Array) -> tuple[jax.Array, ...]:
  """Gaussian-weighted local means, variances and covariance of two (B, H, W, C) float32 images, valid region.

  The (co)variances sum w * (x - mean) * (y - mean) over the window, which equals basicsr's
  E[xy] - E[x] E[y] but keeps float32 accurate: the one-pass form subtracts two numbers of up to 255^2 and
  loses ~1e-3 of variance, visible as ~1e-4 of SSIM on flat regions.
  """
  taps = gaussian_window_1d()
  size = len(taps)
  weights = jnp.asarray(np.outer(taps, taps).reshape(-1).astype(np.float32))
  mean_x, mean_y = _filter_valid(x, taps.astype(np.float32)), _filter_valid(y, taps.astype(np.float32))
  window_shape = mean_x.shape

  def accumulate(offset, sums):
    start = (0, offset // size, offset % size, 0)
    dx = jax.lax.dynamic_slice(x, start, window_shape) - mean_x
    dy = jax.lax.dynamic_slice(y, start, window_shape) - mean_y
    weight = weights[offset]
    var_x, var_y, cov = sums
    return var_x + weight * dx * dx, var_y + weight * dy * dy, cov + weight * dx * dy

  zeros = jnp.zeros(window_shape, jnp.float32)
  var_x, var_y, cov = jax.lax.fori_loop(0, size * size, accumulate, (zeros, zeros, zeros))
  return mean_x, mean_y, var_x, var_y, cov


@jax.jit
def ssim(pred: jax.Array, target: jax.Array) -> jax.Array:
  """(B,) SSIM of each image: basicsr `calculate_ssim` (MATLAB-style, 11x11 Gaussian sigma 1.5, the valid
  region only, the mean of the three per-channel SSIMs). Needs images of at least 11x11."""
  check_image_pair(pred, target, min_size=2 * _SSIM_RADIUS + 1)
  mu_x, mu_y, var_x, var_y, cov = _local_statistics(pred.astype(jnp.float32), target.astype(jnp.float32))
  ssim_map = ((2 * mu_x * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)
              / ((mu_x * mu_x + mu_y * mu_y + _SSIM_C1) * (var_x + var_y + _SSIM_C2)))
  return jnp.mean(ssim_map, axis=(1, 2, 3))
