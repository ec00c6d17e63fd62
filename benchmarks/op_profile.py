"""Where the time goes: a profile of MCC inference or of the train step, summed by the model's name scopes.

  python benchmarks/op_profile.py --what inference --batch-size 16 --dtype bfloat16
  python benchmarks/op_profile.py --what train --batch-size 16 --dtype bfloat16 --depth 2
  python benchmarks/op_profile.py --config configs/tiny.py --batch-size 2 --steps 2        # smoke run

It traces `--steps` calls of the compiled computation with `jax.profiler` (the trace is kept under --trace-dir for
TensorBoard / Perfetto), maps every device op back to the HLO instruction that launched it and that instruction's
name scope (`generator/compensation_32/motion_codebook`, `transpose(...)` marking the backward pass), and prints
per scope: milliseconds per call, share of device time, the convolution and matmul GFLOP counted on the jaxpr and
the rate they ran at against the device's measured matmul peak. A scope with a large share and a low rate is where
to look. Then the slowest single ops. Random weights: the cost does not depend on the values.
"""
import argparse
import collections
import gzip
import json
import math
import pathlib
import re
import sys
import tempfile

if not __package__:  # run as a script: benchmarks/input_pipeline.py would shadow the input_pipeline package
  _here = pathlib.Path(__file__).resolve().parent
  sys.path = [p for p in sys.path if pathlib.Path(p or ".").resolve() != _here]
  sys.path.insert(0, str(_here.parent))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.extend import core as jax_core  # noqa: E402

from benchmarks import _common  # noqa: E402

TOP_LEVEL = "(top level)"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WRAPPER = re.compile(r"^(jvp|transpose)\((.*)\)$")
_INSTRUCTION = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(\S+)\s.*?([\w\-]+)\(")
_COMPUTATION = re.compile(r"^\s*(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$")


# --- name scopes ------------------------------------------------------------------------------------------------

def scope_of(name_stack: str, *, drop_last: bool) -> str:
  """The model scope of an HLO `op_name` or a jaxpr name stack, e.g.
  'jit(infer)/generator/encoder/ResBlock/conv_general_dilated' -> 'generator/encoder/ResBlock'.

  The outer `jit(fn)` and, with `drop_last`, the primitive are dropped; `jvp(...)` is unwrapped and
  `transpose(...)` (the backward pass) is unwrapped and marked by a trailing ' [bwd]'. The scope stops at the first
  component that is not a plain name (`jit(inv)`, `vmap()`, `while`): below that are library internals.
  """
  parts = name_stack.split("/") if name_stack else []
  if parts and parts[0].startswith(("jit(", "pjit(")):
    parts = parts[1:]
  if drop_last:
    parts = parts[:-1]
  scope, backward = [], False
  for part in parts:
    while (match := _WRAPPER.match(part)):
      backward |= match.group(1) == "transpose"
      part = match.group(2)
    if not _IDENTIFIER.match(part) or part in ("while", "body", "cond", "closed_call"):
      break
    scope.append(part)
  text = "/".join(scope) or TOP_LEVEL
  return text + " [bwd]" if backward else text


def truncate(scope: str, depth: int) -> str:
  """'a/b/c [bwd]' at depth 2 -> 'a/b [bwd]'."""
  backward = scope.endswith(" [bwd]")
  base = scope.removesuffix(" [bwd]")
  text = "/".join(base.split("/")[:depth]) if base != TOP_LEVEL else base
  return text + " [bwd]" if backward else text


# --- the compiled module: instruction -> scope ---------------------------------------------------------------------

def hlo_instructions(hlo_text: str) -> dict[str, dict]:
  """Every instruction of the optimised HLO module: name -> {'scope', 'primitive', 'opcode', 'target', 'shape'}.

  An instruction without an op_name of its own (many fusions) takes the first scoped instruction of the
  computation it calls.
  """
  computations: dict[str, list[str]] = {}
  instructions: dict[str, dict] = {}
  current = None
  for line in hlo_text.splitlines():
    if (match := _INSTRUCTION.match(line)) and current is not None:
      name, shape, opcode = match.groups()
      op_name = re.search(r'op_name="([^"]*)"', line)
      target = re.search(r'custom_call_target="([^"]*)"', line)
      called = re.findall(r"(?:calls|to_apply|body|condition)=%?([\w.\-]+)", line)
      instructions[name] = {"op_name": op_name.group(1) if op_name else None, "opcode": opcode, "shape": shape,
                            "target": target.group(1) if target else None, "calls": called}
      computations[current].append(name)
    elif (match := _COMPUTATION.match(line)) and "=" not in line.split("{")[0]:
      current = match.group(1)
      computations[current] = []

  def op_name_of(name: str, seen: set) -> str | None:
    info = instructions[name]
    if info["op_name"]:
      return info["op_name"]
    for computation in info["calls"]:
      for inner in computations.get(computation, ()):
        if inner not in seen:
          seen.add(inner)
          if (found := op_name_of(inner, seen)):
            return found
    return None

  summary = {}
  for name, info in instructions.items():
    op_name = op_name_of(name, {name}) or ""
    summary[name] = {"scope": scope_of(op_name, drop_last=True), "primitive": op_name.rsplit("/", 1)[-1],
                     "opcode": info["opcode"], "target": info["target"], "shape": info["shape"]}
  return summary


# --- FLOPs per scope, counted on the jaxpr ------------------------------------------------------------------------

def _conv_flops(eqn) -> float:
  """Every kernel tap counts, those on padding included (XLA's cost analysis skips them: a few % fewer)."""
  rhs = eqn.invars[1].aval
  spec = eqn.params["dimension_numbers"].rhs_spec  # (out feature, in feature, spatial...)
  kernel = math.prod(rhs.shape[d] for d in spec[2:]) * rhs.shape[spec[1]]
  return 2.0 * math.prod(eqn.outvars[0].aval.shape) * kernel


def _dot_flops(eqn) -> float:
  lhs = eqn.invars[0].aval
  (contracting, _), _ = eqn.params["dimension_numbers"]
  return 2.0 * math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs.shape[d] for d in contracting)


def _sub_jaxprs(eqn):
  """(jaxpr, multiplicity) of the computations an equation runs."""
  params = eqn.params
  if eqn.primitive.name == "scan":
    yield params["jaxpr"].jaxpr, params["length"]
    return
  if eqn.primitive.name == "cond":
    yield max(((b.jaxpr, 1) for b in params["branches"]), key=lambda b: sum(flops_by_scope(b[0]).values()))
    return
  for key, value in params.items():
    if key in ("cond_jaxpr",):
      continue
    for item in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(item, jax_core.ClosedJaxpr):
        yield item.jaxpr, 1
      elif isinstance(item, jax_core.Jaxpr):
        yield item, 1


def flops_by_scope(jaxpr, prefix: str = "", multiplier: float = 1.0,
                   totals: collections.Counter | None = None) -> collections.Counter:
  """Convolution and dot_general FLOPs (a multiply-add counts 2) per name stack, nested jaxprs included (a scan's
  body times its length, a while body once)."""
  totals = collections.Counter() if totals is None else totals
  for eqn in jaxpr.eqns:
    stack = str(eqn.source_info.name_stack)
    if prefix and not stack.startswith(prefix):
      stack = f"{prefix}/{stack}" if stack else prefix
    name = eqn.primitive.name
    if name == "conv_general_dilated":
      totals[stack] += multiplier * _conv_flops(eqn)
    elif name == "dot_general":
      totals[stack] += multiplier * _dot_flops(eqn)
    else:
      for sub, times in _sub_jaxprs(eqn):
        flops_by_scope(sub, stack, multiplier * times, totals)
  return totals


def scope_flops(fn, *args) -> dict[str, float]:
  """{scope: FLOPs} of `fn(*args)` (scopes as `scope_of` names them)."""
  totals = collections.Counter()
  for stack, flops in flops_by_scope(jax.make_jaxpr(fn)(*args).jaxpr).items():
    totals[scope_of(stack, drop_last=False)] += flops
  return dict(totals)


# --- the trace ------------------------------------------------------------------------------------------------------

def trace_events(trace_dir: pathlib.Path) -> list[dict]:
  """The complete ('X') events of the newest Perfetto trace under `trace_dir`: those of the accelerator's
  processes ('/device:GPU:0', ...) where the trace has any (host threads there only launch the ops), else all
  (on CPU the host threads run them)."""
  files = sorted(trace_dir.rglob("perfetto_trace.json.gz"), key=lambda p: p.stat().st_mtime)
  if not files:
    raise RuntimeError(f"jax.profiler wrote no perfetto_trace.json.gz under {trace_dir}")
  with gzip.open(files[-1], "rt") as f:
    data = json.load(f)
  events = data["traceEvents"] if isinstance(data, dict) else data
  device_pids = {e.get("pid") for e in events if e.get("ph") == "M" and e.get("name") == "process_name"
                 and str((e.get("args") or {}).get("name", "")).startswith("/device:")}
  return [e for e in events if e.get("ph") == "X" and "dur" in e and (not device_pids or e.get("pid") in device_pids)]


def op_times(events: list[dict], instructions: dict[str, dict]) -> dict[str, float]:
  """Microseconds per HLO instruction. A device event names its instruction in `hlo_op` (GPU) or by its own name
  (CPU thunks, TPU ops); an event inside one already counted on the same thread (a loop's body) is skipped."""
  def instruction(event):
    args = event.get("args") or {}
    for name in (args.get("hlo_op"), args.get("long_name"), event["name"]):
      if name and (name := str(name).lstrip("%").split(" ")[0]) in instructions:
        return name
    return None

  matched = [(e, op) for e in events if (op := instruction(e))]
  matched.sort(key=lambda m: (m[0].get("pid"), m[0].get("tid"), m[0]["ts"]))
  times = collections.Counter()
  thread, busy_until = None, -math.inf
  for event, op in matched:
    if (event.get("pid"), event.get("tid")) != thread:
      thread, busy_until = (event.get("pid"), event.get("tid")), -math.inf
    if event["ts"] < busy_until:
      continue
    times[op] += event["dur"]
    busy_until = event["ts"] + event["dur"]
  return dict(times)


def summarize(times_us: dict[str, float], instructions: dict[str, dict], flops: dict[str, float], *, calls: int,
              depth: int, peak_flops_per_s: float | None) -> dict:
  """Rows per scope (at `depth`) and per op, per call, sorted by time."""
  by_scope = collections.defaultdict(lambda: {"us": 0.0, "flops": 0.0, "ops": 0})
  for op, us in times_us.items():
    row = by_scope[truncate(instructions[op]["scope"], depth)]
    row["us"] += us / calls
    row["ops"] += 1
  for scope, value in flops.items():
    by_scope[truncate(scope, depth)]["flops"] += value
  device_us = sum(r["us"] for r in by_scope.values())
  scopes = []
  for scope, row in sorted(by_scope.items(), key=lambda kv: -kv[1]["us"]):
    rate = row["flops"] / (row["us"] * 1e-6) if row["us"] > 0 else None
    scopes.append({"scope": scope, "ms": row["us"] / 1e3, "share": row["us"] / device_us if device_us else None,
                   "gflop": row["flops"] / 1e9, "tflop_per_s": None if rate is None else rate / 1e12,
                   "of_peak": None if rate is None or not peak_flops_per_s else rate / peak_flops_per_s,
                   "ops": row["ops"]})
  ops = [{"op": op, **instructions[op], "ms": us / calls / 1e3}
         for op, us in sorted(times_us.items(), key=lambda kv: -kv[1])]
  return {"device_ms": device_us / 1e3, "gflop": sum(flops.values()) / 1e9, "scopes": scopes, "ops": ops}


def profile_compiled(run, compiled, flops: dict[str, float], *, calls: int, trace_dir: pathlib.Path, depth: int,
                     peak_flops_per_s: float | None) -> dict:
  """Trace `calls` calls of `run` (which calls `compiled`), then summarize. Warm `run` up first."""
  instructions = hlo_instructions(compiled.as_text())
  with jax.profiler.trace(str(trace_dir), create_perfetto_trace=True):
    for _ in range(calls):
      jax.block_until_ready(run())
  times = op_times(trace_events(trace_dir), instructions)
  if not times:
    raise RuntimeError(f"no event of the trace under {trace_dir} names an instruction of the compiled module")
  return summarize(times, instructions, flops, calls=calls, depth=depth, peak_flops_per_s=peak_flops_per_s)


# --- the two computations -------------------------------------------------------------------------------------

def inference_case(config, dtype, batch: int):
  from benchmarks.inference import build_model, inference_fn, random_frames
  from flax import nnx
  graphdef, state = nnx.split(build_model(config, None, dtype))
  source, driving = (jax.device_put(x) for x in random_frames(batch, config.model.generator["img_size"], seed=0))
  infer = inference_fn(graphdef)
  compiled = infer.lower(state, source, driving).compile()
  flops = scope_flops(infer, state, source, driving)
  return (lambda: compiled(state, source, driving)), compiled, flops


def train_case(config, dtype, batch: int):
  from benchmarks.train_step import DonatingStep, build_step, random_batch
  step, state, vgg_state = build_step(config, dtype, None, with_gan=True)
  data = jax.device_put(random_batch(batch, config.model.generator["img_size"], seed=0))
  compiled = step.lower(state, data, vgg_state).compile()
  flops = scope_flops(step, state, data, vgg_state)
  return DonatingStep(compiled, state, data, vgg_state), compiled, flops


def print_summary(summary: dict, top: int) -> None:
  f = _common.format_number
  print(f"\ndevice time per call {summary['device_ms']:.2f} ms; conv + matmul {summary['gflop']:.1f} GFLOP per call")
  print(f"\n{'scope':58s} {'ms':>9s} {'share':>6s} {'GFLOP':>9s} {'TFLOP/s':>8s} {'of peak':>7s}")
  for row in summary["scopes"]:
    share = "-" if row["share"] is None else f"{100 * row['share']:.1f}%"
    of_peak = "-" if row["of_peak"] is None else f"{100 * row['of_peak']:.0f}%"
    print(f"{row['scope'][:58]:58s} {row['ms']:9.3f} {share:>6s} {f(row['gflop'], 4):>9s} "
          f"{f(row['tflop_per_s']):>8s} {of_peak:>7s}")
  print(f"\nslowest {top} ops")
  for row in summary["ops"][:top]:
    kind = row["target"] or f"{row['opcode']}: {row['primitive']}"
    print(f"{row['ms']:9.3f} ms  {row['op'][:28]:28s} {kind[:34]:34s} {row['shape'][:30]:30s} {row['scope']}")


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--what", choices=("inference", "train"), default="inference")
  parser.add_argument("--config", default="configs/paper.py", help="config file[:arg] (configs/tiny.py: smoke run)")
  _common.add_attention_argument(parser)
  parser.add_argument("--batch-size", type=int, default=None, help="default: 16 on accelerators, 1 on CPU")
  parser.add_argument("--dtype", default="bfloat16", choices=sorted(_common.DTYPES))
  parser.add_argument("--steps", type=int, default=3, help="profiled calls, after one warm-up call")
  parser.add_argument("--depth", type=int, default=3, help="scope levels kept (generator/compensation_32/...)")
  parser.add_argument("--top", type=int, default=25, help="slowest ops listed")
  parser.add_argument("--trace-dir", default=None, help="where the trace is kept (default: a temporary folder)")
  parser.add_argument("--out", default=None, help="JSON report path")
  args = parser.parse_args(argv)
  if args.steps < 1 or args.depth < 1 or (args.batch_size is not None and args.batch_size < 1):
    parser.error("--steps, --depth and --batch-size must be positive")
  return args


def main(argv=None) -> int:
  args = parse_args(argv)
  config = _common.load_benchmark_config(args)
  dtype = _common.DTYPES[args.dtype]
  batch = args.batch_size or (1 if jax.default_backend() == "cpu" else 16)
  report = {"benchmark": "op_profile", "what": args.what, "config": args.config, "batch": batch,
            "attention": config.model.attention,
            "dtype": np.dtype(dtype).name, "steps": args.steps, **_common.environment(), "peak": {}}
  print(f"device: {report['device']} ({report['platform']}), jax {jax.__version__}; {args.what}, batch {batch}, "
        f"{report['dtype']}, {config.model.attention} attention", flush=True)
  peak = _common.record_peak(report, report["dtype"], dtype, size=None)
  run, compiled, flops = (inference_case if args.what == "inference" else train_case)(config, dtype, batch)
  wall = _common.time_runs(run, max(args.steps, 3), warmup=1)
  report["wall"] = _common.timing_summary(wall)
  with tempfile.TemporaryDirectory() as scratch:
    trace_dir = pathlib.Path(args.trace_dir or scratch)
    summary = profile_compiled(run, compiled, flops, calls=args.steps, trace_dir=trace_dir, depth=args.depth,
                               peak_flops_per_s=peak["flops_per_s"])
  report.update(summary, ops=summary["ops"][:200])
  print_summary(summary, args.top)
  median = report["wall"]["median_s"]
  print(f"\nwall time per call {median * 1e3:.2f} ms (median, unprofiled); the device ops, summed over the threads "
        f"or streams that ran them, take {100 * summary['device_ms'] / 1e3 / median:.0f}% of that")
  if args.out:
    _common.write_report(report, args.out)
  return 0


if __name__ == "__main__":
  try:
    sys.exit(main())
  except (FileNotFoundError, ValueError, RuntimeError) as e:  # bad flags or files: one line, no traceback
    sys.exit(f"error: {e}")
