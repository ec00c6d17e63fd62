"""FOMM's hourglass (U-Net) with BatchNorm down/up blocks, NHWC; with `remat` each block is rematerialized."""
import jax
import jax.numpy as jnp
from flax import nnx

from mcc_jax.models.layers import BatchNorm2d, Conv2d
from mcc_jax.models.remat import call_block
from mcc_jax.ops import upsample_nearest2x


class DownBlock2d(nnx.Module):
  """conv3x3 -> BatchNorm -> ReLU -> 2x2 average pool."""

  def __init__(self, in_features: int, out_features: int, *, dtype=jnp.float32, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.conv = Conv2d(in_features, out_features, 3, padding=1, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm = BatchNorm2d(out_features, dtype=dtype, param_dtype=param_dtype)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    x = jax.nn.relu(self.norm(self.conv(x)))
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class UpBlock2d(nnx.Module):
  """Nearest x2 -> conv3x3 -> BatchNorm -> ReLU."""

  def __init__(self, in_features: int, out_features: int, *, dtype=jnp.float32, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    self.conv = Conv2d(in_features, out_features, 3, padding=1, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.norm = BatchNorm2d(out_features, dtype=dtype, param_dtype=param_dtype)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return jax.nn.relu(self.norm(self.conv(upsample_nearest2x(x))))


def _width(block_expansion: int, max_features: int, level: int) -> int:
  return min(max_features, block_expansion * 2**level)


class HourglassEncoder(nnx.Module):

  def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int, *,
               remat: bool = False, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.down_blocks = nnx.List([
        DownBlock2d(in_features if i == 0 else _width(block_expansion, max_features, i),
                    _width(block_expansion, max_features, i + 1), dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        for i in range(num_blocks)])
    self.remat = remat

  def __call__(self, x: jnp.ndarray) -> list[jnp.ndarray]:
    outs = [x]
    for block in self.down_blocks:
      outs.append(call_block(block, outs[-1], remat=self.remat))
    return outs


class HourglassDecoder(nnx.Module):

  def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int, *,
               remat: bool = False, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    blocks = []
    for i in reversed(range(num_blocks)):
      in_filters = (1 if i == num_blocks - 1 else 2) * _width(block_expansion, max_features, i + 1)
      blocks.append(UpBlock2d(in_filters, _width(block_expansion, max_features, i), dtype=dtype,
                              param_dtype=param_dtype, rngs=rngs))
    self.up_blocks = nnx.List(blocks)
    self.out_filters = block_expansion + in_features
    self.remat = remat

  def __call__(self, skips: list[jnp.ndarray]) -> list[jnp.ndarray]:
    """Returns the output of every up block concatenated with its skip; the last is the final feature map."""
    skips = list(skips)
    out = skips.pop()
    outs = []
    for block in self.up_blocks:
      out = jnp.concatenate([call_block(block, out, remat=self.remat), skips.pop()], axis=-1)
      outs.append(out)
    return outs


class Hourglass(nnx.Module):

  def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int, *,
               remat: bool = False, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(remat=remat, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.encoder = HourglassEncoder(block_expansion, in_features, num_blocks, max_features, **kw)
    self.decoder = HourglassDecoder(block_expansion, in_features, num_blocks, max_features, **kw)
    self.out_filters = self.decoder.out_filters

  def __call__(self, x: jnp.ndarray) -> list[jnp.ndarray]:
    return self.decoder(self.encoder(x))
