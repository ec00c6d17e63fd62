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


# Parity errors measured by the tests, printed as one table at the end of the run.
PARITY_REPORT: list[tuple[str, float, float]] = []


def report_parity(name: str, error: float, bound: float) -> None:
  PARITY_REPORT.append((name, error, bound))


def pytest_terminal_summary(terminalreporter):
  if not PARITY_REPORT:
    return
  terminalreporter.section("parity against the official PyTorch fixture (relative error, bound)")
  for name, error, bound in PARITY_REPORT:
    flag = "ok" if error <= bound else "FAIL"
    terminalreporter.write_line(f"{name:60s} {error:10.3e}  <= {bound:.0e}  {flag}")
