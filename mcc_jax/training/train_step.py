"""One official training iteration as a pure function: generator + motion estimator update, EMA, then (after
`net_d_start_iter`) the discriminator update."""
import functools

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from mcc_jax.io.images import normalize
from mcc_jax import losses
from mcc_jax.training import device_groups
from mcc_jax.training.objective import LossWeights, discriminator_objective, generator_objective
from mcc_jax.training.optimizers import adam, ema_update, learning_rate, with_learning_rate
from mcc_jax.training.train_state import Graphdefs, TrainState


def _global_norm(tree) -> jnp.ndarray:
  return optax.tree.norm(tree)


def train_step(state: TrainState, batch: dict, vgg_state, *, graphdefs: Graphdefs, with_gan: bool,
               base_lr: float = 8e-5, milestones=(200_000, 225_000), ema_decay: float = 0.995,
               weights: LossWeights = LossWeights(), dtype=jnp.float32, bn_group_size: int = 0):
  """batch: uint8 `source` and `driving` (B, H, W, 3). Returns (new state, metrics).

  bn_group_size: 0 computes BatchNorm statistics and the adaptive GAN weight over the global batch; N > 0 over
  groups of N samples, as the official per-GPU training does (see device_groups).
  """
  source = normalize(batch["source"], dtype)
  driving = normalize(batch["driving"], dtype)
  rng = jax.random.fold_in(state.rng, state.step)
  transform = losses.RandomTPS.sample(rng, source.shape[0], dtype=dtype)
  lr = learning_rate(state.step, base=base_lr, milestones=milestones)
  tx = adam()

  groups = device_groups.group_count(source.shape[0], bn_group_size)
  grad_fn = jax.value_and_grad(device_groups.grouped_generator_objective(generator_objective, groups), has_aux=True)
  (_, (terms, mcc_stats, disc_stats, image)), grads = grad_fn(
      state.mcc_params, graphdefs.mcc, state.mcc_rest, graphdefs.disc,
      nnx.merge_state(state.disc_params, state.disc_rest), graphdefs.vgg, vgg_state, source, driving, transform,
      with_gan=with_gan, weights=weights)
  updates, opt_g = tx.update(grads, with_learning_rate(state.opt_g, lr), state.mcc_params)
  mcc_params = optax.apply_updates(state.mcc_params, updates)
  mcc_rest = nnx.merge_state(state.mcc_rest, mcc_stats)
  ema = ema_update(state.ema, mcc_params["generator"], ema_decay)
  metrics = {**terms, "lr": lr, "grad_norm_g": _global_norm(grads["generator"]),
             "grad_norm_m": _global_norm(grads["motion_estimator"])}

  disc_params, disc_rest, opt_d = state.disc_params, state.disc_rest, state.opt_d
  if with_gan:
    disc_rest = nnx.merge_state(disc_rest, disc_stats)
    (_, (d_terms, d_stats)), d_grads = jax.value_and_grad(
        device_groups.grouped_discriminator_objective(discriminator_objective, groups), has_aux=True)(
        disc_params, graphdefs.disc, disc_rest, driving, image)
    d_updates, opt_d = tx.update(d_grads, with_learning_rate(opt_d, lr), disc_params)
    disc_params = optax.apply_updates(disc_params, d_updates)
    disc_rest = nnx.merge_state(disc_rest, d_stats)
    metrics.update(d_terms, grad_norm_d=_global_norm(d_grads))
  new_state = state.replace(step=state.step + 1, mcc_params=mcc_params, mcc_rest=mcc_rest, disc_params=disc_params,
                            disc_rest=disc_rest, ema=ema, opt_g=opt_g, opt_d=opt_d)
  return new_state, metrics


def jit_train_step(graphdefs: Graphdefs, *, with_gan: bool, state_sharding=None, batch_sharding=None,
                   replicated=None, **options):
  """`train_step` compiled for given shardings (None: let jit decide), donating the state. With shardings, the
  step traces under their mesh, so ops that must be split by hand (`mcc_jax.ops.attention`'s kernels) see it."""
  step = functools.partial(train_step, graphdefs=graphdefs, with_gan=with_gan, **options)
  if state_sharding is None:
    return jax.jit(step, donate_argnums=(0,))

  def step_in_mesh(*args):
    with jax.sharding.use_abstract_mesh(batch_sharding.mesh.abstract_mesh):
      return step(*args)

  return jax.jit(step_in_mesh, donate_argnums=(0,), in_shardings=(state_sharding, batch_sharding, replicated),
                 out_shardings=(state_sharding, replicated))
