"""The official weights of the parity fixture (built by the fill rule in ../shared/reference/parity/fill.py)."""
import functools
import importlib.util
import pathlib

import numpy as np

from conftest import PARITY_DIR, SHARED

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


def nchw(x) -> np.ndarray:
  return np.transpose(np.asarray(x), (0, 3, 1, 2))


def nhwc(x) -> np.ndarray:
  return np.transpose(np.asarray(x), (0, 2, 3, 1))


def exists() -> bool:
  return (PARITY_DIR / "mcc_parity_fixture.npz").exists() and KEYS_TSV.exists()


def skip_reason() -> str:
  return f"parity fixture or key list not found under {pathlib.Path(SHARED)} (../shared/reference)"
