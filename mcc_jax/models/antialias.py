"""The anti-alias downsampler as a module: its Gaussian kernel is a checkpoint buffer, loaded like the official one."""
import jax.numpy as jnp
from flax import nnx

from mcc_jax.models.layers import Buffer
from mcc_jax.ops import antialias_downsample, antialias_kernel


class AntiAliasDownsample(nnx.Module):

  def __init__(self, channels: int, scale: float, *, param_dtype=jnp.float32):
    self.scale = scale
    self.kernel = Buffer(jnp.asarray(antialias_kernel(scale, channels), param_dtype))

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return antialias_downsample(x, self.kernel[...], self.scale)
