"""The full MCC model: motion estimator + generator, and the inference entry point `reconstruct`."""
import functools

import jax
import jax.numpy as jnp
from flax import nnx

from mcc_jax.models.generator import AppMotionCompFormer
from mcc_jax.models.layers import at_least_float32
from mcc_jax.models.motion_estimator import MotionEstimator


class MCC(nnx.Module):
  """`motion_estimator` (official `net_motion_estimator`) and `generator` (official `net_g`).

  `dtype` is the generator's compute dtype (bfloat16 for mixed precision; parameters stay `param_dtype`). The
  motion estimator always computes in at least float32: its flows invert the keypoint Jacobians, and where one is
  near singular bfloat16 rounding of its features moves the flow by tens of percent (measured on the parity
  images); it costs about 5% of the model's FLOPs. `remat` rematerializes each block in the backward pass;
  `attention` ('xla' | 'pallas') implements the codebook transformers' attention (`mcc_jax.ops.attention`)."""

  def __init__(self, *, motion_estimator: dict, generator: dict, remat: bool = False, attention: str = "xla",
               dtype=jnp.float32, param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.motion_estimator = MotionEstimator(**motion_estimator, remat=remat, dtype=at_least_float32(dtype),
                                            param_dtype=param_dtype, rngs=rngs)
    self.generator = AppMotionCompFormer(**generator, remat=remat, attention=attention, dtype=dtype,
                                         param_dtype=param_dtype, rngs=rngs)
    self.img_size = generator["img_size"]
    self.remat = remat

  def forward(self, source: jnp.ndarray, driving: jnp.ndarray, *, gt: jnp.ndarray | None = None,
              inference: bool = True) -> dict:
    """Motion estimation then generation, as the official model runs them; returns the generator's dict plus
    `motion` (the motion estimator's dict)."""
    with jax.named_scope("motion_estimator"):
      motion = self.motion_estimator(driving, source)
    with jax.named_scope("generator"):
      out = self.generator(source, motion, gt=gt, inference=inference)
    return {**out, "motion": motion}

  def reconstruct(self, source: jnp.ndarray, driving: jnp.ndarray) -> dict:
    """Animate `source` with the motion of `driving` (inference: BatchNorm on running statistics).

    source, driving: (B, H, W, 3) NHWC in [-1, 1]. Returns `image` (B, H, W, 3, unclamped), `kp_source` and
    `kp_driving` ({'value', 'jacobian'}), `deformations` (the motion estimator's flow, then one per refinement)
    and `occlusions` (the refined occlusion maps), plus the generator's other outputs. Compiled once per shape.
    """
    source, driving = jnp.asarray(source), jnp.asarray(driving)
    expected = (self.img_size, self.img_size, 3)
    for name, x in (("source", source), ("driving", driving)):
      if x.ndim != 4 or x.shape[1:] != expected:
        raise ValueError(f"{name} must be NHWC (B, {self.img_size}, {self.img_size}, 3) in [-1, 1]; got {x.shape}")
    if source.shape[0] != driving.shape[0]:
      raise ValueError(f"source and driving batch sizes differ: {source.shape[0]} vs {driving.shape[0]}")
    graphdef, state = nnx.split(self)
    return _reconstruct(graphdef, state, source, driving)


@functools.partial(jax.jit, static_argnums=0)
def _reconstruct(graphdef, state, source, driving):
  model = nnx.merge(graphdef, state)
  model.eval()
  out = model.forward(source, driving, inference=True)
  motion = out["motion"]
  return {
      "image": out["out"],
      "kp_source": motion["kp_source"],
      "kp_driving": motion["kp_driving"],
      "deformations": out["deformation_list"],
      "occlusions": out["out_occ"],
      "res_deformations": out["res_deform_list"],
      "lq_feat": out["lq_feat"],
      "app_before_comp": out["app_before_comp_list"],
      "app_comp": out["app_comp_list"],
      "motion": motion,
  }
