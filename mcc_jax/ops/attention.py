"""Multi-head softmax attention on (B, L, heads, head_dim) arrays, in one of two implementations.

'xla': logits, softmax and the weighted sum as three XLA ops. Exact (float64 included), but on a GPU the logits
of every head are written to memory: at 256 px each of MCC's 32 attentions holds 8 x 1024 x (256..1024) float32
logits per frame, several GB per batch that the GPU reads and writes at memory speed.

'pallas': a fused (flash) attention kernel that keeps each block of logits on chip, picked for the platform the
computation is compiled for: on GPUs JAX's Pallas kernel compiled with Triton
(`jax.experimental.pallas.ops.gpu.attention`), on TPUs its Mosaic kernel
(`jax.experimental.pallas.ops.tpu.flash_attention`), on CPU the GPU kernel in the Pallas interpreter (right but
slow: for tests). Other platforms are refused when compiling.

Neither kernel can be split by XLA's automatic partitioner, so under a multi-device mesh context (the train step
traces under its mesh) each device runs the kernel on its own share of the batch, through `shard_map`.

Both kernels see the key padding mask as one extra head channel (1 in every query, a large negative number in a
masked key, 0 elsewhere), so a masked key's logit drops by that much and its weight to 0. The GPU kernel wants a
head dimension of at least 16 and a power of two (the motion codebook's heads have 4), so heads are zero-padded:
zeros change neither the logits nor, after slicing, the output. The TPU kernel tiles the keys by 128, so they are
padded to a multiple of 128 with masked keys.
"""
import math

import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ("xla", "pallas")
_MASKED_LOGIT = -1e9
_GPU_MIN_HEAD_DIM = 16
_TPU_KEY_BLOCK = 128


def check_implementation(implementation: str) -> str:
  if implementation not in IMPLEMENTATIONS:
    raise ValueError(f"attention implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
  return implementation


def attention(q: jnp.ndarray, k: jnp.ndarray, v: jnp.ndarray, *, key_padding_mask: jnp.ndarray | None = None,
              implementation: str = "xla") -> jnp.ndarray:
  """softmax(q k^T) v per head, with q already scaled.

  q (B, Lq, H, D); k and v (B, Lk, H, D), or (Lk, H, D) shared by the whole batch. key_padding_mask (B, Lk), True =
  ignore that key; a row whose keys are all masked attends to all of them instead (torch would return NaN there).
  Returns (B, Lq, H, D) in v's dtype. The logits and the softmax are at least float32.
  """
  if key_padding_mask is not None:
    key_padding_mask = key_padding_mask & ~jnp.all(key_padding_mask, axis=-1, keepdims=True)
  if check_implementation(implementation) == "pallas":
    operands = (q, k, v) if key_padding_mask is None else (q, k, v, key_padding_mask)
    return _per_device_share(_pallas_for_platform, operands, shared_kv=k.ndim == 3)
  kv = "bkhd" if k.ndim == 4 else "khd"
  logits = jnp.einsum(f"bqhd,{kv}->bhqk", q, k, preferred_element_type=jnp.promote_types(q.dtype, jnp.float32))
  if key_padding_mask is not None:
    logits = jnp.where(key_padding_mask[:, None, None, :], -jnp.inf, logits)
  weights = jax.nn.softmax(logits, axis=-1).astype(v.dtype)
  return jnp.einsum(f"bhqk,{kv}->bqhd", weights, v)


def _pallas_for_platform(*operands):
  return jax.lax.platform_dependent(
      *operands, cuda=lambda *a: pallas_gpu_attention(*a, interpret=False), tpu=pallas_tpu_attention,
      cpu=lambda *a: pallas_gpu_attention(*a, interpret=True))


def _per_device_share(kernel, operands, *, shared_kv: bool):
  """`kernel(*operands)`, run by each device on its share of the batch when a multi-device mesh is in context
  (the batch split over all of the mesh's axes, as the train step splits it; a shared k and v replicated)."""
  mesh = jax.sharding.get_abstract_mesh()
  if mesh.empty or mesh.size == 1:
    return kernel(*operands)
  batch = jax.sharding.PartitionSpec(mesh.axis_names)
  kv = jax.sharding.PartitionSpec() if shared_kv else batch
  in_specs = (batch, kv, kv) + (batch,) * (len(operands) - 3)
  return jax.shard_map(kernel, mesh=mesh, in_specs=in_specs, out_specs=batch, check_vma=False)(*operands)


def _with_mask_channel(q, k, v, key_padding_mask=None, *, pad_keys_to: int = 1):
  """(q, k, v) in v's dtype with a batch axis on k and v, the keys padded to a multiple of `pad_keys_to`, and the
  mask channel appended where there is a mask or padding."""
  batch, q_len, heads, _ = q.shape
  if k.ndim == 3:
    k = jnp.broadcast_to(k[None], (batch, *k.shape))
    v = jnp.broadcast_to(v[None], (batch, *v.shape))
  dtype = v.dtype
  q, k = q.astype(dtype), k.astype(dtype)
  kv_len = k.shape[1]
  padding = -kv_len % pad_keys_to
  if key_padding_mask is None and not padding:
    return q, k, v
  masked = jnp.zeros((batch, kv_len), bool) if key_padding_mask is None else key_padding_mask
  masked = jnp.pad(masked, ((0, 0), (0, padding)), constant_values=True)
  k, v = (jnp.pad(x, ((0, 0), (0, padding), (0, 0), (0, 0))) for x in (k, v))
  mask_channel = jnp.where(masked, _MASKED_LOGIT, 0.0).astype(dtype)
  q = jnp.concatenate([q, jnp.ones((batch, q_len, heads, 1), dtype)], axis=-1)
  k = jnp.concatenate([k, jnp.broadcast_to(mask_channel[:, :, None, None], (*k.shape[:3], 1))], axis=-1)
  v = jnp.concatenate([v, jnp.zeros((*v.shape[:3], 1), dtype)], axis=-1)
  return q, k, v


def _block_size(length: int, preferred: int) -> int:
  """The largest power of two up to `preferred` that divides `length` (the kernel tiles without remainders)."""
  block = preferred
  while block > 1 and length % block:
    block //= 2
  return block


def pallas_gpu_attention(q, k, v, key_padding_mask=None, *, interpret: bool = False):
  """`attention` through the Pallas GPU kernel (Triton); `interpret` runs it in the Pallas interpreter."""
  from jax.experimental.pallas.ops.gpu import attention as gpu_kernel

  head_dim, q_len = q.shape[-1], q.shape[1]
  q, k, v = _with_mask_channel(q, k, v, key_padding_mask)
  kv_len = k.shape[1]
  padded = max(_GPU_MIN_HEAD_DIM, 1 << math.ceil(math.log2(q.shape[-1])))
  pad = [(0, 0)] * 3 + [(0, padded - q.shape[-1])]
  q, k, v = (jnp.pad(x, pad) for x in (q, k, v))
  # The backward kernel gives each program one block of keys (dk, dv) and one of queries (dq): as many of each.
  backward_blocks = max(1, min(q_len, kv_len) // 32)
  while q_len % backward_blocks or kv_len % backward_blocks:
    backward_blocks -= 1
  blocks = gpu_kernel.BlockSizes(
      block_q=_block_size(q_len, 128), block_k=_block_size(kv_len, 128),
      block_q_dq=q_len // backward_blocks, block_kv_dkv=kv_len // backward_blocks,
      block_q_dkv=_block_size(q_len, 32), block_kv_dq=_block_size(kv_len, 32))
  out = gpu_kernel.mha(q, k, v, None, sm_scale=1.0, block_sizes=blocks, interpret=interpret)
  return out[..., :head_dim]


def pallas_tpu_attention(q, k, v, key_padding_mask=None):
  """`attention` through the Pallas TPU flash-attention kernel (Mosaic); heads-major inside."""
  from jax.experimental.pallas.ops.tpu import flash_attention as tpu_kernel

  head_dim, q_len = q.shape[-1], q.shape[1]
  q, k, v = _with_mask_channel(q, k, v, key_padding_mask, pad_keys_to=_TPU_KEY_BLOCK)
  block_q = _block_size(q_len, 128)
  blocks = tpu_kernel.BlockSizes(
      block_q=block_q, block_k_major=_TPU_KEY_BLOCK, block_k=_TPU_KEY_BLOCK, block_b=1,
      block_q_major_dkv=block_q, block_k_major_dkv=_TPU_KEY_BLOCK, block_k_dkv=_TPU_KEY_BLOCK, block_q_dkv=block_q,
      block_k_major_dq=_TPU_KEY_BLOCK, block_k_dq=_TPU_KEY_BLOCK, block_q_dq=block_q)
  heads_major = lambda x: jnp.swapaxes(x, 1, 2)
  out = tpu_kernel.flash_attention(heads_major(q), heads_major(k), heads_major(v), sm_scale=1.0, block_sizes=blocks)
  return heads_major(out)[..., :head_dim]
