"""FOMM keypoint detector: hourglass heat maps -> soft-argmax keypoints and local 2x2 Jacobians."""
import jax
import jax.numpy as jnp
from flax import nnx

from mcc_jax.models.antialias import AntiAliasDownsample
from mcc_jax.models.hourglass import Hourglass
from mcc_jax.models.layers import Conv2d, at_least_float32
from mcc_jax.ops import make_coordinate_grid

HIGHEST = jax.lax.Precision.HIGHEST  # coordinates: no reduced-precision passes on TPU


class KPDetector(nnx.Module):
  """Returns {'value': (B, K, 2) in [-1, 1] (x, y), 'jacobian': (B, K, 2, 2)}."""

  def __init__(self, block_expansion: int, num_kp: int, num_channels: int, max_features: int, num_blocks: int,
               temperature: float, estimate_jacobian: bool = True, scale_factor: float = 1.0, pad: int = 0, *,
               remat: bool = False, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.predictor = Hourglass(block_expansion, num_channels, num_blocks, max_features, remat=remat, dtype=dtype,
                               param_dtype=param_dtype, rngs=rngs)
    # The heads compute in at least float32: bfloat16 logits, sharpened by 1 / temperature, would move keypoints.
    head = dict(dtype=at_least_float32(dtype), param_dtype=param_dtype, rngs=rngs)
    self.kp = Conv2d(self.predictor.out_filters, num_kp, 7, padding=pad, **head)
    if estimate_jacobian:
      self.jacobian = Conv2d(self.predictor.out_filters, 4 * num_kp, 7, padding=pad, **head)
      self.jacobian.kernel[...] = jnp.zeros_like(self.jacobian.kernel[...])
      self.jacobian.bias[...] = jnp.tile(jnp.asarray([1, 0, 0, 1], param_dtype), num_kp)
    else:
      self.jacobian = None
    self.down = AntiAliasDownsample(num_channels, scale_factor, param_dtype=param_dtype) if scale_factor != 1 else None
    self.num_kp = num_kp
    self.temperature = temperature

  def __call__(self, image: jnp.ndarray) -> dict[str, jnp.ndarray]:
    x = image if self.down is None else self.down(image)
    feature_map = self.predictor(x)[-1]
    prediction = self.kp(feature_map)
    b, h, w, k = prediction.shape
    logits = prediction.reshape(b, h * w, k) / self.temperature
    heatmap = jax.nn.softmax(logits, axis=1)
    grid = make_coordinate_grid(h, w, prediction.dtype).reshape(h * w, 2)
    out = {"value": jnp.einsum("bpk,pc->bkc", heatmap, grid, precision=HIGHEST)}
    if self.jacobian is not None:
      jacobian_map = self.jacobian(feature_map).reshape(b, h * w, k, 4)
      out["jacobian"] = jnp.einsum("bpk,bpkj->bkj", heatmap, jacobian_map, precision=HIGHEST).reshape(b, k, 2, 2)
    return out
