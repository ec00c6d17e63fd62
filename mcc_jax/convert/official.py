"""Read the official MCC checkpoints (`net_g_*.pth`, `net_motion_estimator_*.pth`, `net_d_*.pth`)."""
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mcc_jax.convert.state_dict import load_state_dict
from mcc_jax.models.factory import build_discriminator, build_mcc
from mcc_jax.models.mcc import MCC


def read_torch_checkpoint(path, param_keys=("params",)) -> dict[str, np.ndarray]:
  """The state_dict under the first of `param_keys` present in a BasicSR .pth file, as numpy arrays.

  Raises FileNotFoundError for a missing file, ImportError when torch is absent, and KeyError naming the keys
  the file has when none of `param_keys` is there.
  """
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"checkpoint not found: {path}")
  try:
    import torch
  except ImportError as e:
    raise ImportError("reading .pth checkpoints needs torch: pip install 'mcc_jax[torch]'") from e
  try:
    blob = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:  # torch raises several types for truncated or foreign files
    raise ValueError(f"{path} is not a readable PyTorch checkpoint: {e}") from e
  if not isinstance(blob, dict):
    raise ValueError(f"{path} holds a {type(blob).__name__}, not a state_dict")
  if all(hasattr(v, "shape") for v in blob.values()):
    state_dict = blob
  else:
    key = next((k for k in param_keys if k in blob), None)
    if key is None:
      raise KeyError(f"{path} has none of {list(param_keys)}; its top-level keys are {sorted(blob)}")
    state_dict = blob[key]
  return {k.removeprefix("module."): v.detach().cpu().numpy() for k, v in state_dict.items()}


def paper_model_config():
  from configs import paper  # configs/ ships with the package
  return paper.get_config().model


def mcc_from_state_dicts(net_g: dict, motion_estimator: dict, *, model_config=None, dtype=jnp.float32) -> MCC:
  """An MCC model (eval mode) holding the given official state_dicts, computing and storing in `dtype`."""
  if jax.dtypes.canonicalize_dtype(dtype) != jnp.dtype(dtype):
    raise ValueError(f"dtype={jnp.dtype(dtype).name} needs jax_enable_x64: jax.config.update('jax_enable_x64', True)")
  model_config = model_config or paper_model_config()
  model = nnx.eval_shape(lambda: build_mcc(model_config, dtype=dtype, param_dtype=dtype))
  load_state_dict(model.generator, net_g, name="net_g")
  load_state_dict(model.motion_estimator, motion_estimator, name="net_motion_estimator")
  model.eval()
  return model


def load_official(net_g_path, motion_estimator_path, dtype=jnp.float32, *, model_config=None,
                  param_key: str = "params_ema") -> MCC:
  """The official MCC (paper config) with the weights of the released checkpoints.

  `net_g` is read from `param_key` (the EMA weights, as the official test uses) or `params` when absent; the
  motion estimator from `params`. With `jax_enable_x64` on and dtype=jnp.float64 the model computes in float64.
  """
  net_g = read_torch_checkpoint(net_g_path, (param_key, "params"))
  motion_estimator = read_torch_checkpoint(motion_estimator_path, ("params",))
  return mcc_from_state_dicts(net_g, motion_estimator, model_config=model_config, dtype=dtype)


def load_official_discriminator(net_d_path, dtype=jnp.float32, *, model_config=None):
  model_config = model_config or paper_model_config()
  disc = nnx.eval_shape(lambda: build_discriminator(model_config, dtype=dtype, param_dtype=dtype))
  load_state_dict(disc, read_torch_checkpoint(net_d_path, ("params", "params_d")), name="net_d")
  return disc
