"""FOMM dense motion network: keypoints -> a dense backward flow and an occlusion map at 1/4 resolution."""
import jax
import jax.numpy as jnp
from flax import nnx

from mcc_jax.models.antialias import AntiAliasDownsample
from mcc_jax.models.hourglass import Hourglass
from mcc_jax.models.layers import Conv2d, at_least_float32
from mcc_jax.ops import grid_sample, kp2gaussian, make_coordinate_grid

HIGHEST = jax.lax.Precision.HIGHEST  # coordinates: no reduced-precision passes on TPU


def sparse_motions(kp_driving: dict, kp_source: dict, height: int, width: int) -> jnp.ndarray:
  """Per-keypoint first-order backward flows, (B, K + 1, H, W, 2); index 0 is the identity (background)."""
  value_d, value_s = kp_driving["value"], kp_source["value"]
  b, k, _ = value_d.shape
  identity = make_coordinate_grid(height, width, value_s.dtype)
  coords = identity[None, None] - value_d[:, :, None, None, :]
  if kp_driving.get("jacobian") is not None:
    jacobian = jnp.matmul(kp_source["jacobian"], jnp.linalg.inv(kp_driving["jacobian"]), precision=HIGHEST)
    coords = jnp.einsum("bkij,bkhwj->bkhwi", jacobian, coords, precision=HIGHEST)
  driving_to_source = coords + value_s[:, :, None, None, :]
  background = jnp.broadcast_to(identity[None, None], (b, 1, height, width, 2)).astype(driving_to_source.dtype)
  return jnp.concatenate([background, driving_to_source], axis=1)


class DenseMotionNetwork(nnx.Module):
  """Predicts soft masks over the K + 1 sparse motions and combines them into one flow, plus an occlusion map.

  Keypoint maps, sparse motions, the mask and occlusion heads and the flow compute in at least float32 whatever
  `dtype` the hourglass uses."""

  def __init__(self, block_expansion: int, num_blocks: int, max_features: int, num_kp: int, num_channels: int,
               estimate_occlusion_map: bool = True, scale_factor: float = 1.0, kp_variance: float = 0.01, *,
               remat: bool = False, dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.hourglass = Hourglass(block_expansion, (num_kp + 1) * (num_channels + 1), num_blocks, max_features,
                               remat=remat, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    head = dict(dtype=at_least_float32(dtype), param_dtype=param_dtype, rngs=rngs)
    self.mask = Conv2d(self.hourglass.out_filters, num_kp + 1, 7, padding=3, **head)
    self.occlusion = Conv2d(self.hourglass.out_filters, 1, 7, padding=3, **head) if estimate_occlusion_map else None
    self.down = AntiAliasDownsample(num_channels, scale_factor, param_dtype=param_dtype) if scale_factor != 1 else None
    self.num_kp = num_kp
    self.kp_variance = kp_variance

  def __call__(self, source: jnp.ndarray, kp_driving: dict, kp_source: dict) -> dict[str, jnp.ndarray]:
    """source: (B, H, W, C) image. Returns NHWC maps at the downsampled size (h, w):

    deformation (B, h, w, 2), occlusion_map (B, h, w, 1) (a sigmoid probability), driving_kp_heatmap (B, h, w, K),
    mask and kp_heatmap (B, h, w, K + 1), sparse_motion (B, K + 1, h, w, 2), sparse_deformed (B, K + 1, h, w, C),
    source (the downsampled image).
    """
    if self.down is not None:
      source = self.down(source)
    b, h, w, c = source.shape
    kp_dtype = kp_driving["value"].dtype
    gaussian_driving = kp2gaussian(kp_driving["value"], h, w, self.kp_variance)
    gaussian_source = kp2gaussian(kp_source["value"], h, w, self.kp_variance)
    heatmap = jnp.concatenate([jnp.zeros((b, h, w, 1), kp_dtype), gaussian_driving - gaussian_source], axis=-1)

    motions = sparse_motions(kp_driving, kp_source, h, w)
    k1 = self.num_kp + 1
    repeated = jnp.broadcast_to(source[:, None], (b, k1, h, w, c)).reshape(b * k1, h, w, c)
    deformed = grid_sample(repeated, motions.reshape(b * k1, h, w, 2), align_corners=False).reshape(b, k1, h, w, c)

    stacked = jnp.concatenate([jnp.moveaxis(heatmap, -1, 1)[..., None].astype(deformed.dtype), deformed], axis=-1)
    hourglass_in = jnp.moveaxis(stacked, 1, 3).reshape(b, h, w, k1 * (c + 1))
    prediction = self.hourglass(hourglass_in)[-1]

    mask = jax.nn.softmax(self.mask(prediction), axis=-1)
    deformation = jnp.einsum("bhwk,bkhwc->bhwc", mask.astype(motions.dtype), motions, precision=HIGHEST)
    out = {
        "sparse_motion": motions,
        "sparse_deformed": deformed,
        "mask": mask,
        "deformation": deformation,
        "kp_heatmap": heatmap,
        "driving_kp_heatmap": gaussian_driving,
        "source": source,
    }
    if self.occlusion is not None:
      out["occlusion_map"] = jax.nn.sigmoid(self.occlusion(prediction))
    return out
