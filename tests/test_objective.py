"""One official training iteration's losses, gradient norms and BatchNorm statistics against the fixture."""
import jax
import jax.numpy as jnp
import pytest
from flax import nnx

import parity_support as ps
from conftest import report_parity
from mcc_jax.convert import export_state_dict, load_state_dict, mcc_from_state_dicts
from mcc_jax.convert.official import paper_model_config
from mcc_jax.models.factory import build_discriminator
from mcc_jax.training.objective import discriminator_objective, generator_objective

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not ps.exists(), reason=ps.skip_reason())]
BOUND = 1e-8
PYRAMID_BOUND = 1e-7  # see tests/test_losses.py
# Gradients through the perceptual loss carry the pyramid kernels' ulp differences a little further.
GRADIENT_BOUND = 1e-6


@pytest.fixture(scope="module")
def step_outputs():
  fixture = ps.load_fixture()
  with jax.enable_x64(True):
    f64 = dict(dtype=jnp.float64)
    model = mcc_from_state_dicts(ps.filled_state_dict("net_g"), ps.filled_state_dict("net_motion_estimator"), **f64)
    disc = nnx.eval_shape(lambda: build_discriminator(paper_model_config(), dtype=jnp.float64,
                                                      param_dtype=jnp.float64))
    load_state_dict(disc, ps.filled_state_dict("net_d"), name="net_d")
    vgg = ps.filled_vgg19_features(jnp.float64)
    transform = ps.fixture_transform(fixture)
    source = jnp.asarray(ps.nhwc(fixture["train/source"]), jnp.float64)
    driving = jnp.asarray(ps.nhwc(fixture["train/driving"]), jnp.float64)
    mcc_def, mcc_params, mcc_rest = nnx.split(model, nnx.Param, ...)
    disc_def, disc_params, disc_rest = nnx.split(disc, nnx.Param, ...)
    vgg_def, vgg_state = nnx.split(vgg)

    # Arrays go in as arguments: closed over, they would become constants and XLA would take minutes to compile.
    objective = jax.jit(generator_objective, static_argnames=("mcc_graphdef", "disc_graphdef", "vgg_graphdef",
                                                              "with_gan"))
    arguments = dict(mcc_graphdef=mcc_def, mcc_rest=mcc_rest, disc_graphdef=disc_def,
                     disc_state=nnx.merge_state(disc_params, disc_rest), vgg_graphdef=vgg_def, vgg_state=vgg_state,
                     source=source, driving=driving, transform=transform)
    total_gan, (terms, mcc_stats, disc_stats, image) = objective(mcc_params, **arguments, with_gan=True)
    total_plain, _ = objective(mcc_params, **arguments, with_gan=False)
    _, (d_terms, disc_stats_after) = jax.jit(discriminator_objective, static_argnums=1)(
        disc_params, disc_def, disc_stats, driving, image)
    nnx.update(model, mcc_stats)
    nnx.update(disc, disc_stats_after)
    state = {f"net_motion_estimator/{k}": v for k, v in export_state_dict(model.motion_estimator).items()}
    state.update({f"net_d/{k}": v for k, v in export_state_dict(disc).items()})
    return fixture, {**terms, **d_terms, "l_g_total_iter6000": total_gan, "l_g_total_iter100": total_plain}, state


TERMS = ("l_g_pix", "l_g_percep", "l_g_gan", "d_weight", "l_g_gan_weighted", "recon_grad_norm", "gan_grad_norm",
         "l_g_motion_codebook_code", "l_g_motion_codebook_recon", "l_g_pix_lr_0", "l_g_percep_lr_0",
         "l_g_app_codebook_code", "l_equivariance_value", "l_equivariance_jacobian", "l_kpd", "l_g_total_iter6000",
         "l_g_total_iter100", "l_d_real", "l_d_fake", "out_d_real", "out_d_fake")


@pytest.mark.parametrize("name", TERMS)
def test_loss_term(name, step_outputs):
  fixture, terms, _ = step_outputs
  bound = (GRADIENT_BOUND if "grad_norm" in name else
           PYRAMID_BOUND if "percep" in name or "total" in name else BOUND)
  ps.assert_parity(f"step f64 {name}", terms[name], fixture[f"losses/{name}"], bound)


def test_batch_norm_statistics_after_step(step_outputs):
  fixture, _, state = step_outputs
  prefix = "losses/state_after_step/"
  keys = [k for k in fixture if k.startswith(prefix)]
  assert len(keys) == 28  # the keypoint detector's 10 BatchNorms and the discriminator's 4, mean and var each
  worst = max((ps.rel_error(state[k.removeprefix(prefix)], fixture[k]), k) for k in keys)
  report_parity(f"step f64 BatchNorm statistics after step (worst: {worst[1].split('/', 3)[-1]})", worst[0], BOUND)
  assert worst[0] <= BOUND
