"""The official weights of the parity fixture (built by the fill rule in ../shared/reference/parity/fill.py)."""
import functools
import importlib.util
import pathlib

import numpy as np

from conftest import PARITY_DIR, SHARED, report_parity

KEYS_TSV = SHARED / "reference" / "mcc_state_dict_keys.tsv"


@functools.cache
def _fill():
  spec = importlib.util.spec_from_file_location("parity_fill", PARITY_DIR / "fill.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.fill


@functools.cache
def official_keys() -> dict[str, dict[str, tuple]]:
  """{net: {key: shape}} for net_g, net_motion_estimator and net_d, from mcc_state_dict_keys.tsv."""
  keys = {}
  for line in KEYS_TSV.read_text().splitlines():
    if line.startswith("#") or line.startswith("net\t") or not line.strip():
      continue
    net, key, shape, _, _ = line.split("\t")
    keys.setdefault(net, {})[key] = () if shape == "scalar" else tuple(int(s) for s in shape.split("x"))
  return keys


def filled_state_dict(net: str, salt: str = "") -> dict[str, np.ndarray]:
  fill = _fill()
  return {key: fill(f"{net}/{key}", shape, salt) for key, shape in official_keys()[net].items()}


VGG19_CONVS = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
VGG19_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512)


def filled_vgg19(salt: str = "") -> dict[str, np.ndarray]:
  """torchvision vgg19 `features` weights filled by the fixture's rule (`vgg19/features.N.weight`)."""
  fill, weights, in_channels = _fill(), {}, 3
  for index, width in zip(VGG19_CONVS, VGG19_WIDTHS):
    weights[f"vgg19/features.{index}.weight"] = fill(f"vgg19/features.{index}.weight", (width, in_channels, 3, 3), salt)
    weights[f"vgg19/features.{index}.bias"] = fill(f"vgg19/features.{index}.bias", (width,), salt)
    in_channels = width
  return weights


def load_fixture() -> dict[str, np.ndarray]:
  with np.load(PARITY_DIR / "mcc_parity_fixture.npz") as data:
    return {k: data[k] for k in data.files}


def rel_error(got, want) -> float:
  got = np.asarray(got, np.float64)
  want = np.asarray(want, np.float64)
  if got.shape != want.shape:
    raise AssertionError(f"shape {got.shape} != reference {want.shape}")
  norm = np.linalg.norm(want)
  return float(np.linalg.norm(got - want) / (norm if norm > 0 else 1.0))


def assert_parity(label: str, got, want, bound: float) -> None:
  """Relative error within `bound`, recorded for the end-of-run parity table."""
  error = rel_error(got, want)
  report_parity(label, error, bound)
  assert error <= bound, f"{label}: relative error {error:.3e} > {bound:.0e}"


def filled_vgg19_features(dtype):
  """The perceptual loss's VGG19 holding the fixture's filled weights."""
  from mcc_jax.convert.vgg19 import vgg19_from_state_dict
  weights = {k.removeprefix("vgg19/"): v for k, v in filled_vgg19().items()}
  return vgg19_from_state_dict(weights, dtype=dtype, param_dtype=dtype)


def fixture_transform(fixture: dict):
  """The equivariance transform the fixture drew (stored as float32, as the official tensors are)."""
  import jax.numpy as jnp

  from mcc_jax.losses import RandomTPS
  eq = "losses/equivariance/"
  batch = fixture[eq + "theta"].shape[0]
  return RandomTPS(theta=jnp.asarray(fixture[eq + "theta"]),
                   control_points=jnp.asarray(fixture[eq + "control_points"]).reshape(-1, 2),
                   control_params=jnp.asarray(fixture[eq + "control_params"]).reshape(batch, -1))


def nchw(x) -> np.ndarray:
  return np.transpose(np.asarray(x), (0, 3, 1, 2))


def nhwc(x) -> np.ndarray:
  return np.transpose(np.asarray(x), (0, 2, 3, 1))


def exists() -> bool:
  return (PARITY_DIR / "mcc_parity_fixture.npz").exists() and KEYS_TSV.exists()


def skip_reason() -> str:
  return f"parity fixture or key list not found under {pathlib.Path(SHARED)} (../shared/reference)"
