"""CodeFormer-style SFT fusion of a compensated encoder feature into the decoder stream."""
import jax
import jax.numpy as jnp
from flax import nnx

from mcc_jax.models.layers import Conv2d
from mcc_jax.models.vqgan_blocks import ResBlock


class FuseSFTBlock(nnx.Module):
  """dec + w * (dec * scale(h) + shift(h)), h = ResBlock(concat[enc, dec]).

  `scale` and `shift` keep the official Sequential layout [conv, LeakyReLU(0.2), conv]; None stands for the
  parameterless activation.
  """

  def __init__(self, in_ch: int, out_ch: int, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.encode_enc = ResBlock(2 * in_ch, out_ch, **kw)
    self.scale = nnx.List([Conv2d(in_ch, out_ch, 3, padding=1, **kw), None, Conv2d(out_ch, out_ch, 3, padding=1, **kw)])
    self.shift = nnx.List([Conv2d(in_ch, out_ch, 3, padding=1, **kw), None, Conv2d(out_ch, out_ch, 3, padding=1, **kw)])

  def __call__(self, enc: jnp.ndarray, dec: jnp.ndarray, w: float = 1.0) -> jnp.ndarray:
    h = self.encode_enc(jnp.concatenate([enc, dec], axis=-1))
    scale = self.scale[2](jax.nn.leaky_relu(self.scale[0](h), 0.2))
    shift = self.shift[2](jax.nn.leaky_relu(self.shift[0](h), 0.2))
    return dec + w * (dec * scale + shift)
