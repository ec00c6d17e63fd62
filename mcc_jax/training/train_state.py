"""Everything that defines a training run's position, as one pytree."""
import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx

from mcc_jax.training.optimizers import adam


@flax.struct.dataclass
class TrainState:
  """step counts finished iterations. mcc_* are the motion estimator + generator (`net_motion_estimator` and
  `net_g`), disc_* the discriminator; *_rest holds BatchNorm statistics and buffers; ema is the generator's EMA."""
  step: jnp.ndarray
  rng: jnp.ndarray
  mcc_params: nnx.State
  mcc_rest: nnx.State
  disc_params: nnx.State
  disc_rest: nnx.State
  ema: nnx.State
  opt_g: object
  opt_d: object


@flax.struct.dataclass
class Graphdefs:
  mcc: object = flax.struct.field(pytree_node=False)
  disc: object = flax.struct.field(pytree_node=False)
  vgg: object = flax.struct.field(pytree_node=False)


def create_train_state(mcc, disc, rng) -> TrainState:
  """A fresh state from built (or loaded) networks; the EMA starts as a copy of the generator."""
  _, mcc_params, mcc_rest = nnx.split(mcc, nnx.Param, ...)
  _, disc_params, disc_rest = nnx.split(disc, nnx.Param, ...)
  tx = adam()
  return TrainState(
      step=jnp.zeros((), jnp.int32), rng=rng, mcc_params=mcc_params, mcc_rest=mcc_rest,
      disc_params=disc_params, disc_rest=disc_rest, ema=jax.tree.map(jnp.copy, mcc_params["generator"]),
      opt_g=tx.init(mcc_params), opt_d=tx.init(disc_params))
