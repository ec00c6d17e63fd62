"""Relative keypoint motion for animating a face with another face's clip (the official `normalize_kp`).

The driving keypoints' displacement from an anchor frame moves the source keypoints:
  value    = (kp_driving - kp_anchor) * scale + kp_source
  jacobian = (J_driving @ inverse(J_anchor)) @ J_source
where scale (`adapt_scale`) = sqrt(hull area of the source keypoints) / sqrt(hull area of the anchor keypoints),
else 1. The official code takes the hull of batch element 0 only (its batch is one clip); here each example
has its own.
"""
import jax.numpy as jnp
import numpy as np


def convex_hull_area(points: np.ndarray) -> float:
  """Area of the convex hull of (N, 2) points (Andrew's monotone chain, float64); 0 when they are collinear."""
  points = np.asarray(points, np.float64)
  if points.ndim != 2 or points.shape[1] != 2:
    raise ValueError(f"points must be (N, 2); got {points.shape}")
  if not np.isfinite(points).all():
    raise ValueError("points must be finite")
  points = np.unique(points, axis=0)  # sorted by x, then y
  if len(points) < 3:
    return 0.0

  def cross(o, a, b) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

  def half(sequence) -> list:
    chain = []
    for p in sequence:
      while len(chain) >= 2 and cross(chain[-2], chain[-1], p) <= 0:
        chain.pop()
      chain.append(p)
    return chain[:-1]

  hull = np.asarray(half(points) + half(points[::-1]))
  if len(hull) < 3:
    return 0.0
  x, y = hull[:, 0], hull[:, 1]
  return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def movement_scale(kp_source_value: np.ndarray, kp_anchor_value: np.ndarray) -> np.ndarray:
  """(B,) float32 adapt_scale factors from (B, K, 2) source and anchor keypoints.

  Raises ValueError where the anchor keypoints span no area (the official scipy hull fails there too).
  """
  source, anchor = np.asarray(kp_source_value), np.asarray(kp_anchor_value)
  if source.shape != anchor.shape or source.ndim != 3 or source.shape[-1] != 2:
    raise ValueError(f"keypoints must both be (B, K, 2); got {source.shape} and {anchor.shape}")
  scales = []
  for s, a in zip(source, anchor):
    anchor_area = convex_hull_area(a)
    if anchor_area <= 0:
      raise ValueError("the anchor frame's keypoints are collinear: the movement scale is undefined "
                       "(use relative motion without adapt_scale)")
    scales.append(np.sqrt(convex_hull_area(s)) / np.sqrt(anchor_area))
  return np.asarray(scales, np.float32)


def relative_keypoints(kp_source: dict, kp_driving: dict, kp_anchor: dict, scale) -> dict:
  """Keypoints {'value' (B, K, 2), 'jacobian' (B, K, 2, 2) if present} that move the source as the driving frame
  moved from the anchor frame; `scale` is a scalar or (B,) (see `movement_scale`). Jittable."""
  scale = jnp.asarray(scale, kp_driving["value"].dtype)
  scale = scale.reshape(scale.shape + (1, 1)) if scale.ndim == 1 else scale
  out = dict(kp_driving)
  out["value"] = (kp_driving["value"] - kp_anchor["value"]) * scale + kp_source["value"]
  if "jacobian" in kp_driving:
    change = jnp.matmul(kp_driving["jacobian"], jnp.linalg.inv(kp_anchor["jacobian"]))
    out["jacobian"] = jnp.matmul(change, kp_source["jacobian"])
  return out
