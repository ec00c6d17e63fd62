"""L1, PSNR and SSIM against float64 numpy versions of basicsr's formulas, on real faces and synthetic noise."""
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from conftest import REAL_MEDIA
from mcc_jax.evaluation.fidelity import gaussian_window_1d, l1, psnr, ssim

CROPS = REAL_MEDIA / "crops256"
# float32 on 0-255 against float64. Measured on these faces and noise: L1 6e-8 relative, PSNR 2.4e-6 dB (the
# float32 spacing near 40 dB is 3.8e-6), SSIM 1.2e-7.
L1_RTOL = 1e-6
PSNR_ATOL_DB = 2e-5
SSIM_ATOL = 1e-6


def _window_2d() -> np.ndarray:
  """11x11 Gaussian of sigma 1.5 summing to one, from its definition."""
  offsets = np.arange(-5, 6, dtype=np.float64)
  g = np.exp(-offsets ** 2 / (2 * 1.5 ** 2))
  g /= g.sum()
  return np.outer(g, g)


def _filter_valid(channel: np.ndarray, window: np.ndarray) -> np.ndarray:
  """Correlation with `window` at every position where it fits inside the image."""
  return np.einsum("ijkl,kl->ij", sliding_window_view(channel, window.shape), window)


def _reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
  """One HxWx3 pair: per-channel SSIM maps (means, variances, covariance under the Gaussian window, stabilised by
  (0.01 L)^2 and (0.03 L)^2 with L = 255) averaged over the valid region, then over channels."""
  c1, c2, window = (0.01 * 255) ** 2, (0.03 * 255) ** 2, _window_2d()
  scores = []
  for channel in range(a.shape[-1]):
    x, y = a[..., channel].astype(np.float64), b[..., channel].astype(np.float64)
    mx, my = _filter_valid(x, window), _filter_valid(y, window)
    vx = _filter_valid(x * x, window) - mx ** 2
    vy = _filter_valid(y * y, window) - my ** 2
    cxy = _filter_valid(x * y, window) - mx * my
    scores.append(np.mean((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))))
  return float(np.mean(scores))


def _reference_psnr(a: np.ndarray, b: np.ndarray) -> float:
  mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
  return float("inf") if mse == 0 else float(20 * np.log10(255.0 / np.sqrt(mse)))


def _reference_l1(a: np.ndarray, b: np.ndarray) -> float:
  return float(np.mean(np.abs(a.astype(np.float64) - b.astype(np.float64))) / 255.0)


def _check_against_reference(pred: np.ndarray, target: np.ndarray) -> None:
  got_l1, got_psnr, got_ssim = (np.asarray(f(pred, target), np.float64) for f in (l1, psnr, ssim))
  for got in (got_l1, got_psnr, got_ssim):
    assert got.shape == (len(pred),)
  want_l1 = [_reference_l1(a, b) for a, b in zip(pred, target)]
  want_psnr = [_reference_psnr(a, b) for a, b in zip(pred, target)]
  want_ssim = [_reference_ssim(a, b) for a, b in zip(pred, target)]
  np.testing.assert_allclose(got_l1, want_l1, rtol=L1_RTOL, atol=0)
  np.testing.assert_allclose(got_psnr, want_psnr, rtol=0, atol=PSNR_ATOL_DB)
  np.testing.assert_allclose(got_ssim, want_ssim, rtol=0, atol=SSIM_ATOL)


def _real_faces(count: int) -> np.ndarray:
  Image = pytest.importorskip("PIL.Image")
  paths = sorted(CROPS.glob("*.png"))
  if len(paths) < count:
    pytest.skip(f"need {count} face crops in {CROPS} (../shared/real_media); found {len(paths)}")
  return np.stack([np.asarray(Image.open(p).convert("RGB").resize((256, 256))) for p in paths[:count]])


def test_metrics_match_basicsr_formulas_on_real_faces():
  faces = _real_faces(3)
  rng = np.random.default_rng(0)
  noisy = np.clip(faces[0].astype(np.int32) + np.round(rng.normal(0, 3, faces[0].shape)), 0, 255).astype(np.uint8)
  shifted = np.roll(faces[1], 2, axis=1)
  pred = np.stack([faces[0], faces[1], faces[0], faces[2]])
  target = np.stack([noisy, shifted, faces[2], faces[2] // 2 + 40])
  _check_against_reference(pred, target)


def test_metrics_match_basicsr_formulas_on_noise_and_extremes():
  rng = np.random.default_rng(1)
  shape = (4, 23, 37, 3)  # small, odd and not square
  pred = rng.integers(0, 256, shape, dtype=np.uint8)
  target = rng.integers(0, 256, shape, dtype=np.uint8)
  target[1] = np.clip(pred[1].astype(np.int32) + rng.integers(-2, 3, shape[1:]), 0, 255)
  pred[2], target[2] = 0, 255
  pred[3], target[3] = 17, 18
  _check_against_reference(pred, target)
  assert float(l1(pred[2:3], target[2:3])[0]) == 1.0
  assert float(psnr(pred[2:3], target[2:3])[0]) == pytest.approx(0.0, abs=PSNR_ATOL_DB)


def test_identical_images_score_perfectly():
  rng = np.random.default_rng(2)
  pred = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
  target = pred.copy()
  target[1, 3, 4, 0] ^= 1  # one value one step off: finite PSNR
  values = np.asarray(psnr(pred, target))
  assert np.isposinf(values[0]) and np.isfinite(values[1])
  assert values[1] == pytest.approx(_reference_psnr(pred[1], target[1]), abs=PSNR_ATOL_DB)
  np.testing.assert_allclose(np.asarray(ssim(pred, pred)), 1.0, rtol=0, atol=1e-7)
  np.testing.assert_array_equal(np.asarray(l1(pred, pred)), 0.0)


def test_bad_inputs_are_clear_errors():
  image = np.zeros((1, 16, 16, 3), np.uint8)
  with pytest.raises(ValueError, match="shapes differ"):
    l1(image, np.zeros((1, 16, 17, 3), np.uint8))
  with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
    psnr(image[0], image[0])
  with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
    psnr(image[..., :1], image[..., :1])
  with pytest.raises(TypeError, match="uint8"):
    ssim(image.astype(np.float32), image.astype(np.float32))
  with pytest.raises(ValueError, match="at least 11x11"):
    ssim(image[:, :10], image[:, :10])


def test_reference_window_and_filter_are_opencvs():
  """The test's own reference against the OpenCV calls basicsr makes (getGaussianKernel, filter2D)."""
  cv2 = pytest.importorskip("cv2")
  taps = cv2.getGaussianKernel(11, 1.5)[:, 0]
  np.testing.assert_allclose(gaussian_window_1d(), taps, rtol=1e-12, atol=0)
  np.testing.assert_allclose(_window_2d(), np.outer(taps, taps), rtol=1e-12, atol=0)
  channel = np.random.default_rng(3).integers(0, 256, (30, 41)).astype(np.float64)
  np.testing.assert_allclose(_filter_valid(channel, _window_2d()),
                             cv2.filter2D(channel, -1, np.outer(taps, taps))[5:-5, 5:-5], rtol=1e-10, atol=1e-9)
