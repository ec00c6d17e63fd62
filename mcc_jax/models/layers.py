"""Basic NNX layers with PyTorch's semantics, initialisation and parameter names.

Parameter names mirror torch's state_dict so the converter is a renaming plus layout change:
conv/linear `kernel` (HWIO / (in, out)) <-> `weight` (OIHW / (out, in)); norm `scale` <-> `weight`;
BatchNorm `mean`/`var` <-> `running_mean`/`running_var`.
"""
import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def uniform(rngs: nnx.Rngs, shape: Sequence[int], low: float, high: float, dtype) -> jnp.ndarray:
  """U(low, high) from the next `params` key.

  Eagerly the draw runs in numpy, seeded by the key: jax would compile a sampler per distinct shape, which
  makes building a model take tens of seconds. Under tracing (jit, eval_shape) it stays a jax op.
  """
  key = rngs.params()
  if isinstance(key, jax.core.Tracer):
    return jax.random.uniform(key, shape, dtype, low, high)
  seed = np.asarray(jax.random.key_data(key)).astype(np.uint64)
  values = np.random.default_rng(seed).uniform(low, high, tuple(shape))
  return jnp.asarray(values, dtype)


def torch_uniform(rngs: nnx.Rngs, shape: Sequence[int], fan_in: int, dtype) -> jnp.ndarray:
  """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch's default for conv and linear weights and biases."""
  bound = 1.0 / math.sqrt(fan_in)
  return uniform(rngs, shape, -bound, bound, dtype)


class Buffer(nnx.Variable):
  """A constant loaded from a checkpoint (a torch buffer): not trained, not averaged."""


class Conv2d(nnx.Module):
  """NHWC 2-D convolution with torch's explicit symmetric padding and default init."""

  def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, padding: int = 0,
               use_bias: bool = True, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    fan_in = in_channels * kernel_size * kernel_size
    self.kernel = nnx.Param(torch_uniform(rngs, (kernel_size, kernel_size, in_channels, out_channels), fan_in,
                                          param_dtype))
    self.bias = nnx.Param(torch_uniform(rngs, (out_channels,), fan_in, param_dtype)) if use_bias else None
    self.stride = stride
    self.padding = padding
    self.dtype = dtype

  def convolve(self, x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    """The convolution alone, with a given kernel (no bias)."""
    pad = self.padding
    return jax.lax.conv_general_dilated(
        x.astype(self.dtype), kernel.astype(self.dtype), window_strides=(self.stride, self.stride),
        padding=((pad, pad), (pad, pad)), dimension_numbers=("NHWC", "HWIO", "NHWC"))

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    y = self.convolve(x, self.kernel[...])
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


class Linear(nnx.Module):
  """Dense layer with torch's default init; kernel is (in, out)."""

  def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True, dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.kernel = nnx.Param(torch_uniform(rngs, (in_features, out_features), in_features, param_dtype))
    self.bias = nnx.Param(torch_uniform(rngs, (out_features,), in_features, param_dtype)) if use_bias else None
    self.dtype = dtype

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    y = jnp.dot(x.astype(self.dtype), self.kernel[...].astype(self.dtype))
    if self.bias is not None:
      y = y + self.bias[...].astype(self.dtype)
    return y


def at_least_float32(dtype):
  """The dtype for numerics that bfloat16 would spoil (norm statistics, softmaxes, coordinates): float32, or
  `dtype` when it is wider (float64 parity runs)."""
  return jnp.promote_types(dtype, jnp.float32)


class GroupNorm(nnx.Module):
  """torch.nn.GroupNorm on NHWC input (statistics over H, W and the channels of each group)."""

  def __init__(self, num_groups: int, num_channels: int, *, eps: float = 1e-6, dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs | None = None):
    if num_channels % num_groups:
      raise ValueError(f"GroupNorm: {num_channels} channels do not split into {num_groups} groups")
    self.scale = nnx.Param(jnp.ones((num_channels,), param_dtype))
    self.bias = nnx.Param(jnp.zeros((num_channels,), param_dtype))
    self.num_groups = num_groups
    self.eps = eps
    self.dtype = dtype

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    b, h, w, c = x.shape
    xs = x.astype(at_least_float32(x.dtype)).reshape(b, h, w, self.num_groups, c // self.num_groups)
    mean = jnp.mean(xs, axis=(1, 2, 4), keepdims=True)
    var = jnp.mean(jnp.square(xs - mean), axis=(1, 2, 4), keepdims=True)
    y = ((xs - mean) * jax.lax.rsqrt(var + self.eps)).reshape(b, h, w, c)
    y = y * self.scale[...].astype(y.dtype) + self.bias[...].astype(y.dtype)
    return y.astype(self.dtype)


class LayerNorm(nnx.Module):
  """torch.nn.LayerNorm over the last axis (eps 1e-5, torch's default)."""

  def __init__(self, num_features: int, *, eps: float = 1e-5, dtype=jnp.float32, param_dtype=jnp.float32,
               rngs: nnx.Rngs | None = None):
    self.scale = nnx.Param(jnp.ones((num_features,), param_dtype))
    self.bias = nnx.Param(jnp.zeros((num_features,), param_dtype))
    self.eps = eps
    self.dtype = dtype

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    xs = x.astype(at_least_float32(x.dtype))
    mean = jnp.mean(xs, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(xs - mean), axis=-1, keepdims=True)
    y = (xs - mean) * jax.lax.rsqrt(var + self.eps)
    y = y * self.scale[...].astype(y.dtype) + self.bias[...].astype(y.dtype)
    return y.astype(self.dtype)


class BatchNorm2d(nnx.Module):
  """torch.nn.BatchNorm2d on NHWC input.

  In training mode (`use_running_average=False`) it normalises with the biased batch variance and updates the
  running statistics as torch does: `running = (1 - momentum) * running + momentum * batch`, with the
  *unbiased* batch variance. `model.eval()` / `model.train()` switch the mode.
  """

  def __init__(self, num_features: int, *, eps: float = 1e-5, momentum: float = 0.1, dtype=jnp.float32,
               param_dtype=jnp.float32, rngs: nnx.Rngs | None = None):
    self.scale = nnx.Param(jnp.ones((num_features,), param_dtype))
    self.bias = nnx.Param(jnp.zeros((num_features,), param_dtype))
    self.mean = nnx.BatchStat(jnp.zeros((num_features,), at_least_float32(param_dtype)))
    self.var = nnx.BatchStat(jnp.ones((num_features,), at_least_float32(param_dtype)))
    self.eps = eps
    self.momentum = momentum
    self.use_running_average = False
    self.dtype = dtype

  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    xs = x.astype(at_least_float32(x.dtype))
    if self.use_running_average:
      mean = self.mean[...].astype(xs.dtype)
      var = self.var[...].astype(xs.dtype)
    else:
      mean = jnp.mean(xs, axis=(0, 1, 2))
      var = jnp.mean(jnp.square(xs - mean), axis=(0, 1, 2))
      count = xs.shape[0] * xs.shape[1] * xs.shape[2]
      unbiased = var * (count / max(count - 1, 1))
      m = self.momentum
      self.mean[...] = ((1 - m) * self.mean[...] + m * jax.lax.stop_gradient(mean)).astype(self.mean.dtype)
      self.var[...] = ((1 - m) * self.var[...] + m * jax.lax.stop_gradient(unbiased)).astype(self.var.dtype)
    y = (xs - mean) * jax.lax.rsqrt(var + self.eps)
    y = y * self.scale[...].astype(y.dtype) + self.bias[...].astype(y.dtype)
    return y.astype(self.dtype)


def swish(x: jnp.ndarray) -> jnp.ndarray:
  return x * jax.nn.sigmoid(x)
