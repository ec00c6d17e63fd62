"""Name and layout mapping between this project's NNX variables and the official PyTorch state_dicts.

Module trees mirror the official ones, so a torch key is the NNX path joined by dots with four changes:
leaf names (`kernel` -> `weight`, norm `scale` -> `weight`, `mean`/`var` -> `running_mean`/`running_var`),
layouts (conv HWIO <-> OIHW, linear (in, out) <-> (out, in)), the packed attention projection
(`in_proj.kernel` -> `in_proj_weight`), and the patch-embedding Sequentials (`linear` at index 1 or 0).
"""
import re

import numpy as np
from flax import nnx

_LEAF_NAMES = {"kernel": "weight", "scale": "weight", "mean": "running_mean", "var": "running_var"}
_RENAMES = (
    (re.compile(r"\.in_proj\.(weight|bias)$"), r".in_proj_\1"),
    (re.compile(r"^app_feat_emb_(\d+)\.linear\."), r"app_feat_emb_\1.1."),
    (re.compile(r"^to_app_feat_(\d+)\.linear\."), r"to_app_feat_\1.0."),
)
# torch keys that carry no information for us: dropped on import, written back as zeros on export.
IGNORED_SUFFIXES = ("num_batches_tracked",)


def torch_key(path: tuple) -> str:
  *parents, leaf = (str(p) for p in path)
  key = ".".join([*parents, _LEAF_NAMES.get(leaf, leaf)])
  for pattern, replacement in _RENAMES:
    key = pattern.sub(replacement, key)
  return key


# Kernel axis permutations, ours -> torch: conv HWIO -> OIHW, linear (in, out) -> (out, in).
_TO_TORCH = {4: (3, 2, 0, 1), 2: (1, 0)}


def to_torch_layout(path: tuple, value: np.ndarray) -> np.ndarray:
  if path[-1] == "kernel" and value.ndim in _TO_TORCH:
    return np.transpose(value, _TO_TORCH[value.ndim])
  return value


def from_torch_layout(path: tuple, value: np.ndarray) -> np.ndarray:
  if path[-1] == "kernel" and value.ndim in _TO_TORCH:
    return np.transpose(value, np.argsort(_TO_TORCH[value.ndim]))
  return value


def variable_paths(module: nnx.Module) -> dict[str, tuple]:
  """torch key -> NNX path, for every variable of `module` (parameters, batch statistics and buffers)."""
  mapping = {}
  for path, _ in nnx.to_flat_state(nnx.state(module)):
    key = torch_key(path)
    if key in mapping:
      raise AssertionError(f"two variables map to the torch key {key}: {mapping[key]} and {path}")
    mapping[key] = path
  return mapping
