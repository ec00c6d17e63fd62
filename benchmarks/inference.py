"""Inference throughput of MCC (motion estimator + generator, source and driving frame -> frame): frames/s per batch
size and dtype, FLOPs from the compiled computation and MFU against the device's measured matmul peak.

  python benchmarks/inference.py --out inference.json
  python benchmarks/inference.py --config configs/tiny.py --batch-sizes 1,2 --repeats 3      # smoke run
  python benchmarks/inference.py --official-repo ~/synergize-motion-appearance --dtypes float32

Random weights unless --checkpoint (an mcc_jax model checkpoint): the cost does not depend on the values.
--official-repo times the official PyTorch code (`net_motion_estimator(driving, source)` then
`net_g(source, dm, w=1, inference=True)`, eval mode, torch.inference_mode) from a clone of
ShaelynZ/synergize-motion-appearance, built from its options/test.yml and holding this run's weights, on the same
inputs and batch sizes, and prints the frames/s ratio. The official code is float32 only: bfloat16 rows are
compared with its float32 time.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import time
import types

if "--official-repo" in " ".join(sys.argv):  # torch shares the accelerator: no JAX preallocation of its memory
  os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
if not __package__:  # run as a script: benchmarks/input_pipeline.py would shadow the input_pipeline package
  _here = pathlib.Path(__file__).resolve().parent
  sys.path = [p for p in sys.path if pathlib.Path(p or ".").resolve() != _here]
  sys.path.insert(0, str(_here.parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks import _common  # noqa: E402

OFFICIAL_ARCHS = ("appmotioncodebook_arch", "motion_estimator_arch")


def build_model(config, checkpoint: str | None, dtype):
  """The MCC model in eval mode: random weights from the config's seed, or a saved mcc_jax checkpoint."""
  if checkpoint:
    from mcc_jax.model_checkpoint import load_model
    from mcc_jax.models.factory import attention_implementation
    model = load_model(checkpoint, dtype=dtype, attention=attention_implementation(config.model))
  else:
    from mcc_jax.models.factory import build_mcc
    model = build_mcc(config.model, dtype=dtype, seed=config.seed)
  model.eval()
  return model


def inference_fn(graphdef):
  """(state, source, driving) -> generated frame, as one jitted computation."""
  def infer(state, source, driving):
    return nnx.merge(graphdef, state).forward(source, driving, inference=True)["out"]
  return jax.jit(infer)


def random_frames(batch: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """A (source, driving) pair of NHWC float32 frames in [-1, 1]."""
  rng = np.random.default_rng(seed)
  return tuple(rng.uniform(-1, 1, (batch, size, size, 3)).astype(np.float32) for _ in range(2))


# --- the official PyTorch code, from a user's clone -------------------------------------------------------------

def import_official_archs(repo: pathlib.Path) -> dict[str, types.ModuleType]:
  """The official arch modules that define `net_g` and `net_motion_estimator`, imported from `repo`.

  basicsr's own package __init__ files import its whole training stack (datasets, losses, metrics, the CUDA
  deformable-conv extension); they are bypassed by registering `basicsr` and `basicsr.archs` as bare packages
  over the clone's folders, so only the arch files and the utilities they import are loaded.
  """
  archs = repo / "basicsr" / "archs"
  missing = [name for name in OFFICIAL_ARCHS if not (archs / f"{name}.py").is_file()]
  if missing:
    raise FileNotFoundError(f"{repo} is not a clone of ShaelynZ/synergize-motion-appearance: "
                            f"{', '.join(f'basicsr/archs/{m}.py' for m in missing)} not found")
  loaded = sys.modules.get("basicsr")
  if loaded is not None and pathlib.Path(list(getattr(loaded, "__path__", [""]))[0]).resolve() != (
      repo / "basicsr").resolve():
    raise RuntimeError(f"another basicsr is already imported ({loaded}); run the benchmark in a fresh process")
  for name, folder in (("basicsr", repo / "basicsr"), ("basicsr.archs", archs)):
    if name not in sys.modules:
      package = types.ModuleType(name)
      package.__path__ = [str(folder)]
      sys.modules[name] = package
  import importlib
  modules = {}
  for name in OFFICIAL_ARCHS:
    try:
      modules[name] = importlib.import_module(f"basicsr.archs.{name}")
    except ModuleNotFoundError as e:
      raise RuntimeError(f"the official code (basicsr/archs/{name}.py) imports '{e.name}', which is not "
                         f"installed here: pip install {e.name}") from e
  return modules


def check_paper_model(model_config) -> None:
  """The official code hard-codes 256 px and the paper widths: only the paper model can be compared."""
  from mcc_jax.convert.official import paper_model_config
  paper = paper_model_config()
  # Through JSON: tuples and lists compare alike (a saved checkpoint's config has lists).
  as_json = lambda section: json.loads(json.dumps(section, default=lambda x: x.to_dict()))
  for part in ("generator", "motion_estimator"):
    if as_json(model_config[part]) != as_json(paper[part]):
      raise ValueError(f"--official-repo needs the paper model (configs/paper.py): the official code hard-codes "
                       f"its sizes, and this config's model.{part} differs")


class OfficialModel:
  """`net_motion_estimator` + `net_g` of the official code, built from its options/test.yml, holding given
  official-layout state_dicts, in eval mode on `device`."""

  def __init__(self, repo: pathlib.Path, net_g: dict, motion_estimator: dict, device: str):
    import torch
    import yaml
    modules = import_official_archs(repo)
    options = yaml.safe_load((repo / "options" / "test.yml").read_text())
    self.net_g = self._build(modules, options["network_g"])
    self.net_motion_estimator = self._build(modules, options["network_motion_estimator"])
    for name, net, weights in (("net_g", self.net_g, net_g),
                               ("net_motion_estimator", self.net_motion_estimator, motion_estimator)):
      result = net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()}, strict=True)
      if result.missing_keys or result.unexpected_keys:
        raise RuntimeError(f"{name}: {result}")
      net.to(device).eval()
    self.device = device
    self.repo = repo

  @staticmethod
  def _build(modules, network_options: dict):
    options = dict(network_options)
    type_name = options.pop("type")
    for module in modules.values():
      if hasattr(module, type_name):
        return getattr(module, type_name)(**options)
    raise RuntimeError(f"options/test.yml names network type {type_name}, not defined in {OFFICIAL_ARCHS}")

  def commit(self) -> str | None:
    try:
      return subprocess.run(["git", "-C", str(self.repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
      return None

  def settings(self) -> dict:
    import torch
    return {"device": self.device, "dtype": "float32", "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32}

  def inputs(self, source: np.ndarray, driving: np.ndarray):
    import torch
    to_torch = lambda x: torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(self.device)
    return to_torch(source), to_torch(driving)

  def __call__(self, source, driving):
    import torch
    with torch.inference_mode():
      motion = self.net_motion_estimator(driving, source)
      return self.net_g(source, motion, w=1, inference=True)["out"]

  def time_runs(self, source, driving, repeats: int, warmup: int = 1) -> list[float]:
    import torch
    synchronize = torch.cuda.synchronize if self.device.startswith("cuda") else (lambda: None)
    times = []
    for i in range(warmup + repeats):
      start = time.perf_counter()
      self(source, driving)
      synchronize()
      if i >= warmup:
        times.append(time.perf_counter() - start)
    return times


def official_device() -> str:
  import torch
  return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
  reference = reference.astype(np.float64)
  return float(np.linalg.norm(ours.astype(np.float64) - reference) / max(np.linalg.norm(reference), 1e-30))


# --- the benchmark -----------------------------------------------------------------------------------------------

def compare_with_official(official: OfficialModel, row: dict, ours: np.ndarray, source: np.ndarray,
                          driving: np.ndarray, official_times: dict, report: dict, args, *, first: bool) -> None:
  """Adds the official code's timing at this batch size (measured once, shared by the dtypes) and the frames/s
  ratio to `row`; at the first batch size, also how far our frames are from the official ones."""
  batch = row["batch"]
  torch_source, torch_driving = official.inputs(source, driving)
  if first:
    reference = official(torch_source, torch_driving).float().cpu().numpy().transpose(0, 2, 3, 1)
    agreement = {"dtype": row["dtype"], "batch": batch, "relative_l2": relative_error(ours, reference),
                 "max_abs": float(np.max(np.abs(ours - reference)))}
    report["official"]["agreement"].append(agreement)
    print(f"sanity: ours ({row['dtype']}) vs official (float32) at batch {batch}: relative L2 "
          f"{agreement['relative_l2']:.2e}, max |diff| {agreement['max_abs']:.2e}", flush=True)
  if batch not in official_times:
    official_times[batch] = official.time_runs(torch_source, torch_driving, args.repeats, args.warmup)
  float32_peak = report["peak"].get("float32", report["peak"][row["dtype"]])["flops_per_s"]
  row["official"] = _common.throughput_row(items=batch, times=official_times[batch], flops=row["flops"],
                                           peak=float32_peak, unit="frames")
  row["speedup_vs_official"] = row["frames_per_s"] / row["official"]["frames_per_s"]


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  _common.add_sweep_arguments(parser, runs="runs")
  parser.add_argument("--checkpoint", default=None, help="an mcc_jax model checkpoint (default: random weights)")
  parser.add_argument("--official-repo", default=None, help="a clone of ShaelynZ/synergize-motion-appearance")
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  config = _common.load_benchmark_config(args)
  if args.checkpoint:
    from mcc_jax.model_checkpoint import read_model_config
    attention = config.model.attention
    config.model = read_model_config(args.checkpoint)
    config.model.attention = attention
  batch_sizes = _common.parse_batch_sizes(args.batch_sizes)
  dtypes = _common.parse_dtypes(args.dtypes)
  size = config.model.generator["img_size"]
  official = None
  if args.official_repo:
    try:
      import torch
    except ImportError as e:
      raise SystemExit("--official-repo runs the official PyTorch code: install torch (pip install torch)") from e
    check_paper_model(config.model)
    torch.set_num_threads(os.cpu_count())
    torch.backends.cudnn.benchmark = True  # as the official test script sets it
  report = {"benchmark": "inference", "config": args.config, "checkpoint": args.checkpoint, "image_size": size,
            "attention": config.model.attention,
            "repeats": args.repeats, "warmup": args.warmup, **_common.environment(), "peak": {}, "rows": [],
            "skipped": []}
  print(f"device: {report['device']} ({report['platform']}), jax {jax.__version__}", flush=True)

  official_times: dict[int, list[float]] = {}
  for dtype_name, dtype in dtypes.items():
    try:
      model = build_model(config, args.checkpoint, dtype)
    except Exception as e:  # bfloat16 may not be supported by every module yet: report and go on
      _common.skip_dtype(report, dtype_name, e)
      continue
    peak = _common.record_peak(report, dtype_name, dtype, size=args.matmul_size)
    if args.official_repo and official is None:
      from mcc_jax.convert import export_state_dict
      official = OfficialModel(pathlib.Path(args.official_repo).expanduser(), export_state_dict(model.generator),
                               export_state_dict(model.motion_estimator), official_device())
      report["official"] = {"repo": str(official.repo), "commit": official.commit(), **official.settings(),
                            "agreement": []}
    graphdef, state = nnx.split(model)
    infer = inference_fn(graphdef)
    for batch in batch_sizes:
      source_np, driving_np = random_frames(batch, size, seed=batch)
      source, driving = jax.device_put(source_np), jax.device_put(driving_np)
      row = {"dtype": dtype_name, "batch": batch}
      try:
        start = time.perf_counter()
        lowered = infer.lower(state, source, driving)
        compiled = lowered.compile()
        row["compile_s"] = time.perf_counter() - start
        times = _common.time_runs(lambda: compiled(state, source, driving), args.repeats, warmup=args.warmup)
        row.update(_common.throughput_row(items=batch, times=times, flops=_common.computation_flops(lowered),
                                          peak=peak["flops_per_s"], unit="frames"))
        ours = np.asarray(compiled(state, source, driving), np.float32)
      except Exception as e:  # e.g. out of device memory at a large batch
        row["error"] = f"{type(e).__name__}: {e}"
        report["rows"].append(row)
        print(f"{dtype_name} batch {batch}: {row['error']}", flush=True)
        continue
      if official is not None:
        try:
          compare_with_official(official, row, ours, source_np, driving_np, official_times, report, args,
                                first=batch == batch_sizes[0])
        except Exception as e:  # e.g. the official code out of device memory at a large batch
          row["official"] = {"error": f"{type(e).__name__}: {e}"}
          print(f"official at batch {batch}: {row['official']['error']}", flush=True)
      report["rows"].append(row)
      print(format_row(row), flush=True)
    del model, state, infer
  print_table(report)
  _common.write_report(report, args.out)
  return 0


def format_row(row: dict) -> str:
  f = _common.format_number
  text = (f"{row['dtype']:9s} batch {row['batch']:3d}: {f(row['frames_per_s'])} frames/s  median "
          f"{f(row['median_s'])} s  {f(row['gflop_per_item'], 4)} GFLOP/frame  MFU {f(row['mfu'], 3)}  "
          f"compile {row['compile_s']:.1f} s")
  if "speedup_vs_official" in row:
    text += (f"  | official {f(row['official']['frames_per_s'])} frames/s  ours/official "
             f"{row['speedup_vs_official']:.2f}x")
  return text


def print_table(report: dict) -> None:
  f = _common.format_number
  print("\ndtype      batch  frames/s   median_s   GFLOP/frame   MFU      official f/s   ours/official")
  for row in report["rows"]:
    if "error" in row:
      print(f"{row['dtype']:9s}  {row['batch']:5d}  {row['error'][:80]}")
      continue
    official = row.get("official", {})
    print(f"{row['dtype']:9s}  {row['batch']:5d}  {f(row['frames_per_s']):9s}  {f(row['median_s']):9s}  "
          f"{f(row['gflop_per_item'], 4):12s}  {f(row['mfu']):7s}  {f(official.get('frames_per_s')):13s}  "
          f"{f(row.get('speedup_vs_official'))}")
  _common.print_peaks_and_skipped(report)


if __name__ == "__main__":
  try:
    sys.exit(main())
  except (FileNotFoundError, ValueError, RuntimeError) as e:  # bad flags, files or clone: one line, no traceback
    sys.exit(f"error: {e}")
