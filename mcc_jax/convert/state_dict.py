"""Load official PyTorch state_dicts into NNX modules and export NNX modules back to state_dicts."""
from typing import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from mcc_jax.convert.torch_layout import IGNORED_SUFFIXES, from_torch_layout, to_torch_layout, variable_paths


class CheckpointMismatchError(ValueError):
  """A state_dict does not fit the model: missing or unexpected keys, or wrong shapes."""


def _describe(title: str, items: list[str], limit: int = 20) -> str:
  shown = "\n    ".join(items[:limit])
  more = f"\n    ... and {len(items) - limit} more" if len(items) > limit else ""
  return f"  {title} ({len(items)}):\n    {shown}{more}"


def load_state_dict(module: nnx.Module, state_dict: Mapping[str, np.ndarray], *, name: str = "network") -> None:
  """Copy a torch state_dict (arrays, `module.` prefixes allowed) into `module`, in place.

  Raises CheckpointMismatchError naming every missing key, unexpected key and shape mismatch.
  """
  state_dict = {k.removeprefix("module."): np.asarray(v) for k, v in state_dict.items()}
  targets = variable_paths(module)
  state = nnx.state(module)
  flat = dict(nnx.to_flat_state(state))
  missing = sorted(set(targets) - set(state_dict))
  unexpected = sorted(k for k in set(state_dict) - set(targets) if not k.endswith(IGNORED_SUFFIXES))
  mismatched = []
  for key in sorted(set(targets) & set(state_dict)):
    path = targets[key]
    value = from_torch_layout(path, state_dict[key])
    expected = flat[path].shape
    if tuple(value.shape) != tuple(expected):
      torch_shape = tuple(to_torch_layout(path, np.zeros(expected, np.int8)).shape)
      mismatched.append(f"{key}: checkpoint {tuple(state_dict[key].shape)}, model expects {torch_shape}")
  if missing or unexpected or mismatched:
    parts = [f"{name}: the checkpoint does not match the model"]
    if missing:
      parts.append(_describe("missing keys", missing))
    if unexpected:
      parts.append(_describe("unexpected keys", unexpected))
    if mismatched:
      parts.append(_describe("shape mismatches", mismatched))
    raise CheckpointMismatchError("\n".join(parts))
  for key, path in targets.items():
    variable = flat[path]
    variable.set_value(jnp.asarray(from_torch_layout(path, state_dict[key]), variable.dtype))
  nnx.update(module, nnx.from_flat_state(flat))


def export_state_dict(module: nnx.Module, *, batchnorm_counters: bool = True) -> dict[str, np.ndarray]:
  """The module's variables as an official-layout state_dict of numpy arrays (float32 unless stored wider).

  BatchNorm `num_batches_tracked` counters are written as 0 so the official code loads it with strict=True.
  """
  out = {}
  flat = dict(nnx.to_flat_state(nnx.state(module)))
  for key, path in variable_paths(module).items():
    out[key] = np.ascontiguousarray(to_torch_layout(path, np.asarray(flat[path][...])))
    if batchnorm_counters and key.endswith(".running_var"):
      out[key.removesuffix("running_var") + "num_batches_tracked"] = np.zeros((), np.int64)
  return out
