"""Test set-up: 8 fake CPU devices and a persistent compilation cache, fixed before jax is imported."""
import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402
import pytest  # noqa: E402

_CACHE = pathlib.Path(os.environ.get("MCC_JAX_TEST_CACHE", pathlib.Path.home() / ".cache" / "mcc_jax_test_xla"))
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"
PARITY_DIR = SHARED / "reference" / "parity"
REAL_MEDIA = SHARED / "real_media"


@pytest.fixture(scope="session")
def parity_dir() -> pathlib.Path:
  if not (PARITY_DIR / "mcc_parity_fixture.npz").exists():
    pytest.skip(f"parity fixture not found at {PARITY_DIR} (it lives in ../shared/reference/parity)")
  return PARITY_DIR
