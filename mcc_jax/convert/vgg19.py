"""torchvision VGG19 weights (e.g. `vgg19-dcbb9e9d.pth`) for the perceptual loss."""
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mcc_jax.convert.state_dict import load_state_dict
from mcc_jax.models.vgg import SLICE_ENDS, VGG19Features


def vgg19_from_state_dict(state_dict: dict, *, dtype=jnp.float32, param_dtype=jnp.float32) -> VGG19Features:
  """A VGG19Features holding a torchvision vgg19 state_dict; layers past relu5_1 and the classifier are
  ignored (the loss never uses them)."""
  used = {}
  for key, value in state_dict.items():
    key = key.removeprefix("module.")
    parts = key.split(".")
    if parts[0] == "features" and int(parts[1]) < SLICE_ENDS[-1]:
      used[key] = np.asarray(value)
  module = nnx.eval_shape(lambda: VGG19Features(dtype=dtype, param_dtype=param_dtype, rngs=nnx.Rngs(0)))
  load_state_dict(module, used, name="vgg19")
  return module


def load_vgg19(path, *, dtype=jnp.float32, param_dtype=jnp.float32) -> VGG19Features:
  """VGG19 features from a torchvision checkpoint file (a plain state_dict)."""
  from mcc_jax.convert.official import read_torch_checkpoint
  return vgg19_from_state_dict(read_torch_checkpoint(path), dtype=dtype, param_dtype=param_dtype)
