"""MRFA's flow/occlusion residual head: a motion encoder and a flow/occlusion refiner (widths as in MRFA)."""
import jax
import jax.numpy as jnp
from flax import nnx

from mcc_jax.models.layers import Conv2d, at_least_float32


class BasicMotionEncoder(nnx.Module):
  """Encodes the retrieved motion feature and the raw pixel displacement; the displacement is appended as is."""

  def __init__(self, motion_dim: int, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.convc1 = Conv2d(motion_dim, 128, 1, **kw)
    self.convc2 = Conv2d(128, 96, 3, padding=1, **kw)
    self.convf1 = Conv2d(2, 128, 7, padding=3, **kw)
    self.convf2 = Conv2d(128, 64, 3, padding=1, **kw)
    self.conv = Conv2d(64 + 96, 128 - 2, 3, padding=1, **kw)

  def __call__(self, displacement: jnp.ndarray, motion_feature: jnp.ndarray) -> jnp.ndarray:
    relu = jax.nn.relu
    cor = relu(self.convc2(relu(self.convc1(motion_feature))))
    flo = relu(self.convf2(relu(self.convf1(displacement))))
    out = relu(self.conv(jnp.concatenate([cor, flo], axis=-1)))
    return jnp.concatenate([out, displacement.astype(out.dtype)], axis=-1)


class RefineFlow(nnx.Module):
  """(motion encoding, 192-channel context) -> (flow residual in pixels (2), occlusion logit residual (1)).

  The two output convs compute in at least float32, so the residual is float32 under a bfloat16 `dtype`."""

  def __init__(self, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    head = dict(kw, dtype=at_least_float32(dtype))
    self.convc1 = Conv2d(192, 128, 3, padding=1, **kw)
    self.conv1 = Conv2d(256, 128, 3, padding=1, **kw)
    self.conv2 = Conv2d(128, 2, 3, padding=1, **head)
    self.convo1 = Conv2d(256, 128, 3, padding=1, **kw)
    self.convo2 = Conv2d(128, 1, 3, padding=1, **head)

  def __call__(self, motion_encoding: jnp.ndarray, context: jnp.ndarray) -> jnp.ndarray:
    relu = jax.nn.relu
    inp = jnp.concatenate([motion_encoding, relu(self.convc1(context))], axis=-1)
    flow = self.conv2(relu(self.conv1(inp)))
    occlusion = self.convo2(relu(self.convo1(inp)))
    return jnp.concatenate([flow, occlusion], axis=-1)
