"""Plan pod runs: compile the training step ahead of time for a TPU topology (on any host, CPU included) or for
this machine's devices, and print the memory each device needs for a global batch size.

  python benchmarks/aot_memory.py --config configs/paper.py --topology v5e:2x4 --batch-size 32
  python benchmarks/aot_memory.py --config configs/paper.py --topology v5p:2x2x1 --batch-size 64 \
      --dtype bfloat16 --remat --fsdp 4
  python benchmarks/aot_memory.py --config configs/tiny.py --batch-size 8      # this machine's devices

A TPU topology needs libtpu (pip install 'mcc_jax[tpu]'); no TPU is used: the step is lowered with abstract
(ShapeDtypeStruct) inputs sharded over the topology's mesh and compiled by the TPU compiler. The step is the one
training runs (`jit_train_step`, the state donated), by default with the GAN update (iterations after
`net_d_start_iter`, the larger of the two programs). Figures are XLA's `memory_analysis()` of the compiled
per-device program.
"""
import argparse
import json
import pathlib
import sys

if not __package__:  # run as a script: benchmarks/input_pipeline.py would shadow the input_pipeline package
  _here = pathlib.Path(__file__).resolve().parent
  sys.path = [p for p in sys.path if pathlib.Path(p or ".").resolve() != _here]
  sys.path.insert(0, str(_here.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks import _common  # noqa: E402

GIB = 2**30
# HBM per chip by `device_kind`; a chip whose cores are separate JAX devices splits it between them.
HBM_PER_CHIP_GIB = {"TPU v2": 16, "TPU v3": 32, "TPU v4": 32, "TPU v5 lite": 16, "TPU v5": 95, "TPU v6 lite": 32}


def topology_devices(topology: str) -> list:
  """The devices of a TPU topology such as 'v5e:2x4' or 'v5p:2x2x1', described by libtpu (no TPU needed)."""
  from jax.experimental import topologies
  try:
    return list(topologies.get_topology_desc(topology, "tpu").devices)
  except Exception as e:  # libtpu absent or the name unknown: jax raises several types
    raise RuntimeError(f"cannot describe TPU topology {topology!r} ({type(e).__name__}: {e}); it needs libtpu: "
                       "pip install 'mcc_jax[tpu]'") from e


def device_memory_bytes(devices: list) -> int | None:
  """Memory of one device: the runtime's limit when it reports one, else the TPU table (a chip's HBM split over
  its cores when they are separate devices, as on v2-v4 without megacore); None when unknown."""
  try:
    stats = devices[0].memory_stats()
  except Exception:  # abstract topology devices and some backends have no runtime statistics
    stats = None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  per_chip = HBM_PER_CHIP_GIB.get(devices[0].device_kind)
  if per_chip is None:
    return None
  devices_per_chip = len({getattr(d, "core_on_chip", 0) for d in devices})
  return per_chip * GIB // devices_per_chip


def memory_report(compiled: jax.stages.Compiled) -> dict[str, int]:
  """Bytes per device of a compiled program: arguments, outputs, aliased (donated) bytes, temporaries, code, and
  their total (arguments + outputs - aliased + temporaries + code)."""
  analysis = compiled.memory_analysis()
  if analysis is None:
    raise RuntimeError("this backend reports no memory analysis for compiled programs")
  report = {
      "arguments": int(analysis.argument_size_in_bytes),
      "outputs": int(analysis.output_size_in_bytes),
      "aliased": int(analysis.alias_size_in_bytes),
      "temporaries": int(analysis.temp_size_in_bytes),
      "code": int(analysis.generated_code_size_in_bytes),
  }
  report["total"] = (report["arguments"] + report["outputs"] - report["aliased"] + report["temporaries"]
                     + report["code"])
  return report


def abstract_training(config, mesh, batch_size: int):
  """(graphdefs, abstract state, abstract batch, abstract VGG state) for `config`, sharded as training shards them.

  Nothing is allocated: the networks are built under `eval_shape`.
  """
  from mcc_jax.models.factory import build_discriminator, build_mcc, compute_dtype
  from mcc_jax.models.vgg import VGG19Features
  from mcc_jax.training import sharding
  from mcc_jax.training.train_state import Graphdefs, create_train_state

  def networks():
    return (build_mcc(config.model, seed=config.seed), build_discriminator(config.model, seed=config.seed + 2),
            VGG19Features(dtype=compute_dtype(config.model), rngs=nnx.Rngs(params=config.seed + 1)))

  mcc, disc, vgg = nnx.eval_shape(networks)
  graphdefs = Graphdefs(nnx.graphdef(mcc), nnx.graphdef(disc), nnx.graphdef(vgg))
  state = jax.eval_shape(lambda: create_train_state(*networks()[:2], jax.random.key(config.seed)))
  state_sharding = sharding.state_sharding(state, mesh)
  state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, state_sharding)
  size = config.model.generator["img_size"]
  image = jax.ShapeDtypeStruct((batch_size, size, size, 3), jnp.uint8, sharding=sharding.batch_sharding(mesh))
  replicated = sharding.replicated(mesh)
  vgg_state = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), nnx.state(vgg))
  return graphdefs, state, {"source": image, "driving": image}, vgg_state


def compile_train_step(config, mesh, batch_size: int, *, with_gan: bool = True) -> jax.stages.Compiled:
  """The training step of `config` compiled for `mesh` (its devices may be abstract) at a global batch size."""
  from mcc_jax.training import sharding
  from mcc_jax.training.objective import LossWeights
  from mcc_jax.training.train_step import jit_train_step

  devices = mesh.devices.size
  if batch_size % devices:
    raise ValueError(f"--batch-size {batch_size} does not split over the {devices} devices of the mesh")
  graphdefs, state, batch, vgg_state = abstract_training(config, mesh, batch_size)
  train = config.train
  options = dict(base_lr=train.base_lr, milestones=tuple(train.milestones), ema_decay=train.ema_decay,
                 weights=LossWeights(perceptual_scales=tuple(train.perceptual_scales)))
  if "bn_group_size" in train:
    options["bn_group_size"] = train.bn_group_size
  step = jit_train_step(graphdefs, with_gan=with_gan, state_sharding=jax.tree.map(lambda x: x.sharding, state),
                        batch_sharding=sharding.batch_sharding(mesh), replicated=sharding.replicated(mesh),
                        **options)
  return step.lower(state, batch, vgg_state).compile()


def _gib(n: int) -> str:
  return f"{n / GIB:8.3f} GiB"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--config", default="configs/paper.py", help="config file[:arg]")
  _common.add_attention_argument(parser)
  parser.add_argument("--topology", default="",
                      help="TPU topology to compile for, e.g. v5e:2x4, v5p:2x2x1, v4:2x2x1; empty: this machine")
  parser.add_argument("--batch-size", type=int, required=True, help="global batch size")
  parser.add_argument("--dtype", choices=("float32", "bfloat16"), help="override model.dtype")
  parser.add_argument("--remat", action=argparse.BooleanOptionalAction, default=None, help="override model.remat")
  parser.add_argument("--fsdp", type=int, help="override mesh.fsdp (parameters sharded over this many devices)")
  parser.add_argument("--no-gan", action="store_true",
                      help="compile the step without the discriminator (iterations up to net_d_start_iter)")
  parser.add_argument("--json", help="also write the report to this file")
  args = parser.parse_args(argv)

  from mcc_jax.training import sharding
  config = _common.load_benchmark_config(args)
  if args.dtype:
    config.model.dtype = args.dtype
  if args.remat is not None:
    config.model.remat = args.remat
  fsdp = args.fsdp if args.fsdp is not None else config.mesh.fsdp
  devices = topology_devices(args.topology) if args.topology else jax.devices()
  mesh = sharding.make_mesh(-1, fsdp, devices=devices)
  capacity = device_memory_bytes(devices)
  target = args.topology or f"this machine ({jax.default_backend()})"
  print(f"{args.config}  {target}: {len(devices)} x {devices[0].device_kind}, mesh data={mesh.shape['data']} "
        f"fsdp={mesh.shape['fsdp']}")
  print(f"global batch {args.batch_size} ({args.batch_size // len(devices)} per device), "
        f"dtype {config.model.get('dtype', 'float32')}, remat {bool(config.model.get('remat', False))}, "
        f"{config.model.attention} attention, "
        f"{'with' if not args.no_gan else 'without'} the GAN update", flush=True)
  payload = {"config": args.config, "topology": args.topology or None, "devices": len(devices),
             "device_kind": devices[0].device_kind, "mesh": dict(mesh.shape), "batch_size": args.batch_size,
             "dtype": config.model.get("dtype", "float32"), "remat": bool(config.model.get("remat", False)),
             "attention": config.model.attention,
             "with_gan": not args.no_gan, "capacity_bytes": capacity, "jax": jax.__version__}
  try:
    compiled = compile_train_step(config, mesh, args.batch_size, with_gan=not args.no_gan)
  except jax.errors.JaxRuntimeError as e:
    if "RESOURCE_EXHAUSTED" not in str(e):
      raise
    # The TPU compiler refuses a program that cannot fit; its message says how much the temporaries need.
    message = str(e).splitlines()[0]
    print(f"DOES NOT FIT: {message}")
    if args.json:
      pathlib.Path(args.json).write_text(json.dumps({**payload, "fits": False, "compiler_error": message}, indent=2))
    return 2
  report = memory_report(compiled)
  print("per device:")
  for name in ("arguments", "outputs", "aliased", "temporaries", "code", "total"):
    print(f"  {name:12s} {_gib(report[name])}")
  if capacity is None:
    print("  capacity     unknown for this device kind")
  else:
    verdict = "fits" if report["total"] <= capacity else "DOES NOT FIT"
    print(f"  capacity     {_gib(capacity)}  -> {100 * report['total'] / capacity:.1f}% used, {verdict}")
  if args.json:
    fits = None if capacity is None else report["total"] <= capacity
    pathlib.Path(args.json).write_text(json.dumps({**payload, "fits": fits, "bytes_per_device": report}, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
