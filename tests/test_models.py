"""The tiny-config MCC end to end: output shapes, jit caching, gradients, BatchNorm modes and input checks."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import tiny
from mcc_jax.models import mcc as mcc_module
from mcc_jax.models.factory import build_discriminator, build_mcc
from mcc_jax.models.quantizer import VectorQuantizer

B = 2
CFG = tiny.get_config().model
SIZE = CFG.generator["img_size"]
K = CFG.motion_estimator["num_kp"]
FLOW = CFG.generator["flow_size"]
NUM_SCALES = len(CFG.generator["ch_mult"])


def _images(seed):
  keys = jax.random.split(jax.random.key(seed))
  return tuple(jax.random.uniform(k, (B, SIZE, SIZE, 3), minval=-1.0, maxval=1.0) for k in keys)


def _batch_stats(model):
  return jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))


def _assert_finite(tree):
  for leaf in jax.tree.leaves(tree):
    assert np.all(np.isfinite(np.asarray(leaf)))


def _assert_shape(x, shape, dtype=jnp.float32):
  assert x.shape == shape and x.dtype == dtype, (x.shape, x.dtype)


@pytest.fixture(scope="module")
def model():
  """Built once per module."""
  return build_mcc(CFG)


@pytest.fixture(scope="module")
def inputs():
  return _images(1)


@pytest.fixture(scope="module")
def recon(model, inputs):
  return model.reconstruct(*inputs)


def _loss(params, graphdef, rest, source, driving):
  """The training loss; `copy=True` gives BatchNorm fresh Variables of the grad trace to update."""
  model = nnx.merge(graphdef, params, rest, copy=True)
  model.train()
  out = model.forward(source, driving, gt=driving, inference=False)
  vq = sum(out["codebook_loss_motion_list"]) + sum(out["codebook_loss_app_list"])
  loss = jnp.mean(jnp.abs(out["out"] - driving)) + vq + jnp.mean(jnp.abs(out["out_lr"][0] - driving))
  return loss, (out, nnx.state(model, nnx.BatchStat))


@functools.partial(jax.jit, static_argnums=0)
@chex.assert_max_traces(n=1)
def _train_step(graphdef, params, rest, source, driving):
  return jax.value_and_grad(_loss, has_aux=True)(params, graphdef, rest, source, driving)


@pytest.fixture(scope="module")
def split(model):
  return nnx.split(model, nnx.Param, ...)


@pytest.fixture(scope="module")
def train(split, inputs):
  """One training-mode loss, its gradients w.r.t. every parameter, the outputs and the new batch statistics."""
  (loss, (out, stats)), grads = _train_step(*split, *inputs)
  return dict(loss=loss, out=out, stats=stats, grads=grads)


def test_keypoints(recon):
  for kp in (recon["kp_source"], recon["kp_driving"]):
    _assert_shape(kp["value"], (B, K, 2))
    _assert_shape(kp["jacobian"], (B, K, 2, 2))
    assert np.all(np.abs(kp["value"]) <= 1)


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_dense_motion(recon, train, mode):
  motion = recon["motion"] if mode == "eval" else train["out"]["motion"]
  grid = (B, FLOW, FLOW)
  _assert_shape(motion["deformation"], (*grid, 2))
  _assert_shape(motion["occlusion_map"], (*grid, 1))
  _assert_shape(motion["driving_kp_heatmap"], (*grid, K))
  _assert_shape(motion["mask"], (*grid, K + 1))
  _assert_shape(motion["sparse_motion"], (B, K + 1, FLOW, FLOW, 2))
  _assert_shape(motion["sparse_deformed"], (B, K + 1, FLOW, FLOW, 3))
  occlusion = np.asarray(motion["occlusion_map"])
  assert np.all((occlusion > 0) & (occlusion < 1))
  np.testing.assert_allclose(np.sum(motion["mask"], axis=-1), 1.0, rtol=1e-5)
  _assert_finite(motion)


def test_reconstruct_outputs(recon):
  _assert_shape(recon["image"], (B, SIZE, SIZE, 3))
  assert len(recon["deformations"]) == NUM_SCALES + 1
  assert len(recon["occlusions"]) == NUM_SCALES
  for flow in recon["deformations"]:
    _assert_shape(flow, (B, FLOW, FLOW, 2))
  for occlusion in recon["occlusions"]:
    _assert_shape(occlusion, (B, FLOW, FLOW, 1))
  _assert_finite(recon)


def test_training_forward_outputs(train):
  out = train["out"]
  _assert_shape(out["out"], (B, SIZE, SIZE, 3))
  assert len(out["out_lr"]) == 1
  _assert_shape(out["out_lr"][0], (B, SIZE, SIZE, 3))
  assert len(out["motion_recon_list"]) == NUM_SCALES
  for recon_flow in out["motion_recon_list"]:
    _assert_shape(recon_flow, (B, FLOW, FLOW, 2))
  for name in ("codebook_loss_motion_list", "codebook_loss_app_list"):
    assert len(out[name]) == NUM_SCALES
    for loss in out[name]:
      _assert_shape(loss, ())
  _assert_finite(out)
  assert np.isfinite(train["loss"])


def test_discriminator():
  disc = build_discriminator(CFG)
  logits = nnx.jit(lambda d, x: d(x))(disc, _images(2)[0])
  _assert_shape(logits, (B, SIZE // 8 - 2, SIZE // 8 - 2, 1))
  _assert_finite(logits)


def test_vector_quantizer_straight_through():
  vq = VectorQuantizer(16, 4, 0.25, rngs=nnx.Rngs(params=0))
  z = 0.1 * jax.random.normal(jax.random.key(3), (2, 3, 3, 4))
  zq, loss, stats = vq(z, num_codes=8)
  book = np.asarray(vq.embedding.weight[...])
  distances = np.sum((np.asarray(z)[..., None, :] - book) ** 2, axis=-1)
  assert np.any(np.argmin(distances, axis=-1) >= 8)
  indices = np.argmin(distances[..., :8], axis=-1)
  np.testing.assert_array_equal(stats["indices"], indices)
  np.testing.assert_allclose(zq, book[indices], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(loss, 1.25 * np.mean((book[indices] - z) ** 2), rtol=1e-5)
  grad = jax.grad(lambda z: jnp.sum(vq(z, num_codes=8)[0]))(z)
  np.testing.assert_array_equal(grad, np.ones_like(z))


def test_train_step_does_not_retrace(split, train):
  """Same shapes, new values: the jitted step is reused (chex raises on a second trace)."""
  assert _train_step._cache_size() == 1
  (loss, _), _ = _train_step(*split, *_images(5))
  assert _train_step._cache_size() == 1
  assert np.isfinite(loss) and loss != train["loss"]


def test_reconstruct_does_not_retrace(model, recon):
  cache_size = getattr(mcc_module._reconstruct, "_cache_size", None)
  if cache_size is None:
    pytest.skip("jax.jit exposes no _cache_size here")
  before = cache_size()
  image = model.reconstruct(*_images(6))["image"]
  assert cache_size() == before
  assert not np.allclose(image, recon["image"])


def test_gradients(split, train):
  grads = train["grads"]
  _assert_finite(grads)
  g = nnx.merge(split[0], grads, split[2])
  for name, param in [
      ("decoder output conv", g.generator.generator.blocks[-1].kernel),
      ("motion codebook", g.generator.quantize_motion.embedding.weight),
      ("appearance codebook", g.generator.quantize_app.embedding.weight),
      ("keypoint conv", g.motion_estimator.kp_detector.kp.kernel)]:
    assert np.any(np.asarray(param[...]) != 0), name


def test_batch_norm_stats_update_in_training(model, train):
  before = jax.tree.leaves(_batch_stats(model))
  after = jax.tree.leaves(jax.tree.map(np.asarray, train["stats"]))
  assert len(before) == len(after) > 0
  for old, new in zip(before, after):
    assert not np.allclose(old, new)


def test_reconstruct_keeps_batch_norm_stats(model, inputs):
  before = _batch_stats(model)
  model.reconstruct(*inputs)
  jax.tree.map(np.testing.assert_array_equal, _batch_stats(model), before)


@pytest.mark.parametrize("shape", [(B, SIZE // 2, SIZE // 2, 3), (B, 3, SIZE, SIZE), (SIZE, SIZE, 3)])
def test_reconstruct_rejects_bad_input(model, shape):
  good = jnp.zeros((B, SIZE, SIZE, 3))
  with pytest.raises(ValueError, match=r"source must be NHWC .* got"):
    model.reconstruct(jnp.zeros(shape), good)
  with pytest.raises(ValueError, match=r"driving must be NHWC"):
    model.reconstruct(good, jnp.zeros(shape))


def test_reconstruct_rejects_batch_mismatch(model):
  with pytest.raises(ValueError, match="batch sizes differ"):
    model.reconstruct(jnp.zeros((B, SIZE, SIZE, 3)), jnp.zeros((B + 1, SIZE, SIZE, 3)))
