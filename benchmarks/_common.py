"""Shared pieces of the throughput benchmarks: timing, FLOPs of a compiled computation, the device's
measured matmul peak, versions and the JSON report."""
import importlib.metadata
import json
import os
import pathlib
import platform
import statistics
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

DTYPES = {"float32": jnp.float32, "fp32": jnp.float32, "bfloat16": jnp.bfloat16, "bf16": jnp.bfloat16}
ACCELERATOR_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
CPU_BATCH_SIZES = (1, 2)


def parse_batch_sizes(text: str | None) -> tuple[int, ...]:
  """'1,2,4' -> (1, 2, 4); None -> the default for the platform of the default device."""
  if not text:
    return CPU_BATCH_SIZES if jax.default_backend() == "cpu" else ACCELERATOR_BATCH_SIZES
  sizes = tuple(int(s) for s in text.split(",") if s.strip())
  if not sizes or min(sizes) < 1:
    raise ValueError(f"--batch-sizes needs positive integers, got {text!r}")
  return sizes


def parse_dtypes(text: str) -> dict[str, jnp.dtype]:
  """'float32,bfloat16' -> {'float32': float32, 'bfloat16': bfloat16} (fp32 and bf16 accepted too)."""
  names = [s.strip() for s in text.split(",") if s.strip()]
  unknown = [n for n in names if n not in DTYPES]
  if unknown or not names:
    raise ValueError(f"--dtypes takes a comma list of {sorted(DTYPES)}, got {text!r}")
  return {jnp.dtype(DTYPES[n]).name: DTYPES[n] for n in names}


def computation_flops(lowered: jax.stages.Lowered) -> float | None:
  """FLOPs of the computation as written (a multiply-add counts 2), from XLA's cost analysis of the lowered,
  not yet optimised module: the same count on every backend. A compiled GPU module hides its convolutions in
  library calls that its own cost analysis leaves out (an H200 run counted 17 of the 368 GFLOP per frame)."""
  analysis = lowered.cost_analysis()  # None on some backends (seen for the train step on an H200)
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if not analysis or "flops" not in analysis:
    return None
  flops = float(analysis["flops"])
  return flops if flops > 0 else None


def time_runs(run: Callable[[], object], repeats: int, *, warmup: int = 1) -> list[float]:
  """Wall seconds of `repeats` calls of `run` after `warmup` untimed ones, each waited for on the device.

  The calls run under `jax.transfer_guard('disallow')`: an implicit host <-> device copy inside the timed loop
  is an error, not a silent cost.
  """
  if repeats < 1:
    raise ValueError(f"repeats must be at least 1, got {repeats}")
  times = []
  with jax.transfer_guard("disallow"):
    for i in range(warmup + repeats):
      start = time.perf_counter()
      jax.block_until_ready(run())
      if i >= warmup:
        times.append(time.perf_counter() - start)
  return times


def timing_summary(times: list[float]) -> dict:
  return {"median_s": statistics.median(times), "min_s": min(times), "times_s": [round(t, 5) for t in times]}


def default_matmul_size(dtype) -> int:
  if jax.default_backend() == "cpu":
    return 2048
  return 8192 if jnp.dtype(dtype).itemsize <= 2 else 4096


def add_sweep_arguments(parser, *, runs: str) -> None:
  """The flags both throughput benchmarks take; `runs` names what is timed ("runs", "steps")."""
  parser.add_argument("--batch-sizes", default=None,
                      help="comma list (default 1,2,4,8,16,32,64 on accelerators, 1,2 on CPU)")
  parser.add_argument("--dtypes", default="float32,bfloat16", help="activation dtypes; parameters stay float32")
  parser.add_argument("--repeats", type=int, default=5, help=f"timed {runs} per point (median reported)")
  parser.add_argument("--warmup", type=int, default=1, help=f"untimed {runs} before the timed ones")
  parser.add_argument("--config", default="configs/paper.py", help="config file[:arg] (configs/tiny.py: smoke run)")
  add_attention_argument(parser)
  parser.add_argument("--matmul-size", type=int, default=None, help="square matmul size of the peak measurement")
  parser.add_argument("--out", default=None, help="JSON report path (default: print it)")


def add_attention_argument(parser) -> None:
  parser.add_argument("--attention", choices=("xla", "pallas"), default=None,
                      help="the codebook transformers' attention (default: the config's model.attention)")


def load_benchmark_config(args):
  """The config file of --config, with --attention (when given) as its model.attention."""
  from configs import load_config_file
  from mcc_jax.models.factory import attention_implementation
  config = load_config_file(args.config)
  config.model.attention = args.attention or attention_implementation(config.model)
  return config


def skip_dtype(report: dict, dtype_name: str, error: Exception) -> None:
  """Record and print that `dtype_name` could not be built (bfloat16 may not be supported everywhere)."""
  report["skipped"].append({"dtype": dtype_name, "reason": f"{type(error).__name__}: {error}"})
  print(f"skipping {dtype_name}: {type(error).__name__}: {error}", flush=True)


def record_peak(report: dict, dtype_name: str, dtype, *, size: int | None) -> dict:
  """measure_peak_flops for `dtype`, stored in report["peak"] and printed."""
  peak = report["peak"][dtype_name] = measure_peak_flops(dtype, size=size)
  print(f"{dtype_name}: measured matmul peak {peak['flops_per_s'] / 1e12:.3f} TFLOP/s "
        f"({peak['matmul_size']}^2 matmul)", flush=True)
  return peak


def measure_peak_flops(dtype, *, size: int | None = None, repeats: int = 5) -> dict:
  """The device's FLOP/s on a square `size` matmul in `dtype` (best of `repeats` after a warm-up): the peak that
  MFU is measured against. Accumulates in float32 as the models do."""
  size = size or default_matmul_size(dtype)
  keys = jax.random.split(jax.random.key(0), 2)
  a = jax.random.normal(keys[0], (size, size), jnp.float32).astype(dtype)
  b = jax.random.normal(keys[1], (size, size), jnp.float32).astype(dtype)
  matmul = jax.jit(lambda x, y: jnp.dot(x, y, preferred_element_type=jnp.float32))
  times = time_runs(lambda: matmul(a, b), repeats, warmup=2)
  flops = 2.0 * size**3
  return {"dtype": jnp.dtype(dtype).name, "matmul_size": size, "seconds": min(times),
          "flops_per_s": flops / min(times)}


def throughput_row(*, items: int, times: list[float], flops: float | None, peak: float | None,
                   unit: str) -> dict:
  """One table row: items/s from the median time, FLOPs per item and MFU = flops / median / peak."""
  summary = timing_summary(times)
  median = summary["median_s"]
  row = {f"{unit}_per_s": items / median, **summary, "flops": flops,
         "gflop_per_item": None if flops is None else flops / items / 1e9, "mfu": None}
  if flops is not None and peak:
    row["mfu"] = flops / median / peak
  return row


def _version(package: str) -> str | None:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return None


def _host_processor() -> str:
  cpuinfo = pathlib.Path("/proc/cpuinfo")
  if cpuinfo.is_file():
    for line in cpuinfo.read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  return platform.processor() or platform.machine()


def environment() -> dict:
  """Device name, platform and the versions that decide the numbers."""
  device = jax.devices()[0]
  return {
      "device": device.device_kind, "platform": device.platform, "device_count": jax.device_count(),
      "host": _host_processor(), "cpu_count": os.cpu_count(),
      "default_matmul_precision": jax.config.jax_default_matmul_precision,
      "versions": {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": _version("jaxlib"),
                   "flax": _version("flax"), "numpy": np.__version__, "torch": _version("torch")},
  }


def write_report(report: dict, out: str | None) -> None:
  text = json.dumps(report, indent=2, default=lambda x: x.item() if hasattr(x, "item") else str(x))
  if out:
    path = pathlib.Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")
    print(f"wrote {path}")
  else:
    print(text)


def format_number(value, digits: int = 3) -> str:
  if value is None:
    return "-"
  return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def print_peaks_and_skipped(report: dict) -> None:
  """The table footer both benchmarks print: the matmul peak behind each dtype's MFU, and skipped dtypes."""
  for dtype_name, peak in report["peak"].items():
    print(f"MFU peak ({dtype_name}): {peak['flops_per_s'] / 1e12:.3f} TFLOP/s measured on a "
          f"{peak['matmul_size']}^2 matmul")
  for skipped in report["skipped"]:
    print(f"skipped {skipped['dtype']}: {skipped['reason']}")
