"""Training throughput of MCC: samples/s of the full jitted iteration (generator + motion estimator update, EMA,
discriminator update) per batch size and dtype, FLOPs from the compiled step and MFU against the device's measured
matmul peak. One device; the state is donated and rebound each call, as in training.

  python benchmarks/train_step.py --out train_step.json
  python benchmarks/train_step.py --config configs/tiny.py --batch-sizes 2 --repeats 3     # smoke run

Random weights, and a random VGG19 for the perceptual loss unless --vgg19 (torchvision's vgg19-dcbb9e9d.pth):
the cost does not depend on the values. --no-gan times the iterations before `net_d_start_iter` (no
discriminator). The official PyTorch training step is not timed here.
"""
import argparse
import pathlib
import sys
import time

if not __package__:  # run as a script: benchmarks/input_pipeline.py would shadow the input_pipeline package
  _here = pathlib.Path(__file__).resolve().parent
  sys.path = [p for p in sys.path if pathlib.Path(p or ".").resolve() != _here]
  sys.path.insert(0, str(_here.parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks import _common  # noqa: E402


def build_networks(config, dtype, vgg19_path: str | None):
  """(mcc, discriminator, vgg19) in `dtype` with float32 parameters."""
  from mcc_jax.models.factory import build_discriminator, build_mcc
  from mcc_jax.models.vgg import VGG19Features
  mcc = build_mcc(config.model, dtype=dtype, seed=config.seed)
  disc = build_discriminator(config.model, dtype=dtype, seed=config.seed + 2)
  if vgg19_path:
    from mcc_jax.convert.vgg19 import load_vgg19
    vgg = load_vgg19(vgg19_path, dtype=dtype)
  else:
    vgg = VGG19Features(dtype=dtype, rngs=nnx.Rngs(params=config.seed + 1))
  return mcc, disc, vgg


def build_step(config, dtype, vgg19_path: str | None, *, with_gan: bool):
  """(the jitted step, a fresh train state, the VGG19 state) on the default device: random weights, the VGG19
  from `vgg19_path` when given."""
  from mcc_jax.training.objective import LossWeights
  from mcc_jax.training.train_state import Graphdefs, create_train_state
  from mcc_jax.training.train_step import jit_train_step
  mcc, disc, vgg = build_networks(config, dtype, vgg19_path)
  graphdefs = Graphdefs(nnx.graphdef(mcc), nnx.graphdef(disc), nnx.graphdef(vgg))
  train = config.train
  weights = LossWeights(perceptual_scales=tuple(train.perceptual_scales))
  step = jit_train_step(graphdefs, with_gan=with_gan, base_lr=train.base_lr, milestones=tuple(train.milestones),
                        ema_decay=train.ema_decay, weights=weights, dtype=dtype)
  state = jax.device_put(create_train_state(mcc, disc, jax.random.key(config.seed)))
  return step, state, jax.device_put(nnx.state(vgg))


def random_batch(batch: int, size: int, seed: int) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {name: rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8) for name in ("source", "driving")}


class DonatingStep:
  """Calls a compiled step that donates its state, keeping the returned state for the next call."""

  def __init__(self, compiled, state, batch, vgg_state):
    self.compiled, self.state, self.batch, self.vgg_state = compiled, state, batch, vgg_state

  def __call__(self):
    self.state, metrics = self.compiled(self.state, self.batch, self.vgg_state)
    return metrics


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  _common.add_sweep_arguments(parser, runs="steps")
  parser.add_argument("--vgg19", default=None, help="torchvision vgg19-dcbb9e9d.pth (default: random VGG19)")
  parser.add_argument("--no-gan", action="store_true", help="time the step without the discriminator")
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  config = _common.load_benchmark_config(args)
  batch_sizes = _common.parse_batch_sizes(args.batch_sizes)
  dtypes = _common.parse_dtypes(args.dtypes)
  size = config.model.generator["img_size"]
  report = {"benchmark": "train_step", "config": args.config, "image_size": size, "with_gan": not args.no_gan,
            "attention": config.model.attention,
            "vgg19": args.vgg19 or "random", "repeats": args.repeats, "warmup": args.warmup,
            **_common.environment(), "peak": {}, "rows": [], "skipped": []}
  print(f"device: {report['device']} ({report['platform']}), jax {jax.__version__}", flush=True)
  for dtype_name, dtype in dtypes.items():
    try:
      step, state, vgg_state = build_step(config, dtype, args.vgg19, with_gan=not args.no_gan)
    except Exception as e:  # bfloat16 may not be supported by every module yet: report and go on
      _common.skip_dtype(report, dtype_name, e)
      continue
    peak = _common.record_peak(report, dtype_name, dtype, size=args.matmul_size)
    for batch_size in batch_sizes:
      batch = jax.device_put(random_batch(batch_size, size, seed=batch_size))
      row = {"dtype": dtype_name, "batch": batch_size}
      runner = None
      try:
        start = time.perf_counter()
        lowered = step.lower(state, batch, vgg_state)
        compiled = lowered.compile()
        row["compile_s"] = time.perf_counter() - start
        runner = DonatingStep(compiled, state, batch, vgg_state)
        times = _common.time_runs(runner, args.repeats, warmup=args.warmup)
        state = runner.state
        loss = float(runner()["l_g_total"])
        state = runner.state
        row.update(_common.throughput_row(items=batch_size, times=times, flops=_common.computation_flops(lowered),
                                          peak=peak["flops_per_s"], unit="samples"))
        row["l_g_total_last"] = loss
      except Exception as e:  # e.g. out of device memory at a large batch
        row["error"] = f"{type(e).__name__}: {e}"
        print(f"{dtype_name} batch {batch_size}: {row['error']}", flush=True)
        state = runner.state if runner is not None else state
        if any(leaf.is_deleted() for leaf in jax.tree.leaves(state)):  # donated to a failed call
          break
      else:
        f = _common.format_number
        print(f"{dtype_name:9s} batch {batch_size:3d}: {f(row['samples_per_s'])} samples/s  median "
              f"{f(row['median_s'])} s  {f(row['gflop_per_item'], 4)} GFLOP/sample  MFU {f(row['mfu'])}  "
              f"compile {row['compile_s']:.1f} s", flush=True)
      report["rows"].append(row)
    del state, vgg_state
  print_table(report)
  _common.write_report(report, args.out)
  return 0


def print_table(report: dict) -> None:
  f = _common.format_number
  print("\ndtype      batch  samples/s  median_s   GFLOP/sample  MFU")
  for row in report["rows"]:
    if "error" in row:
      print(f"{row['dtype']:9s}  {row['batch']:5d}  {row['error'][:80]}")
      continue
    print(f"{row['dtype']:9s}  {row['batch']:5d}  {f(row['samples_per_s']):9s}  {f(row['median_s']):9s}  "
          f"{f(row['gflop_per_item'], 4):13s}  {f(row['mfu'])}")
  _common.print_peaks_and_skipped(report)


if __name__ == "__main__":
  try:
    sys.exit(main())
  except (FileNotFoundError, ValueError, RuntimeError) as e:  # bad flags, files or clone: one line, no traceback
    sys.exit(f"error: {e}")
