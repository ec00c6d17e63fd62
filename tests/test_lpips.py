"""LPIPS against the `lpips` package on the same weights: its randomly initialised trunk (pnet_rand, no download)
and its shipped v0.1 heads, written to files and read back with load_lpips, scored on real faces."""
import re

import numpy as np
import pytest
from flax import nnx

from conftest import REAL_MEDIA
from mcc_jax.evaluation.errors import MissingWeightsError
from mcc_jax.evaluation.lpips import LPIPS, load_lpips, lpips_distance, packaged_heads_file

torch = pytest.importorskip("torch")
lpips = pytest.importorskip("lpips")
Image = pytest.importorskip("PIL.Image")

CROPS = REAL_MEDIA / "crops256"
# float32 on both sides with different convolution algorithms: measured <= 4e-7 relative (64-256 px).
RELATIVE_TOLERANCE = 1e-5


def _faces(size: int, count: int) -> np.ndarray:
  paths = sorted(CROPS.glob("*.png"))
  if len(paths) < count:
    pytest.skip(f"need {count} face crops in {CROPS} (../shared/real_media); found {len(paths)}")
  images = [Image.open(p).convert("RGB").resize((size, size), Image.Resampling.BILINEAR) for p in paths[:count]]
  return np.stack([np.asarray(image) for image in images])


def _perturbed(faces: np.ndarray) -> np.ndarray:
  """Slightly changed copies: sensor-like noise, a one-pixel shift, a brightness step."""
  rng = np.random.default_rng(0)
  noisy = faces.astype(np.int32) + np.round(rng.normal(0, 4, faces.shape)).astype(np.int32)
  if len(faces) > 2:
    noisy[1] = np.roll(faces[1], 1, axis=1)
    noisy[2] = faces[2].astype(np.int32) + 12
  return np.clip(noisy, 0, 255).astype(np.uint8)


def _pairs(size: int) -> tuple[np.ndarray, np.ndarray]:
  """Three face/perturbed-face pairs, then three pairs of different faces."""
  faces = _faces(size, 4)
  pred = np.concatenate([faces[:3], faces[:3]])
  target = np.concatenate([_perturbed(faces[:3]), faces[1:4]])
  return pred, target


def _exported(tmp_path_factory, net: str):
  """A torch LPIPS with a random trunk (biases drawn too, torchvision leaves them 0), saved as the two files a
  user passes: a torchvision `features.N.*` state_dict and the heads."""
  torch.manual_seed(0)
  reference = lpips.LPIPS(net=net, pnet_rand=True, verbose=False).eval()
  with torch.no_grad():
    for module in reference.net.modules():
      if isinstance(module, torch.nn.Conv2d):
        module.bias.uniform_(-0.1, 0.1)
  trunk = {}
  for key, value in reference.net.state_dict().items():
    _, index, leaf = key.split(".")
    trunk[f"features.{index}.{leaf}"] = value
  heads = {k: v for k, v in reference.state_dict().items() if re.match(r"lin\d", k)}
  folder = tmp_path_factory.mktemp(f"lpips_{net}")
  torch.save(trunk, folder / "trunk.pth")
  torch.save(heads, folder / "heads.pth")
  return reference, folder / "trunk.pth", folder / "heads.pth"


@pytest.fixture(scope="module")
def vgg(tmp_path_factory):
  return _exported(tmp_path_factory, "vgg")


def _reference_distances(reference, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
  """The official path: lpips.im2tensor on each uint8 image, then LPIPS(in0, in1)."""
  batch = lambda images: torch.cat([lpips.im2tensor(image) for image in images])  # noqa: E731
  with torch.no_grad():
    return reference(batch(pred), batch(target)).numpy().reshape(-1).astype(np.float64)


def _check_parity(reference, model, pred, target) -> None:
  want = _reference_distances(reference, pred, target)
  got = np.asarray(lpips_distance(model, pred, target), np.float64)
  assert got.shape == (len(pred),)
  relative = np.abs(got - want) / np.abs(want)
  assert relative.max() <= RELATIVE_TOLERANCE, f"relative errors {relative}, lpips {want}, ours {got}"
  # The metric separates the cases it is used for: a perturbed face is closer than another face.
  half = len(pred) // 2
  assert got[:half].max() < got[half:].min()


def test_vgg_matches_lpips_package(vgg):
  reference, trunk, heads = vgg
  model = load_lpips(trunk, net="vgg", heads_path=heads)
  assert model.name == "lpips-vgg-v0.1"
  pred, target = _pairs(64)
  _check_parity(reference, model, pred, target)
  np.testing.assert_allclose(np.asarray(lpips_distance(model, pred, pred)), 0.0, atol=1e-12)


def test_vgg_matches_lpips_package_at_256(vgg):
  reference, trunk, heads = vgg
  face = _faces(256, 1)
  want = _reference_distances(reference, face, _perturbed(face))
  got = np.asarray(lpips_distance(load_lpips(trunk, heads_path=heads), face, _perturbed(face)), np.float64)
  np.testing.assert_allclose(got, want, rtol=RELATIVE_TOLERANCE, atol=0)


def test_alexnet_matches_lpips_package(tmp_path_factory):
  reference, trunk, heads = _exported(tmp_path_factory, "alex")
  model = load_lpips(trunk, net="alex", heads_path=heads)
  assert model.name == "lpips-alex-v0.1"
  pred, target = _pairs(64)
  _check_parity(reference, model, pred, target)


def test_default_heads_are_the_packaged_v01_file(vgg):
  reference, trunk, _ = vgg
  assert packaged_heads_file("vgg").parts[-3:] == ("weights", "v0.1", "vgg.pth")
  model = load_lpips(trunk)
  for index, head in enumerate(model.lins):
    want = reference.state_dict()[f"lin{index}.model.1.weight"].numpy()  # (1, C, 1, 1)
    np.testing.assert_array_equal(np.asarray(head.kernel[...]), want.transpose(2, 3, 1, 0))


def test_missing_weights_raise_with_a_hint(tmp_path, vgg):
  with pytest.raises(MissingWeightsError, match="--lpips-backbone"):
    load_lpips(None)
  with pytest.raises(MissingWeightsError, match="does not exist"):
    load_lpips(tmp_path / "vgg16.pth")
  with pytest.raises(MissingWeightsError, match="heads"):
    load_lpips(vgg[1], heads_path=tmp_path / "heads.pth")


def test_wrong_files_and_inputs_are_clear_errors(tmp_path, vgg):
  _, trunk, heads = vgg
  with pytest.raises(ValueError, match="unknown LPIPS trunk"):
    load_lpips(trunk, net="squeeze")
  with pytest.raises(ValueError, match="does not match"):  # a VGG16 trunk given as AlexNet
    load_lpips(trunk, net="alex", heads_path=heads)
  corrupt = tmp_path / "corrupt.pth"
  corrupt.write_bytes(b"not a checkpoint")
  with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
    load_lpips(corrupt)
  model = load_lpips(trunk, heads_path=heads)
  faces = np.zeros((1, 32, 32, 3), np.uint8)
  with pytest.raises(ValueError, match="shapes differ"):
    lpips_distance(model, faces, np.zeros((1, 32, 48, 3), np.uint8))
  with pytest.raises(TypeError, match="uint8"):
    lpips_distance(model, faces.astype(np.float32), faces.astype(np.float32))
  with pytest.raises(ValueError, match="too small"):
    lpips_distance(model, faces[:, :8, :8], faces[:, :8, :8])


def test_unknown_trunk_in_module():
  with pytest.raises(ValueError, match="unknown LPIPS trunk"):
    LPIPS("resnet", rngs=nnx.Rngs(0))
