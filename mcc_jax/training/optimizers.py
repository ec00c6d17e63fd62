"""The official optimisers: Adam (betas 0.9, 0.99) with MultiStepLR, and the generator EMA."""
import jax
import jax.numpy as jnp
import optax


def learning_rate(step, *, base: float, milestones=(200_000, 225_000), gamma: float = 0.5):
  """The learning rate of 1-based iteration `step + 1` (official MultiStepRestartLR, stepped from iteration 2):
  halved at iterations milestones[i] + 1."""
  drops = sum((step >= m).astype(jnp.float32) for m in milestones) if milestones else 0.0
  return base * gamma**drops


def adam(b1: float = 0.9, b2: float = 0.99, eps: float = 1e-8) -> optax.GradientTransformation:
  """Adam whose learning rate the step sets from the global iteration (the discriminator starts late but
  follows the same schedule as the generator, as the official schedulers all step every iteration)."""
  return optax.inject_hyperparams(optax.adam)(learning_rate=0.0, b1=b1, b2=b2, eps=eps)


def with_learning_rate(opt_state, value):
  opt_state.hyperparams["learning_rate"] = jnp.asarray(value, opt_state.hyperparams["learning_rate"].dtype)
  return opt_state


def ema_update(ema, params, decay: float):
  return jax.tree.map(lambda e, p: decay * e + (1 - decay) * p, ema, params)
