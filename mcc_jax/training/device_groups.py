"""The official per-GPU statistics, reproduced by splitting the batch into groups.

The official code trains with DistributedDataParallel on 4 GPUs of 4 samples each and no SyncBatchNorm, so:
- BatchNorm normalises each GPU's 4 samples with their own statistics;
- the adaptive GAN weight is computed on each GPU from its own gradients;
- the losses are each GPU's means, and the gradients are averaged across GPUs (the mean of the group losses);
- DDP broadcasts buffers from rank 0 before every forward, so the running statistics that survive are rank 0's.

`grouped(objective, groups)` reproduces that for any device count: the objective runs on each group under
`jax.vmap` (BatchNorm then reduces within a group), the totals and terms are averaged over groups, and the
BatchNorm statistics of group 0 are kept. The group axis is the leading split of the data-sharded batch, so jit
lays groups on devices without extra communication when the group count is a multiple of the data axis. With
`groups=1` this is the default global-batch behaviour.
"""
import jax
import jax.numpy as jnp

from mcc_jax import losses

TRANSFORM_AXES = losses.RandomTPS(theta=0, control_points=None, control_params=0)


def group_count(batch_size: int, group_size: int) -> int:
  """Number of groups for a per-device group size (0: one global group)."""
  if group_size <= 0:
    return 1
  if batch_size % group_size:
    raise ValueError(f"batch size {batch_size} is not a multiple of the BatchNorm group size {group_size}")
  return batch_size // group_size


def _split(x: jnp.ndarray, groups: int) -> jnp.ndarray:
  return x.reshape(groups, x.shape[0] // groups, *x.shape[1:])


def grouped_generator_objective(objective, groups: int):
  """Wrap `objective.generator_objective` (same signature and outputs) to run per group of samples."""
  if groups == 1:
    return objective

  def run(mcc_params, mcc_graphdef, mcc_rest, disc_graphdef, disc_state, vgg_graphdef, vgg_state, source, driving,
          transform, **kwargs):
    per_group = lambda s, d, t: objective(mcc_params, mcc_graphdef, mcc_rest, disc_graphdef, disc_state,
                                          vgg_graphdef, vgg_state, s, d, t, **kwargs)
    split = lambda x: _split(x, groups)
    transform = losses.RandomTPS(split(transform.theta), transform.control_points, split(transform.control_params))
    totals, (terms, mcc_stats, disc_stats, image) = jax.vmap(per_group, in_axes=(0, 0, TRANSFORM_AXES))(
        split(source), split(driving), transform)
    return totals.mean(), (_mean(terms), _first(mcc_stats), _first(disc_stats),
                           image.reshape(source.shape[0], *image.shape[2:]))

  return run


def grouped_discriminator_objective(objective, groups: int):
  """Wrap `objective.discriminator_objective` to run per group of samples."""
  if groups == 1:
    return objective

  def run(disc_params, disc_graphdef, disc_rest, real, fake):
    per_group = lambda r, f: objective(disc_params, disc_graphdef, disc_rest, r, f)
    totals, (terms, stats) = jax.vmap(per_group)(_split(real, groups), _split(fake, groups))
    return totals.mean(), (_mean(terms), _first(stats))

  return run


def _mean(tree):
  return jax.tree.map(lambda x: x.mean(axis=0), tree)


def _first(tree):
  return jax.tree.map(lambda x: x[0], tree)
