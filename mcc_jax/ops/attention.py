"""Multi-head softmax attention on (B, L, heads, head_dim) arrays, in one of two implementations.

'xla': logits, softmax and the weighted sum as three XLA ops. Exact (float64 included), but the logits of every
head are written to memory: at 256 px each of MCC's 32 attentions holds 8 x 1024 x (256..1024) float32 logits
per frame, several GB per batch that a GPU reads and writes at memory speed.

'pallas': JAX's fused (flash) attention kernel for GPUs (`jax.experimental.pallas.ops.gpu.attention`, written in
Pallas and compiled with Triton), which keeps each block of logits in registers. Off a GPU the same kernel runs
in the Pallas interpreter: right but slow, for tests only. The kernel wants a head dimension of at least 16 and a
power of two (the motion codebook's heads have 4), so heads are zero-padded: zeros change neither the logits nor,
after slicing, the output. A key padding mask travels in one extra head channel: 1 in every query, a large
negative number in a masked key, 0 in the rest, so a masked key's logit drops by that much and its weight to 0.
"""
import math

import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ("xla", "pallas")
_MASKED_LOGIT = -1e9
_MIN_HEAD_DIM = 16


def check_implementation(implementation: str) -> str:
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"attention implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
  return implementation


def attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray, *, key_padding_mask: jnp.ndarray | None = None,
              implementation: str = "xla", interpret: bool | None = None) -> jnp.ndarray:
  """softmax(q k^T) v per head, with q already scaled.

  q (B, Lq, H, D); k and v (B, Lk, H, D), or (Lk, H, D) shared by the whole batch. key_padding_mask (B, Lk), True =
  ignore that key; a row whose keys are all masked attends to all of them instead (torch would return NaN there).
  Returns (B, Lq, H, D) in v's dtype. The logits and the softmax are at least float32. `interpret` runs the Pallas
  kernel in the interpreter (default: unless the default backend is a GPU).
  """
  if key_padding_mask is not None:
    key_padding_mask = key_padding_mask & ~jnp.all(key_padding_mask, axis=-1, keepdims=True)
  if check_implementation(implementation) == "pallas":
    return _pallas_attention(q, k, v, key_padding_mask,
                             interpret=jax.default_backend() != "gpu" if interpret is None else interpret)
  kv = "bkhd" if k.ndim == 4 else "khd"
  logits = jnp.einsum(f"bqhd,{kv}->bhqk", q, k, preferred_element_type=jnp.promote_types(q.dtype, jnp.float32))
  if key_padding_mask is not None:
    logits = jnp.where(key_padding_mask[:, None, None, :], -jnp.inf, logits)
  weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  return jnp.einsum(f"bhqk,{kv}->bqhd", weights, v)


def _block_size(length: int, preferred: int) -> int:
  """The largest power of two up to `preferred` that divides `length` (the kernel tiles without remainders)."""
  block = preferred
  while block > 1 and length % block:
    block //= 2
  return block


def _pallas_attention(q, k, v, key_padding_mask, *, interpret: bool):
  from jax.experimental.pallas.ops.gpu import attention as pallas_gpu

  batch, q_len, heads, head_dim = q.shape
  if k.ndim == 3:
    k = jnp.broadcast_to(k[None], (batch, *k.shape))
    v = jnp.broadcast_to(v[None], (batch, *v.shape))
  kv_len = k.shape[1]
  dtype = v.dtype
  q, k = q.astype(dtype), k.astype(dtype)
  if key_padding_mask is not None:
    mask_channel = jnp.where(key_padding_mask, _MASKED_LOGIT, 0.0).astype(dtype)
    q = jnp.concatenate([q, jnp.ones((batch, q_len, heads, 1), dtype)], axis=-1)
    k = jnp.concatenate([k, jnp.broadcast_to(mask_channel[:, :, None, None], (batch, kv_len, heads, 1))], axis=-1)
    v = jnp.concatenate([v, jnp.zeros((batch, kv_len, heads, 1), dtype)], axis=-1)
  padded = max(_MIN_HEAD_DIM, 1 << math.ceil(math.log2(q.shape[-1])))
  pad = [(0, 0)] * 3 + [(0, padded - q.shape[-1])]
  q, k, v = (jnp.pad(x, pad) for x in (q, k, v))
  # The backward kernel gives each program one block of keys (dk, dv) and one of queries (dq): as many of each.
  backward_blocks = max(1, min(q_len, kv_len) // 32)
  while q_len % backward_blocks or kv_len % backward_blocks:
    backward_blocks -= 1
  blocks = pallas_gpu.BlockSizes(
      block_q=_block_size(q_len, 128), block_k=_block_size(kv_len, 128),
      block_q_dq=q_len // backward_blocks, block_kv_dkv=kv_len // backward_blocks,
      block_q_dkv=_block_size(q_len, 32), block_kv_dq=_block_size(kv_len, 32))
  out = pallas_gpu.mha(q, k, v, None, sm_scale=1.0, block_sizes=blocks, interpret=interpret)
  return out[..., :head_dim]
