"""Pre-LN transformer layer (self-attention, cross-attention to a codebook, 3x3-conv feed-forward)."""
import math

import jax
import jax.numpy as jnp
from flax import nnx

from mcc_jax.models.layers import Conv2d, LayerNorm, Linear, uniform
from mcc_jax.ops.attention import attention, check_implementation


class MultiheadAttention(nnx.Module):
  """torch.nn.MultiheadAttention (dropout 0) with batch-first tokens; `in_proj` packs [q; k; v] projections.

  `attention` picks the implementation of the softmax attention itself (`mcc_jax.ops.attention`)."""

  def __init__(self, embed_dim: int, num_heads: int, *, attention: str = "xla", dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if embed_dim % num_heads:
      raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.in_proj = Linear(embed_dim, 3 * embed_dim, **kw)
    bound = math.sqrt(6.0 / (embed_dim + 3 * embed_dim))  # xavier_uniform over the packed (3E, E) matrix
    self.in_proj.kernel[...] = uniform(rngs, (embed_dim, 3 * embed_dim), -bound, bound, param_dtype)
    self.in_proj.bias[...] = jnp.zeros((3 * embed_dim,), param_dtype)
    self.out_proj = Linear(embed_dim, embed_dim, **kw)
    self.out_proj.bias[...] = jnp.zeros((embed_dim,), param_dtype)
    self.embed_dim = embed_dim
    self.num_heads = num_heads
    self.attention = check_implementation(attention)
    self.dtype = dtype

  def _project(self, x: jnp.ndarray, part: int) -> jnp.ndarray:
    e = self.embed_dim
    kernel = self.in_proj.kernel[...][:, part * e:(part + 1) * e].astype(self.dtype)
    bias = self.in_proj.bias[...][part * e:(part + 1) * e].astype(self.dtype)
    y = jnp.dot(x.astype(self.dtype), kernel) + bias
    return y.reshape(*y.shape[:-1], self.num_heads, e // self.num_heads)

  def __call__(self, query: jnp.ndarray, key: jnp.ndarray, value: jnp.ndarray,
               key_padding_mask: jnp.ndarray | None = None) -> jnp.ndarray:
    """query (B, Lq, E); key and value (B, Lk, E), or (Lk, E) shared by the whole batch.

    key_padding_mask (B, Lk), True = ignore that key. A row whose keys are all masked attends to all of them
    instead (torch would return NaN there).
    """
    head_dim = self.embed_dim // self.num_heads
    q = self._project(query, 0) * (1.0 / math.sqrt(head_dim))
    k = self._project(key, 1)
    v = self._project(value, 2)
    out = attention(q, k, v, key_padding_mask=key_padding_mask, implementation=self.attention)
    return self.out_proj(out.reshape(*out.shape[:2], self.embed_dim))


class TransformerLayer(nnx.Module):
  """t += SelfAttn(LN1 t + pos); t += CrossAttn(LN2 t + pos, codebook); t += Conv3x3(GELU(Conv3x3(LN3 t)))."""

  def __init__(self, embed_dim: int, num_heads: int, dim_conv: int, *, attention: str = "xla", dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    self.self_attn = MultiheadAttention(embed_dim, num_heads, attention=attention, rngs=rngs, **kw)
    self.cross_attn = MultiheadAttention(embed_dim, num_heads, attention=attention, rngs=rngs, **kw)
    self.conv1 = Conv2d(embed_dim, dim_conv, 3, padding=1, rngs=rngs, **kw)
    self.conv2 = Conv2d(dim_conv, embed_dim, 3, padding=1, rngs=rngs, **kw)
    self.norm1 = LayerNorm(embed_dim, **kw)
    self.norm2 = LayerNorm(embed_dim, **kw)
    self.norm3 = LayerNorm(embed_dim, **kw)

  def __call__(self, tokens: jnp.ndarray, context: jnp.ndarray, grid_size: int, pos: jnp.ndarray | None = None,
               key_padding_mask: jnp.ndarray | None = None) -> jnp.ndarray:
    """tokens (B, grid_size**2, E) in row-major grid order; context (Nc, E); pos (grid_size**2, E)."""
    with_pos = (lambda t: t) if pos is None else (lambda t: t + pos.astype(t.dtype))
    a = self.norm1(tokens)
    tokens = tokens + self.self_attn(with_pos(a), with_pos(a), a, key_padding_mask)
    a = self.norm2(tokens)
    tokens = tokens + self.cross_attn(with_pos(a), context, context)
    a = self.norm3(tokens)
    b, n, e = a.shape
    a = a.reshape(b, grid_size, grid_size, e)
    a = self.conv2(jax.nn.gelu(self.conv1(a), approximate=False))
    return tokens + a.reshape(b, n, e)
