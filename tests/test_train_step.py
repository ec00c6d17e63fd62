"""The jitted training iteration on a reduced tiny model: updates, EMA, no recompiles, and sharding invariance."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import tiny
from mcc_jax.models.factory import build_discriminator, build_mcc
from mcc_jax.models.vgg import VGG19Features
from mcc_jax.training import sharding
from mcc_jax.training.objective import LossWeights
from mcc_jax.training.optimizers import learning_rate
from mcc_jax.training.train_state import Graphdefs, create_train_state
from mcc_jax.training.train_step import jit_train_step

WEIGHTS = LossWeights(perceptual_scales=(1.0, 0.5, 0.25))
BATCH = 8


def _config():
  """configs/tiny.py with one transformer layer per codebook: the same code paths, a shorter compile."""
  config = tiny.get_config().model
  config.generator.update(n_layers_motion=1, n_layers_app=1)
  return config


@pytest.fixture(scope="module")
def networks():
  config = _config()
  mcc, disc = build_mcc(config), build_discriminator(config)
  vgg = VGG19Features(rngs=nnx.Rngs(1))
  graphdefs = Graphdefs(nnx.graphdef(mcc), nnx.graphdef(disc), nnx.graphdef(vgg))
  return mcc, disc, graphdefs, nnx.state(vgg)


def _fresh_state(networks):
  mcc, disc, _, _ = networks
  return create_train_state(mcc, disc, jax.random.key(0))


def _batches(count):
  rng = np.random.default_rng(0)
  return [{name: rng.integers(0, 256, (BATCH, 64, 64, 3), dtype=np.uint8) for name in ("source", "driving")}
          for _ in range(count)]


def _host(state):
  """A numpy copy (the step donates its input state)."""
  to_numpy = lambda x: np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
  return jax.tree.map(to_numpy, state)


@pytest.fixture(scope="module")
def single_device_run(networks):
  """States before and after each of two iterations, their metrics, and the compiled step."""
  _, _, graphdefs, vgg_state = networks
  step = jit_train_step(graphdefs, with_gan=True, weights=WEIGHTS)
  state = _fresh_state(networks)
  states, history = [_host(state)], []
  for batch in _batches(2):
    state, metrics = step(state, batch, vgg_state)
    states.append(_host(state))
    history.append({k: float(v) for k, v in metrics.items()})
  return states, history, step


def test_learning_rate_schedule():
  steps = jnp.asarray([0, 199_999, 200_000, 224_999, 225_000])
  np.testing.assert_allclose(learning_rate(steps, base=8e-5), [8e-5, 8e-5, 4e-5, 4e-5, 2e-5], rtol=1e-6)


def test_step_updates_everything(single_device_run):
  states, history, step = single_device_run
  before, after = states[0], states[-1]
  assert int(after.step) == 2
  assert step._cache_size() == 1
  for name in ("mcc_params", "disc_params", "mcc_rest", "disc_rest"):
    changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), getattr(before, name), getattr(after, name))
    assert any(jax.tree.leaves(changed)), name
  for metrics in history:
    assert all(np.isfinite(v) for v in metrics.values())
    assert 0 <= metrics["d_weight"] <= np.float32(0.8) and metrics["l_g_total"] > 0


def test_ema_follows_the_generator(single_device_run):
  """ema_t = 0.995 ema_{t-1} + 0.005 w_t, starting from the initial generator; the motion estimator has none."""
  states, _, _ = single_device_run
  ema = states[0].mcc_params["generator"]
  for state in states[1:]:
    ema = jax.tree.map(lambda e, w: 0.995 * e + 0.005 * w, ema, state.mcc_params["generator"])
    jax.tree.map(lambda want, got: np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9), ema, state.ema)
  assert "motion_estimator" not in states[-1].ema


@pytest.mark.parametrize("data,fsdp", [(8, 1), (4, 2)])
def test_sharded_step_matches_single_device(data, fsdp, networks, single_device_run):
  _, _, graphdefs, vgg_state = networks
  _, reference, _ = single_device_run
  mesh = sharding.make_mesh(data, fsdp)
  state = _fresh_state(networks)
  state_sharding = sharding.state_sharding(state, mesh)
  step = jit_train_step(graphdefs, with_gan=True, weights=WEIGHTS, state_sharding=state_sharding,
                        batch_sharding=sharding.batch_sharding(mesh), replicated=sharding.replicated(mesh))
  state = jax.device_put(state, state_sharding)
  vgg_state = jax.device_put(vgg_state, sharding.replicated(mesh))
  # The first iteration differs only by float reduction order; Adam's first update (about lr * sign(grad))
  # turns those differences into parameter differences, so the second iteration agrees more loosely.
  for iteration, (expected, batch, rtol) in enumerate(zip(reference, _batches(2), (2e-5, 2e-3))):
    batch = jax.device_put(batch, sharding.batch_sharding(mesh))
    state, metrics = step(state, batch, vgg_state)
    for name in ("l_g_total", "l_g_pix", "l_g_percep", "l_d_real", "l_d_fake", "l_equivariance_value"):
      np.testing.assert_allclose(float(metrics[name]), expected[name], rtol=rtol, err_msg=f"{name} {iteration}")
  assert step._cache_size() == 1
  if fsdp > 1:
    specs = [leaf.sharding.spec for leaf in jax.tree.leaves(state.mcc_params)]
    assert any("fsdp" in spec for spec in specs)
