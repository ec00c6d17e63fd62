"""mcc_jax.ops.attention: the fused Pallas kernels (in the interpreter on CPU) against the XLA attention, and their
lowering for GPUs and TPUs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.pallas import tpu as pltpu

from configs import tiny
from mcc_jax.models.factory import build_mcc
from mcc_jax.ops.attention import attention, pallas_tpu_attention


def _inputs(batch, q_len, kv_len, heads, head_dim, *, shared=False, dtype=jnp.float32, seed=0):
  keys = jax.random.split(jax.random.key(seed), 3)
  kv_shape = (kv_len, heads, head_dim) if shared else (batch, kv_len, heads, head_dim)
  q = jax.random.normal(keys[0], (batch, q_len, heads, head_dim)) / np.sqrt(head_dim)
  return q.astype(dtype), jax.random.normal(keys[1], kv_shape).astype(dtype), \
      jax.random.normal(keys[2], kv_shape).astype(dtype)


def _key_mask(batch, kv_len, seed=3):
  mask = np.random.default_rng(seed).random((batch, kv_len)) < 0.4
  mask[-1] = True  # a row with every key masked attends to all of them
  return jnp.asarray(mask)


@pytest.mark.parametrize("head_dim", [4, 32])
@pytest.mark.parametrize("shared, masked", [(False, False), (False, True), (True, False)])
def test_pallas_matches_xla(head_dim, shared, masked):
  q, k, v = _inputs(3, 64, 32, 2, head_dim, shared=shared)
  mask = _key_mask(3, 32) if masked else None
  want = attention(q, k, v, key_padding_mask=mask, implementation="xla")
  got = attention(q, k, v, key_padding_mask=mask, implementation="pallas")
  assert got.shape == want.shape == q.shape
  np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-5)


def test_masked_keys_get_no_weight():
  q, k, v = _inputs(2, 16, 16, 2, 8)
  mask = jnp.zeros((2, 16), bool).at[:, 5:].set(True)
  got = attention(q, k, v.at[:, 5:].set(1e3), key_padding_mask=mask, implementation="pallas")
  want = attention(q[:, :, :, :], k[:, :5], v[:, :5], implementation="xla")
  np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-5)


def test_pallas_gradients_match_xla():
  q, k, v = _inputs(2, 32, 16, 2, 8)
  mask = _key_mask(2, 16)
  weights = jax.random.normal(jax.random.key(9), q.shape)

  def loss(implementation, q, k, v):
    return jnp.sum(weights * attention(q, k, v, key_padding_mask=mask, implementation=implementation))

  want = jax.grad(lambda *a: loss("xla", *a), argnums=(0, 1, 2))(q, k, v)
  got = jax.grad(lambda *a: loss("pallas", *a), argnums=(0, 1, 2))(q, k, v)
  for g, w in zip(got, want):
    np.testing.assert_allclose(g, w, atol=1e-5, rtol=1e-4)


def test_pallas_bfloat16_stays_close_to_float32():
  q, k, v = _inputs(2, 64, 64, 2, 32)
  want = attention(q, k, v, implementation="xla")
  got = attention(*(x.astype(jnp.bfloat16) for x in (q, k, v)), implementation="pallas")
  assert got.dtype == jnp.bfloat16
  assert float(jnp.linalg.norm(got.astype(jnp.float32) - want) / jnp.linalg.norm(want)) < 1e-2


def test_unknown_implementation_is_refused():
  q, k, v = _inputs(1, 4, 4, 1, 4)
  with pytest.raises(ValueError, match="attention implementation"):
    attention(q, k, v, implementation="flash")


@pytest.mark.parametrize("masked", [False, True])
def test_tpu_kernel_matches_xla(masked):
  """The TPU kernel in the TPU interpreter: 64 keys become one 128-key tile, the padding masked."""
  q, k, v = _inputs(2, 64, 64, 2, 8, shared=True)
  mask = _key_mask(2, 64) if masked else None
  want = attention(q, k, v, key_padding_mask=mask, implementation="xla")
  with pltpu.force_tpu_interpret_mode():
    got = pallas_tpu_attention(q, k, v, mask & ~jnp.all(mask, -1, keepdims=True) if masked else None)
    grads = jax.grad(lambda q: jnp.sum(pallas_tpu_attention(q, k, v) ** 2))(q)
  np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-5)
  want_grads = jax.grad(lambda q: jnp.sum(attention(q, k, v, implementation="xla") ** 2))(q)
  np.testing.assert_allclose(grads, want_grads, atol=1e-5, rtol=1e-4)



@pytest.mark.parametrize("shared", [False, True])
def test_pallas_under_a_mesh_runs_per_device_share(shared):
  """Under a mesh context (as the train step traces) the kernel runs per device on its share of the batch: the
  lowered program holds it inside a shard_map, and the result equals the unsplit one."""
  from mcc_jax.training import sharding
  mesh = sharding.make_mesh(4, 2)
  q, k, v = _inputs(8, 32, 16, 2, 8, shared=shared)
  mask = _key_mask(8, 16)
  batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(sharding.BATCH_AXES))
  kv = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()) if shared else batch

  def split(q, k, v, mask):
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
      return attention(q, k, v, key_padding_mask=mask, implementation="pallas")

  fn = jax.jit(split, in_shardings=(batch, kv, kv, batch), out_shardings=batch)
  assert "shard_map" in str(jax.make_jaxpr(split)(q, k, v, mask))
  got = fn(q, k, v, mask)
  want = attention(q, k, v, key_padding_mask=mask, implementation="xla")
  np.testing.assert_allclose(got, want, atol=2e-6, rtol=1e-5)

_PAPER_SHAPES = [(1024, 4, False), (256, 4, False), (1024, 32, True)]


def _lowered(platform, kv_len, head_dim, masked, *, grad):
  q, k, v = _inputs(2, 1024, kv_len, 8, head_dim, dtype=jnp.bfloat16)
  mask = _key_mask(2, kv_len) if masked else None

  def loss(q, k, v):
    out = attention(q, k, v, key_padding_mask=mask, implementation="pallas")
    return jnp.sum(out.astype(jnp.float32))

  fn = jax.grad(loss, argnums=(0, 1, 2)) if grad else loss
  return jax.jit(fn).trace(q, k, v).lower(lowering_platforms=(platform,)).as_text()


@pytest.mark.parametrize("kv_len, head_dim, masked", _PAPER_SHAPES)
def test_pallas_lowers_to_a_triton_kernel_for_gpus(kv_len, head_dim, masked):
  """The paper's shapes (1024 tokens, 8 heads of 4 (motion) or 32 (appearance), 256 to 1024 codes), forward and
  backward, go through the Pallas -> Triton lowering for CUDA; compiling the Triton IR needs a GPU and is not
  checked here."""
  assert _lowered("cuda", kv_len, head_dim, masked, grad=False).count("__gpu$xla.gpu.triton") == 1
  # the backward pass adds its preprocessing kernel and the backward kernel
  assert _lowered("cuda", kv_len, head_dim, masked, grad=True).count("__gpu$xla.gpu.triton") == 3


@pytest.mark.parametrize("kv_len, head_dim, masked", _PAPER_SHAPES)
def test_pallas_lowers_to_mosaic_kernels_for_tpus(kv_len, head_dim, masked):
  """As above for TPUs (Mosaic); `benchmarks/aot_memory.py` compiles the whole train step with them for a TPU
  topology where libtpu is installed."""
  assert _lowered("tpu", kv_len, head_dim, masked, grad=False).count("tpu_custom_call") >= 1
  assert _lowered("tpu", kv_len, head_dim, masked, grad=True).count("tpu_custom_call") >= 3


def test_mcc_with_pallas_attention_matches_xla():
  config = tiny.get_config().model
  rng = np.random.default_rng(0)
  source, driving = (rng.uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32) for _ in range(2))
  outputs = {}
  for implementation in ("xla", "pallas"):
    model = build_mcc(config, attention=implementation, seed=1)
    model.eval()
    outputs[implementation] = np.asarray(model.reconstruct(source, driving)["image"])
  np.testing.assert_allclose(outputs["pallas"], outputs["xla"], atol=1e-4, rtol=1e-4)
