"""VQGAN PatchGAN discriminator (BatchNorm, always on batch statistics in the official training)."""
import jax
import jax.numpy as jnp
from flax import nnx

from mcc_jax.models.layers import BatchNorm2d, Conv2d, at_least_float32


class VQGANDiscriminator(nnx.Module):
  """`main` mirrors the official Sequential: conv, LReLU, [conv, BN, LReLU] x n_layers, conv. None = LReLU."""

  def __init__(self, nc: int = 3, ndf: int = 64, n_layers: int = 4, *, dtype=jnp.float32, param_dtype=jnp.float32,
               rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    layers = [Conv2d(nc, ndf, 4, stride=2, padding=1, rngs=rngs, **kw), None]
    mult = 1
    for n in range(1, n_layers + 1):
      prev, mult = mult, min(2**n, 8)
      stride = 2 if n < n_layers else 1
      layers += [Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, use_bias=False, rngs=rngs, **kw),
                 BatchNorm2d(ndf * mult, **kw), None]
    layers.append(Conv2d(ndf * mult, 1, 4, padding=1, rngs=rngs, dtype=at_least_float32(dtype),
                         param_dtype=param_dtype))
    self.main = nnx.List(layers)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    """(B, H, W, nc) -> patch logits (B, h, w, 1), in at least float32 (the final conv's dtype)."""
    for layer in self.main:
      x = jax.nn.leaky_relu(x, 0.2) if layer is None else layer(x)
    return x
