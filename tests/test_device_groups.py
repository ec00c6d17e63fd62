"""Per-group (official per-GPU) BatchNorm statistics and adaptive GAN weight, on the tiny model."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import tiny
from mcc_jax import losses
from mcc_jax.models.factory import build_discriminator, build_mcc
from mcc_jax.models.vgg import VGG19Features
from mcc_jax.training import device_groups
from mcc_jax.training.objective import LossWeights, discriminator_objective, generator_objective

WEIGHTS = LossWeights(perceptual_scales=(1.0, 0.5, 0.25))
STATIC = ("mcc_graphdef", "disc_graphdef", "vgg_graphdef", "with_gan", "weights")


@pytest.fixture(scope="module")
def setup():
  config = tiny.get_config().model
  config.generator.update(n_layers_motion=1, n_layers_app=1)
  mcc_def, mcc_params, mcc_rest = nnx.split(build_mcc(config), nnx.Param, ...)
  disc_def, disc_state = nnx.split(build_discriminator(config))
  vgg_def, vgg_state = nnx.split(VGG19Features(rngs=nnx.Rngs(1)))
  rng = np.random.default_rng(0)
  images = [jnp.asarray(rng.uniform(-1, 1, (4, 64, 64, 3)), jnp.float32) for _ in range(2)]
  transform = losses.RandomTPS.sample(jax.random.key(3), 4)
  arguments = dict(mcc_graphdef=mcc_def, mcc_rest=mcc_rest, disc_graphdef=disc_def, disc_state=disc_state,
                   vgg_graphdef=vgg_def, vgg_state=vgg_state, with_gan=True, weights=WEIGHTS)
  return mcc_params, arguments, images, transform


def _half(transform, part):
  rows = slice(2 * part, 2 * part + 2)
  return losses.RandomTPS(transform.theta[rows], transform.control_points, transform.control_params[rows])


def test_group_count():
  assert device_groups.group_count(16, 0) == 1
  assert device_groups.group_count(16, 4) == 4
  with pytest.raises(ValueError, match="multiple of the BatchNorm group size"):
    device_groups.group_count(6, 4)


def test_generator_groups_are_separate_batches(setup):
  """Two groups of 2 = the mean of two separate runs; the BatchNorm statistics are group 0's (DDP's rank 0)."""
  mcc_params, arguments, (source, driving), transform = setup
  grouped = jax.jit(device_groups.grouped_generator_objective(generator_objective, 2), static_argnames=STATIC)
  single = jax.jit(generator_objective, static_argnames=STATIC)
  total, (terms, mcc_stats, disc_stats, image) = grouped(mcc_params, source=source, driving=driving,
                                                         transform=transform, **arguments)
  halves = [single(mcc_params, source=source[2 * k:2 * k + 2], driving=driving[2 * k:2 * k + 2],
                   transform=_half(transform, k), **arguments) for k in range(2)]
  np.testing.assert_allclose(total, (halves[0][0] + halves[1][0]) / 2, rtol=1e-5)
  for name in ("l_g_pix", "l_g_percep", "d_weight", "l_g_gan", "recon_grad_norm", "gan_grad_norm", "l_kpd",
               "l_equivariance_value"):
    # Gradient norms go through more float32 reductions, which vmap orders differently.
    rtol = 1e-3 if "grad_norm" in name else 1e-5
    np.testing.assert_allclose(terms[name], (halves[0][1][0][name] + halves[1][1][0][name]) / 2, rtol=rtol,
                               err_msg=name)
  # The halves' last-layer gradients (the adaptive weight's inputs) differ: each group computes its own.
  assert not np.isclose(halves[0][1][0]["recon_grad_norm"], halves[1][1][0]["recon_grad_norm"], rtol=1e-3)
  for ours, first in ((mcc_stats, halves[0][1][1]), (disc_stats, halves[0][1][2])):
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), ours, first)
  np.testing.assert_allclose(image, jnp.concatenate([halves[0][1][3], halves[1][1][3]]), rtol=1e-3, atol=2e-4)


def test_discriminator_groups_are_separate_batches(setup):
  _, arguments, (real, fake), _ = setup
  disc_def = arguments["disc_graphdef"]
  disc_params, disc_rest = nnx.split_state(arguments["disc_state"], nnx.Param, ...)
  grouped = jax.jit(device_groups.grouped_discriminator_objective(discriminator_objective, 2), static_argnums=1)
  single = jax.jit(discriminator_objective, static_argnums=1)
  total, (terms, stats) = grouped(disc_params, disc_def, disc_rest, real, fake)
  halves = [single(disc_params, disc_def, disc_rest, real[2 * k:2 * k + 2], fake[2 * k:2 * k + 2]) for k in range(2)]
  np.testing.assert_allclose(total, (halves[0][0] + halves[1][0]) / 2, rtol=1e-5)
  np.testing.assert_allclose(terms["l_d_real"], (halves[0][1][0]["l_d_real"] + halves[1][1][0]["l_d_real"]) / 2,
                             rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), stats, halves[0][1][1])
