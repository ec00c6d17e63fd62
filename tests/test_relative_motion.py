"""Relative keypoint motion against an independent float64 numpy/scipy version of the official normalize_kp."""
import numpy as np
import pytest

from mcc_jax.evaluation.relative_motion import convex_hull_area, movement_scale, relative_keypoints

spatial = pytest.importorskip("scipy.spatial")


def reference_normalize_kp(kp_source, kp_driving, kp_anchor, adapt_scale: bool) -> dict:
  """normalize_kp with relative movement and jacobian, float64, one movement scale per example."""
  value_s, value_d, value_a = (np.asarray(kp["value"], np.float64) for kp in (kp_source, kp_driving, kp_anchor))
  jac_s, jac_d, jac_a = (np.asarray(kp["jacobian"], np.float64) for kp in (kp_source, kp_driving, kp_anchor))
  out = {"value": np.empty_like(value_d), "jacobian": np.empty_like(jac_d)}
  for b in range(len(value_d)):
    scale = 1.0
    if adapt_scale:
      scale = np.sqrt(spatial.ConvexHull(value_s[b]).volume) / np.sqrt(spatial.ConvexHull(value_a[b]).volume)
    out["value"][b] = (value_d[b] - value_a[b]) * scale + value_s[b]
    for k in range(value_d.shape[1]):
      out["jacobian"][b, k] = jac_d[b, k] @ np.linalg.inv(jac_a[b, k]) @ jac_s[b, k]
  return out


def random_keypoints(rng, batch: int, num_kp: int) -> dict:
  jacobian = np.eye(2) + 0.3 * rng.standard_normal((batch, num_kp, 2, 2))
  return {"value": rng.uniform(-0.9, 0.9, (batch, num_kp, 2)).astype(np.float32),
          "jacobian": jacobian.astype(np.float32)}


@pytest.mark.parametrize("num_points", [3, 5, 15, 60])
def test_hull_area_matches_scipy(num_points):
  rng = np.random.default_rng(num_points)
  for _ in range(20):
    points = rng.standard_normal((num_points, 2))
    np.testing.assert_allclose(convex_hull_area(points), spatial.ConvexHull(points).volume, rtol=1e-12)


def test_hull_area_with_interior_collinear_and_repeated_points():
  square = np.array([[0, 0], [2, 0], [2, 2], [0, 2]], np.float64)
  extra = np.array([[1, 0], [2, 1], [1, 1], [0, 0], [2, 2], [0.5, 1.5]])  # on edges, inside, repeated corners
  assert convex_hull_area(np.concatenate([square, extra])) == pytest.approx(4.0, rel=1e-12)
  assert convex_hull_area(np.array([[0, 0], [1, 1], [2, 2], [3, 3]])) == 0.0
  assert convex_hull_area(np.array([[0, 0], [0, 0], [1, 0]])) == 0.0
  with pytest.raises(ValueError, match=r"\(N, 2\)"):
    convex_hull_area(np.zeros((4, 3)))


@pytest.mark.parametrize("adapt_scale", [True, False])
def test_relative_keypoints_match_float64_reference(adapt_scale):
  rng = np.random.default_rng(1)
  kp_source, kp_driving, kp_anchor = (random_keypoints(rng, 4, 15) for _ in range(3))
  scale = movement_scale(kp_source["value"], kp_anchor["value"]) if adapt_scale else 1.0
  ours = relative_keypoints(kp_source, kp_driving, kp_anchor, scale)
  expected = reference_normalize_kp(kp_source, kp_driving, kp_anchor, adapt_scale)
  # float32 inputs and arithmetic against float64: a few ulps of values around 1
  np.testing.assert_allclose(np.asarray(ours["value"]), expected["value"], rtol=0, atol=2e-6)
  np.testing.assert_allclose(np.asarray(ours["jacobian"]), expected["jacobian"], rtol=1e-5, atol=1e-5)


def test_anchor_frame_gives_the_source_keypoints():
  rng = np.random.default_rng(2)
  kp_source, kp_anchor = random_keypoints(rng, 2, 5), random_keypoints(rng, 2, 5)
  out = relative_keypoints(kp_source, kp_anchor, kp_anchor, movement_scale(kp_source["value"], kp_anchor["value"]))
  np.testing.assert_allclose(np.asarray(out["value"]), kp_source["value"], atol=1e-6)
  np.testing.assert_allclose(np.asarray(out["jacobian"]), kp_source["jacobian"], atol=1e-5)


def test_movement_scale_is_per_example_and_rejects_collinear_anchor():
  rng = np.random.default_rng(3)
  anchor = rng.uniform(-1, 1, (2, 6, 2))
  source = anchor * np.array([2.0, 0.5])[:, None, None]  # areas x4 and x0.25
  np.testing.assert_allclose(movement_scale(source, anchor), [2.0, 0.5], rtol=1e-6)
  line = np.stack([np.linspace(-1, 1, 6)] * 2, axis=-1)[None]
  with pytest.raises(ValueError, match="collinear"):
    movement_scale(source[:1], line)
