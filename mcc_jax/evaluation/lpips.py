"""LPIPS v0.1 (Zhang et al. 2018) as the `lpips` package computes it, on a VGG16 (the official metric) or AlexNet trunk.

The distance of two images: scale both to [-1, 1] and by the package's fixed per-channel shift and scale, run
the torchvision trunk, take five ReLU outputs, unit-normalise each feature vector over channels, square the
differences, weigh the channels with a learned 1x1 head (no bias), average over positions and sum the five layers.
"""
import functools
import importlib.util
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mcc_jax.convert.state_dict import load_state_dict
from mcc_jax.evaluation.errors import MissingWeightsError
from mcc_jax.evaluation.fidelity import check_image_pair
from mcc_jax.models.layers import Conv2d

VERSION = "0.1"
# lpips' ScalingLayer, applied to [-1, 1] images.
_SHIFT = np.array([-.030, -.088, -.188], np.float32)
_SCALE = np.array([.458, .448, .450], np.float32)
_EPS = 1e-10


def _vgg16_layers() -> tuple:
  """torchvision vgg16 `features` (config D) up to relu5_3, one entry per Sequential index."""
  layers, in_channels = [], 3
  for item in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
    if item == "M":
      layers.append(("pool", 2, 2))
    else:
      layers += [("conv", in_channels, item, 3, 1, 1), ("relu",)]
      in_channels = item
  return tuple(layers)


# Per trunk: the layers, as (kind, ...) with conv = (in, out, kernel, stride, padding) and pool = (window, stride),
# the Sequential indices whose outputs LPIPS compares, and the torchvision file a user passes as the backbone.
BACKBONES = {
    "vgg": (_vgg16_layers(), (3, 8, 15, 22, 29), "vgg16-397923af.pth"),
    "alex": ((("conv", 3, 64, 11, 4, 2), ("relu",), ("pool", 3, 2), ("conv", 64, 192, 5, 1, 2), ("relu",),
              ("pool", 3, 2), ("conv", 192, 384, 3, 1, 1), ("relu",), ("conv", 384, 256, 3, 1, 1), ("relu",),
              ("conv", 256, 256, 3, 1, 1), ("relu",)),
             (1, 4, 7, 9, 11), "alexnet-owt-7be5be79.pth"),
}


class Trunk(nnx.Module):
  """A torchvision `features` Sequential: `features` holds a Conv2d at each conv index and None elsewhere."""

  def __init__(self, layers: tuple, taps: tuple, *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.layers = layers
    self.taps = taps
    features = []
    for kind, *args in layers:
      if kind == "conv":
        in_channels, out_channels, kernel, stride, padding = args
        features.append(Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding, dtype=dtype,
                               param_dtype=param_dtype, rngs=rngs))
      else:
        features.append(None)
    self.features = nnx.List(features)

  def __call__(self, x: jax.Array) -> list[jax.Array]:
    outputs = []
    for index, (kind, *args) in enumerate(self.layers[:self.taps[-1] + 1]):
      if kind == "conv":
        x = self.features[index](x)
      elif kind == "relu":
        x = jax.nn.relu(x)
      else:
        window, stride = args
        x = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1), (1, stride, stride, 1), "VALID")
      if index in self.taps:
        outputs.append(x)
    return outputs

  def min_image_size(self) -> int:
    """The smallest input side for which every tapped feature map is at least 1x1."""
    size = 1
    for kind, *args in reversed(self.layers[:self.taps[-1] + 1]):
      if kind == "conv":
        _, _, k, s, p = args
        size = (size - 1) * s + k - 2 * p
      elif kind == "pool":
        window, stride = args
        size = (size - 1) * stride + window
    return max(size, 1)


class LPIPS(nnx.Module):
  """`net` trunk plus the linear heads `lins` (one 1x1 conv with one output, no bias, per tapped layer)."""

  def __init__(self, net: str = "vgg", *, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    if net not in BACKBONES:
      raise ValueError(f"unknown LPIPS trunk {net!r}; choose one of {sorted(BACKBONES)}")
    layers, taps, _ = BACKBONES[net]
    self.net = Trunk(layers, taps, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    widths = [next(args[1] for kind, *args in reversed(layers[:tap + 1]) if kind == "conv") for tap in taps]
    self.lins = nnx.List([Conv2d(width, 1, 1, use_bias=False, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
                          for width in widths])
    self.name = f"lpips-{net}-v{VERSION}"

  def __call__(self, pred: jax.Array, target: jax.Array) -> jax.Array:
    """(B,) distances of two uint8 NHWC batches."""
    check_image_pair(pred, target, min_size=self.net.min_image_size())
    # Two trunk calls rather than one on the concatenated batch, which would reshuffle a sharded batch axis.
    distance = 0.0
    for feats_pred, feats_target, head in zip(self.net(_scaled(pred)), self.net(_scaled(target)), self.lins):
      diff = jnp.square(_unit_normalised(feats_pred) - _unit_normalised(feats_target))
      distance = distance + jnp.mean(head(diff).astype(jnp.float32), axis=(1, 2, 3))
    return distance


def _scaled(images: jax.Array) -> jax.Array:
  """uint8 -> [-1, 1] -> the ScalingLayer. `(x - 127.5) / 127.5` in float32 equals lpips.im2tensor's float64
  `x / 127.5 - 1` rounded to float32 for all 256 values."""
  signed = (images.astype(jnp.float32) - 127.5) / 127.5
  return (signed - jnp.asarray(_SHIFT)) / jnp.asarray(_SCALE)


def _unit_normalised(features: jax.Array) -> jax.Array:
  features = features.astype(jnp.float32)
  return features / (jnp.sqrt(jnp.sum(jnp.square(features), axis=-1, keepdims=True)) + _EPS)


def lpips_distance(model: LPIPS, pred: jax.Array, target: jax.Array) -> jax.Array:
  """(B,) LPIPS distances of two uint8 NHWC batches; compiled once per shape."""
  pred, target = jnp.asarray(pred), jnp.asarray(target)
  graphdef, state = nnx.split(model)
  return _distance(graphdef, state, pred, target)


@functools.partial(jax.jit, static_argnums=0)
def _distance(graphdef, state, pred, target):
  model = nnx.merge(graphdef, state)
  # Full float32 convolutions: GPUs default to TF32 and TPUs to bfloat16 passes, which move LPIPS by ~1e-3.
  with jax.default_matmul_precision("float32"):
    return model(pred, target)


# Head keys: `lin{k}.model.1.weight` in the lpips package files (`.model.0.` without the Dropout); a whole
# lpips.LPIPS state_dict also repeats them as `lins.{k}.model.1.weight`.
_HEAD_KEY = re.compile(r"^lins?\.?(\d+)\.model\.\d+\.weight$")


def packaged_heads_file(net: str) -> pathlib.Path | None:
  """The v0.1 heads file shipped inside the installed `lpips` package (found without importing it), or None."""
  spec = importlib.util.find_spec("lpips")
  if spec is None or not spec.submodule_search_locations:
    return None
  path = pathlib.Path(next(iter(spec.submodule_search_locations))) / "weights" / f"v{VERSION}" / f"{net}.pth"
  return path if path.is_file() else None


def lpips_from_state_dicts(backbone: dict, heads: dict, *, net: str = "vgg") -> LPIPS:
  """An LPIPS holding a torchvision trunk state_dict (`features.N.*`; the classifier is ignored) and the lpips
  package's heads (`linK.model.*.weight`). Raises CheckpointMismatchError when either does not fit `net`."""
  if net not in BACKBONES:
    raise ValueError(f"unknown LPIPS trunk {net!r}; choose one of {sorted(BACKBONES)}")
  last_tap = BACKBONES[net][1][-1]
  state = {}
  for key, value in backbone.items():
    key = key.removeprefix("module.")
    parts = key.split(".")
    if parts[0] == "features" and parts[1].isdigit() and int(parts[1]) <= last_tap:
      state[f"net.{key}"] = value
  for key, value in heads.items():
    match = _HEAD_KEY.match(key)
    state[f"lins.{match.group(1)}.weight" if match else key] = value
  module = nnx.eval_shape(lambda: LPIPS(net, rngs=nnx.Rngs(0)))
  load_state_dict(module, state, name=f"lpips-{net}")
  return module


def load_lpips(backbone_path, *, net: str = "vgg", heads_path=None) -> LPIPS:
  """LPIPS v0.1 from a torchvision trunk file (`backbone_path`, e.g. vgg16-397923af.pth) and the linear heads
  (`heads_path`, default: the file inside the installed `lpips` package).

  Raises MissingWeightsError when a file is not given or not found, or torch (needed to read .pth) is absent.
  """
  if net not in BACKBONES:
    raise ValueError(f"unknown LPIPS trunk {net!r}; choose one of {sorted(BACKBONES)}")
  metric = f"lpips-{net}-v{VERSION}"
  backbone_file = BACKBONES[net][2]
  if backbone_path is None or not pathlib.Path(backbone_path).is_file():
    where = "" if backbone_path is None else f" ({backbone_path} does not exist)"
    raise MissingWeightsError(metric, f"pass the torchvision {net} ImageNet state_dict ({backbone_file}) with "
                                      f"--lpips-backbone PATH{where}")
  if heads_path is None:
    heads_path = packaged_heads_file(net)
    if heads_path is None:
      raise MissingWeightsError(metric, f"the linear heads ship with the lpips package (pip install lpips==0.1.4); "
                                        f"or pass a v{VERSION} {net}.pth as heads_path")
  elif not pathlib.Path(heads_path).is_file():
    raise MissingWeightsError(metric, f"LPIPS heads file {heads_path} does not exist")
  from mcc_jax.convert.official import read_torch_checkpoint
  try:
    backbone, heads = read_torch_checkpoint(backbone_path), read_torch_checkpoint(heads_path)
  except ImportError as e:
    raise MissingWeightsError(metric, "reading the .pth weights needs torch: pip install 'mcc_jax[torch]'") from e
  return lpips_from_state_dicts(backbone, heads, net=net)
