"""The motion estimator: a keypoint detector plus a dense motion network (no refinement of its own)."""
import jax
import jax.numpy as jnp
from flax import nnx

from mcc_jax.models.dense_motion import DenseMotionNetwork
from mcc_jax.models.keypoint_detector import KPDetector


class MotionEstimator(nnx.Module):
  """`Motion_Estimator_keypoint_aware`: `kp_detector` and `dense_motion_network`, under the official names."""

  def __init__(self, *, num_kp: int, num_channels: int, kp_detector: dict, dense_motion: dict, remat: bool = False,
               dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    kw = dict(remat=remat, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.kp_detector = KPDetector(num_kp=num_kp, num_channels=num_channels, **kp_detector, **kw)
    self.dense_motion_network = DenseMotionNetwork(num_kp=num_kp, num_channels=num_channels, **dense_motion, **kw)

  def estimate_kp(self, image: jnp.ndarray) -> dict[str, jnp.ndarray]:
    return self.kp_detector(image)

  def estimate_motion(self, kp_source: dict, kp_driving: dict, source: jnp.ndarray) -> dict:
    """Dense motion from given keypoints (e.g. relative keypoints for cross-identity animation)."""
    with jax.named_scope("dense_motion"):
      motion = self.dense_motion_network(source, kp_driving, kp_source)
    return {**motion, "kp_driving": kp_driving, "kp_source": kp_source}

  def __call__(self, driving: jnp.ndarray, source: jnp.ndarray) -> dict:
    """Keypoints of driving, then of source (the official call order, which fixes BatchNorm updates)."""
    with jax.named_scope("kp_detector"):
      kp_driving = self.kp_detector(driving)
      kp_source = self.kp_detector(source)
    return self.estimate_motion(kp_source, kp_driving, source)
