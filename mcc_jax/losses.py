"""The official MCC training losses (reference/mcc_spec.md sections 5 and 6), as pure functions.

Images are NHWC; keypoints are dicts with `value` (B, K, 2) and `jacobian` (B, K, 2, 2).
"""
import flax.struct
import jax
import jax.numpy as jnp

from mcc_jax.ops import (antialias_downsample, antialias_kernel, grid_sample, linspace_grid_float32,
                         make_coordinate_grid)

sg = jax.lax.stop_gradient
PERCEPTUAL_SCALES = (1.0, 0.5, 0.25, 0.125)


def l1(prediction: jnp.ndarray, target: jnp.ndarray) -> jnp.ndarray:
  return jnp.mean(jnp.abs(prediction - target))


def image_pyramid(images: jnp.ndarray, scales=PERCEPTUAL_SCALES) -> list[jnp.ndarray]:
  """FOMM's anti-aliased pyramid (Gaussian kernels built in float32, as the official buffers are)."""
  kernels = {s: jnp.asarray(antialias_kernel(s, images.shape[-1])) for s in scales if s != 1.0}
  return [images if s == 1.0 else antialias_downsample(images, kernels[s].astype(images.dtype), s) for s in scales]


def pyramid_perceptual_loss(vgg, prediction: jnp.ndarray, target: jnp.ndarray,
                            scales=PERCEPTUAL_SCALES) -> jnp.ndarray:
  """Sum over scales and the five VGG19 layers of mean |vgg(pred) - stop_grad(vgg(target))| (layer weights 1)."""
  total = 0.0
  for pred_level, target_level in zip(image_pyramid(prediction, scales), image_pyramid(target, scales)):
    for pred_feature, target_feature in zip(vgg(pred_level), vgg(target_level)):
      difference = jnp.abs(pred_feature - sg(target_feature))
      total = total + jnp.mean(difference.astype(jnp.promote_types(difference.dtype, jnp.float32)))
  return total


def motion_codebook_recon_loss(motion_recons, flows, weight: float = 32.0) -> jnp.ndarray:
  """Sum over scales of weight * mean |recon_i - stop_grad(flow_i - identity)|; flow_i is the flow entering scale i."""
  identity = jnp.asarray(linspace_grid_float32(flows[0].shape[1]))
  return sum(weight * l1(recon, sg(flow - identity.astype(flow.dtype))) for recon, flow in zip(motion_recons, flows))


def _tps_warp(theta, control_points, control_params, coordinates):
  """One sample: theta (2, 3), control_points (P, 2), control_params (P,), coordinates (N, 2)."""
  dtype = coordinates.dtype
  theta = theta.astype(dtype)
  warped = coordinates @ theta[:, :2].T + theta[:, 2]
  distances = jnp.sum(jnp.abs(coordinates[:, None, :] - control_points.astype(dtype)), axis=-1)
  radial = distances**2 * jnp.log(distances + 1e-6) * control_params.astype(dtype)
  return warped + jnp.sum(radial, axis=-1, keepdims=True)


@flax.struct.dataclass
class RandomTPS:
  """FOMM's random affine + thin-plate-spline transform for the equivariance loss.

  theta (B, 2, 3), control_points (P, 2), control_params (B, P). The TPS radial term uses the L1 distance
  r = |dx| + |dy| and r^2 log(r + 1e-6), as the official code does.
  """
  theta: jnp.ndarray
  control_points: jnp.ndarray
  control_params: jnp.ndarray

  @classmethod
  def sample(cls, rng, batch: int, sigma_affine: float = 0.05, sigma_tps: float = 0.005, points_tps: int = 5,
             dtype=jnp.float32) -> "RandomTPS":
    affine_key, tps_key = jax.random.split(rng)
    theta = jnp.eye(2, 3, dtype=dtype) + sigma_affine * jax.random.normal(affine_key, (batch, 2, 3), dtype)
    control_points = make_coordinate_grid(points_tps, points_tps, dtype).reshape(-1, 2)
    control_params = sigma_tps * jax.random.normal(tps_key, (batch, points_tps**2), dtype)
    return cls(theta, control_points, control_params)

  def warp_coordinates(self, coordinates: jnp.ndarray) -> jnp.ndarray:
    """coordinates (B, N, 2) -> (B, N, 2)."""
    return jax.vmap(_tps_warp, (0, None, 0, 0))(self.theta, self.control_points, self.control_params, coordinates)

  def jacobian(self, coordinates: jnp.ndarray) -> jnp.ndarray:
    """d warp / d (x, y) at each point: (B, N, 2, 2), rows (x', y'), columns (x, y)."""
    point_jacobian = jax.jacfwd(lambda t, p, w, c: _tps_warp(t, p, w, c[None])[0], argnums=3)
    per_sample = jax.vmap(point_jacobian, (None, None, None, 0))
    return jax.vmap(per_sample, (0, None, 0, 0))(self.theta, self.control_points, self.control_params, coordinates)

  def transform_frame(self, frames: jnp.ndarray) -> jnp.ndarray:
    """Warp NHWC frames (reflection padding, align_corners=False, as the official torch 1.12 default)."""
    b, h, w, _ = frames.shape
    grid = make_coordinate_grid(h, w, frames.dtype).reshape(1, h * w, 2)
    grid = self.warp_coordinates(jnp.broadcast_to(grid, (b, h * w, 2))).reshape(b, h, w, 2)
    return grid_sample(frames, grid, align_corners=False, padding_mode="reflection")


def equivariance_losses(kp_driving: dict, kp_transformed: dict, transform: RandomTPS) -> tuple[jnp.ndarray, jnp.ndarray]:
  """FOMM equivariance: (value loss, Jacobian loss), each a mean absolute error."""
  value = jnp.mean(jnp.abs(kp_driving["value"] - transform.warp_coordinates(kp_transformed["value"])))
  jacobian_transformed = jnp.matmul(transform.jacobian(kp_transformed["value"]), kp_transformed["jacobian"])
  normed = jnp.matmul(jnp.linalg.inv(kp_driving["jacobian"]), jacobian_transformed)
  jacobian = jnp.mean(jnp.abs(jnp.eye(2, dtype=normed.dtype) - normed))
  return value, jacobian


def keypoint_distance_loss(kp_driving: dict, kp_source: dict, threshold: float = 0.2) -> jnp.ndarray:
  """MCNet's keypoint distance term: 2 per pair of keypoints closer than `threshold`, averaged. Its gradient is
  zero (a sign function), so it only shows in the logs."""
  def one(values):
    k = values.shape[1]
    diff = values[:, :, None, :] - values[:, None, :, :]
    distance = jnp.sqrt(jnp.sum(diff * diff, axis=-1) + 1e-8) + jnp.eye(k, dtype=values.dtype) * threshold
    return jnp.mean(1 - jnp.sign(distance - threshold))
  return one(kp_source["value"]) + one(kp_driving["value"])


def hinge_generator_loss(fake_logits: jnp.ndarray) -> jnp.ndarray:
  return -jnp.mean(fake_logits)


def hinge_discriminator_losses(real_logits: jnp.ndarray, fake_logits: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
  return jnp.mean(jax.nn.relu(1 - real_logits)), jnp.mean(jax.nn.relu(1 + fake_logits))


def adaptive_gan_weight(recon_grad: jnp.ndarray, gan_grad: jnp.ndarray, max_weight: float = 1.0,
                        scale: float = 0.8) -> jnp.ndarray:
  """VQGAN's adaptive weight from the two losses' gradients w.r.t. the generator's last conv weight:
  scale * clamp(|g_recon| / (|g_gan| + 1e-4), 0, max_weight), not differentiated."""
  ratio = jnp.linalg.norm(recon_grad.ravel()) / (jnp.linalg.norm(gan_grad.ravel()) + 1e-4)
  return scale * sg(jnp.clip(ratio, 0.0, max_weight))
