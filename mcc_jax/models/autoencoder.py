"""The VQGAN encoder and decoder ("generator" in the official code) as flat block lists.

The block lists match the official indices, which the compensation taps by number (see `encoder_taps`).
With `remat`, each residual and attention block is rematerialized.
"""
from typing import Sequence

import jax.numpy as jnp
from flax import nnx
from flax.core import FrozenDict

from mcc_jax.models.layers import Conv2d, at_least_float32
from mcc_jax.models.remat import call_block
from mcc_jax.models.vqgan_blocks import AttnBlock, Downsample, ResBlock, Upsample, normalize


class Encoder(nnx.Module):
  """conv -> per level [res blocks (+attention at attn_resolutions), downsample] -> res/attn/res -> GN -> conv."""

  def __init__(self, in_channels: int, nf: int, emb_dim: int, ch_mult: Sequence[int], num_res_blocks: int,
               resolution: int, attn_resolutions: Sequence[int], *, remat: bool = False, dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    blocks = [Conv2d(in_channels, nf, 3, padding=1, **kw)]
    in_ch_mult = (1,) + tuple(ch_mult)
    res = resolution
    self.level_ends = []  # index of the last block at each resolution, before its downsample
    for level, mult in enumerate(ch_mult):
      ch_in, ch_out = nf * in_ch_mult[level], nf * mult
      for _ in range(num_res_blocks):
        blocks.append(ResBlock(ch_in, ch_out, **kw))
        ch_in = ch_out
        if res in attn_resolutions:
          blocks.append(AttnBlock(ch_in, **kw))
      self.level_ends.append(len(blocks) - 1)
      if level != len(ch_mult) - 1:
        blocks.append(Downsample(ch_in, **kw))
        res //= 2
    blocks += [ResBlock(ch_in, ch_in, **kw), AttnBlock(ch_in, **kw), ResBlock(ch_in, ch_in, **kw)]
    blocks.append(normalize(ch_in, dtype=dtype, param_dtype=param_dtype))
    blocks.append(Conv2d(ch_in, emb_dim, 3, padding=1, **kw))
    self.level_ends = tuple(self.level_ends)
    self.blocks = nnx.List(blocks)
    self.out_channels = ch_in
    self.remat = remat

  def __call__(self, x: jnp.ndarray, taps: Sequence[int] = ()) -> tuple[jnp.ndarray, dict[int, jnp.ndarray]]:
    """Returns the final latent and the outputs of the blocks listed in `taps`, keyed by block index."""
    tapped = {}
    for i, block in enumerate(self.blocks):
      x = call_block(block, x, remat=self.remat and isinstance(block, (ResBlock, AttnBlock)))
      if i in taps:
        tapped[i] = x
    return x, tapped


class Decoder(nnx.Module):
  """conv -> res/attn/res -> per level (coarse to fine) [res blocks (+attention), upsample] -> GN -> conv to RGB.

  There is no final activation: the output may leave [-1, 1]. The final conv computes in at least float32, so
  the image is float32 under a bfloat16 `dtype`.
  """

  def __init__(self, nf: int, emb_dim: int, ch_mult: Sequence[int], num_res_blocks: int, img_size: int,
               attn_resolutions: Sequence[int], out_channels: int = 3, *, remat: bool = False, dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    ch_in = nf * ch_mult[-1]
    res = img_size // 2 ** (len(ch_mult) - 1)
    blocks = [Conv2d(emb_dim, ch_in, 3, padding=1, **kw)]
    blocks += [ResBlock(ch_in, ch_in, **kw), AttnBlock(ch_in, **kw), ResBlock(ch_in, ch_in, **kw)]
    self.level_starts = {}  # resolution -> index of the first res block at that resolution
    for level in reversed(range(len(ch_mult))):
      ch_out = nf * ch_mult[level]
      self.level_starts[res] = len(blocks)
      for _ in range(num_res_blocks):
        blocks.append(ResBlock(ch_in, ch_out, **kw))
        ch_in = ch_out
        if res in attn_resolutions:
          blocks.append(AttnBlock(ch_in, **kw))
      if level != 0:
        blocks.append(Upsample(ch_in, **kw))
        res *= 2
    blocks.append(normalize(ch_in, dtype=dtype, param_dtype=param_dtype))
    blocks.append(Conv2d(ch_in, out_channels, 3, padding=1, dtype=at_least_float32(dtype), param_dtype=param_dtype,
                         rngs=rngs))
    self.level_starts = FrozenDict(self.level_starts)
    self.blocks = nnx.List(blocks)
    self.remat = remat

  def apply_block(self, index: int, x: jnp.ndarray) -> jnp.ndarray:
    """Block `index` alone (the generator interleaves fusions between blocks)."""
    block = self.blocks[index]
    return call_block(block, x, remat=self.remat and isinstance(block, (ResBlock, AttnBlock)))

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    for index in range(len(self.blocks)):
      x = self.apply_block(index, x)
    return x
