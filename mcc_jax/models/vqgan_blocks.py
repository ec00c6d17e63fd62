"""VQGAN building blocks (residual, attention, down- and up-sampling), NHWC."""
import jax
import jax.numpy as jnp
from flax import nnx

from mcc_jax.models.layers import Conv2d, GroupNorm, at_least_float32, swish
from mcc_jax.ops import upsample_nearest2x


def normalize(channels: int, *, dtype, param_dtype) -> GroupNorm:
  """VQGAN's GroupNorm: 32 groups, eps 1e-6."""
  return GroupNorm(32, channels, eps=1e-6, dtype=dtype, param_dtype=param_dtype)


class ResBlock(nnx.Module):
  """GN-swish-conv3x3 twice, plus a 1x1 shortcut conv when the width changes."""

  def __init__(self, in_channels: int, out_channels: int | None = None, *, dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    out_channels = in_channels if out_channels is None else out_channels
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.norm1 = normalize(in_channels, **kw)
    self.conv1 = Conv2d(in_channels, out_channels, 3, padding=1, rngs=rngs, **kw)
    self.norm2 = normalize(out_channels, **kw)
    self.conv2 = Conv2d(out_channels, out_channels, 3, padding=1, rngs=rngs, **kw)
    self.conv_out = Conv2d(in_channels, out_channels, 1, rngs=rngs, **kw) if in_channels != out_channels else None

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    h = self.conv1(swish(self.norm1(x)))
    h = self.conv2(swish(self.norm2(h)))
    shortcut = x if self.conv_out is None else self.conv_out(x)
    return h + shortcut


class AttnBlock(nnx.Module):
  """Single-head spatial self-attention over all H*W positions, scaled by channels**-0.5, with a residual.

  Logits and softmax are at least float32 under a bfloat16 `dtype`."""

  def __init__(self, channels: int, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.norm = normalize(channels, **kw)
    self.q = Conv2d(channels, channels, 1, rngs=rngs, **kw)
    self.k = Conv2d(channels, channels, 1, rngs=rngs, **kw)
    self.v = Conv2d(channels, channels, 1, rngs=rngs, **kw)
    self.proj_out = Conv2d(channels, channels, 1, rngs=rngs, **kw)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    b, h, w, c = x.shape
    hn = self.norm(x)
    q = self.q(hn).reshape(b, h * w, c)
    k = self.k(hn).reshape(b, h * w, c)
    v = self.v(hn).reshape(b, h * w, c)
    logits = jnp.einsum("bqc,bkc->bqk", q, k, preferred_element_type=at_least_float32(q.dtype)) * (c**-0.5)
    weights = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum("bqk,bkc->bqc", weights.astype(v.dtype), v).reshape(b, h, w, c)
    return x + self.proj_out(out)


class Downsample(nnx.Module):
  """Zero-pad right and bottom by one, then a stride-2 3x3 conv."""

  def __init__(self, channels: int, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.conv = Conv2d(channels, channels, 3, stride=2, rngs=rngs, dtype=dtype, param_dtype=param_dtype)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return self.conv(jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0))))


class Upsample(nnx.Module):
  """Nearest x2, then a 3x3 conv."""

  def __init__(self, channels: int, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.conv = Conv2d(channels, channels, 3, padding=1, rngs=rngs, dtype=dtype, param_dtype=param_dtype)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return self.conv(upsample_nearest2x(x))
