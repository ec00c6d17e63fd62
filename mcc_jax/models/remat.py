"""Per-block rematerialisation: a block's inner activations are recomputed in the backward pass, not stored."""
from typing import Callable

import jax
from flax import nnx


def rematerialized(fn: Callable, enabled: bool) -> Callable:
  """`fn(module, *arrays)` itself, or under `nnx.remat` when `enabled`.

  Pass arrays (or pytrees of them, None included) as arguments and close over Python values such as sizes and
  weights: `nnx.remat` traces its arguments. BatchNorm statistic updates inside the block propagate as usual.
  """
  return nnx.remat(fn) if enabled else fn


def call_block(block: nnx.Module, x, *, remat: bool):
  """`block(x)`, rematerialized when `remat` is set, under a name scope of the block's class (for profiles)."""
  with jax.named_scope(type(block).__name__):
    return rematerialized(_call, remat)(block, x)


def _call(block, x):
  return block(x)
