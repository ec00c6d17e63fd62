"""`model.remat` rematerializes blocks without changing any number: loss, gradients and BatchNorm updates.

The tiny config cut to two scales, one block per level and one transformer layer per codebook, to keep two
compilations of the training gradient short; every rematerialized block kind is still there.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import tiny
from mcc_jax.models.factory import build_mcc

B = 2
SIZE = 32


def _config(remat: bool):
  config = tiny.get_config().model
  config.remat = remat
  config.motion_estimator["kp_detector"].update(num_blocks=2)
  config.motion_estimator["dense_motion"].update(num_blocks=2)
  config.generator.update(img_size=SIZE, ch_mult=(1, 2), res_blocks=1, attn_resolutions=(SIZE // 2,), emb_dim=64,
                          flow_size=SIZE // 4, n_layers_motion=1, n_layers_app=1)
  return config


def _loss(params, graphdef, rest, source, driving):
  model = nnx.merge(graphdef, params, rest, copy=True)
  model.train()
  out = model.forward(source, driving, gt=driving, inference=False)
  vq = sum(out["codebook_loss_motion_list"]) + sum(out["codebook_loss_app_list"])
  recon = sum(jnp.mean(jnp.abs(r)) for r in out["motion_recon_list"])
  loss = jnp.mean(jnp.abs(out["out"] - driving)) + jnp.mean(jnp.abs(out["out_lr"][0] - driving)) + vq + recon
  return loss, nnx.state(model, nnx.BatchStat)


def _primitive_names(jaxpr, names: set) -> set:
  for eqn in jaxpr.eqns:
    names.add(eqn.primitive.name)
    for value in eqn.params.values():
      for sub in value if isinstance(value, (list, tuple)) else (value,):
        sub = getattr(sub, "jaxpr", sub)
        if hasattr(sub, "eqns"):
          _primitive_names(sub, names)
  return names


@pytest.fixture(scope="module")
def runs():
  keys = jax.random.split(jax.random.key(7))
  source, driving = (jax.random.uniform(k, (B, SIZE, SIZE, 3), minval=-1.0, maxval=1.0) for k in keys)
  results = {}
  for remat in (False, True):
    model = build_mcc(_config(remat), seed=0)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    traced = jax.jit(jax.value_and_grad(_loss, has_aux=True), static_argnums=1).trace(
        params, graphdef, rest, source, driving)
    (loss, stats), grads = traced.lower().compile()(params, rest, source, driving)
    results[remat] = dict(model=model, loss=loss, stats=stats, grads=grads,
                          primitives=_primitive_names(traced.jaxpr.jaxpr, set()))
  return results


def test_remat_flag_reaches_the_blocks(runs):
  model = runs[True]["model"]
  assert all([model.remat, model.generator.remat, model.generator.encoder.remat, model.generator.generator.remat,
              model.motion_estimator.kp_detector.predictor.encoder.remat,
              model.motion_estimator.dense_motion_network.hourglass.decoder.remat])
  assert not runs[False]["model"].generator.remat


def test_remat_changes_the_program(runs):
  """Without this, the equality below could hold because the flag did nothing."""
  remat_primitives = {"remat2", "checkpoint"}
  assert runs[True]["primitives"] & remat_primitives
  assert not runs[False]["primitives"] & remat_primitives


def test_remat_same_loss_and_gradients(runs):
  """Every gradient entry within 1e-6 of the largest gradient entry (biases feeding a norm layer have a zero
  gradient in exact arithmetic, so per-tensor relative errors of their rounding noise mean nothing)."""
  off, on = runs[False], runs[True]
  assert np.isfinite(off["loss"])
  np.testing.assert_allclose(on["loss"], off["loss"], rtol=1e-6)
  flat_off = dict(nnx.to_flat_state(off["grads"]))
  flat_on = dict(nnx.to_flat_state(on["grads"]))
  assert flat_off.keys() == flat_on.keys()
  grads_off = np.concatenate([np.ravel(flat_off[path][...]) for path in flat_off])
  grads_on = np.concatenate([np.ravel(flat_on[path][...]) for path in flat_off])
  scale = np.max(np.abs(grads_off))
  assert scale > 0
  assert np.max(np.abs(grads_on - grads_off)) <= 1e-6 * scale
  assert np.linalg.norm(grads_on - grads_off) <= 1e-6 * np.linalg.norm(grads_off)


def test_remat_same_batch_norm_updates(runs):
  flat_off = dict(nnx.to_flat_state(runs[False]["stats"]))
  flat_on = dict(nnx.to_flat_state(runs[True]["stats"]))
  assert flat_off.keys() == flat_on.keys() and len(flat_off) > 0
  for path, stat in flat_off.items():
    np.testing.assert_allclose(flat_on[path][...], stat[...], rtol=1e-6, atol=1e-7, err_msg=str(path))
