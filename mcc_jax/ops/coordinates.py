"""Coordinate grids and keypoint heat maps, computed the way the official PyTorch code does."""
import jax.numpy as jnp
import numpy as np


def make_coordinate_grid(height: int, width: int, dtype=jnp.float32) -> jnp.ndarray:
  """(height, width, 2) grid of (x, y) in [-1, 1]; -1 and 1 are the centres of the border pixels.

  Computed on the host in `dtype` as `2 * (i / (n - 1)) - 1`, the official formula, bit for bit (XLA would
  rewrite the division as a multiplication by the reciprocal, one ulp off).
  """
  dtype = np.dtype(dtype)
  x = 2 * (np.arange(width, dtype=dtype) / dtype.type(width - 1)) - 1
  y = 2 * (np.arange(height, dtype=dtype) / dtype.type(height - 1)) - 1
  xx = np.broadcast_to(x[None, :], (height, width))
  yy = np.broadcast_to(y[:, None], (height, width))
  return jnp.asarray(np.stack([xx, yy], axis=-1).astype(dtype))


def torch_linspace_float32(start: float, end: float, steps: int) -> np.ndarray:
  """`torch.linspace(start, end, steps)` in float32, bit for bit.

  torch fills the first half forwards from `start` and the second half backwards from `end`, each value a
  fused multiply-add in float32 (one rounding): computing it exactly in float64, then rounding, reproduces that.
  """
  start32, end32 = np.float32(start), np.float32(end)
  if steps == 1:
    return np.array([start32], np.float32)
  step = np.float32((end32 - start32) / np.float32(steps - 1))
  idx = np.arange(steps)
  halfway = steps // 2
  forward = np.float64(start32) + np.float64(step) * idx
  backward = np.float64(end32) - np.float64(step) * (steps - 1 - idx)
  return np.where(idx < halfway, forward, backward).astype(np.float32)


def linspace_grid_float32(size: int) -> np.ndarray:
  """(size, size, 2) (x, y) grid built from float32 `torch.linspace(-1, 1, size)`, as the generator builds it."""
  line = torch_linspace_float32(-1.0, 1.0, size)
  xx, yy = np.meshgrid(line, line, indexing="xy")
  return np.stack([xx, yy], axis=-1)


def kp2gaussian(kp_value: jnp.ndarray, height: int, width: int, kp_variance: float) -> jnp.ndarray:
  """Gaussian bumps at keypoints: kp_value (B, K, 2) -> (B, height, width, K), computed in kp_value's dtype."""
  grid = make_coordinate_grid(height, width, kp_value.dtype)
  diff = grid[None, :, :, None, :] - kp_value[:, None, None, :, :]
  return jnp.exp(-0.5 * jnp.sum(diff**2, axis=-1) / kp_variance)
