"""One process of a (possibly multi-process) CPU run of two training iterations; used by test_distributed.py.

  python tests/distributed_worker.py --process-id 0 --num-processes 2 --port 12345 --local-devices 2 --out m.json

Every process builds the same tiny networks and the same global batch, feeds its own rows of the batch (as the
data pipeline does), and runs the jitted step over a data mesh of all processes' devices. Process 0 writes the
metrics of each iteration to --out, and each network's gradient of the first iteration to --out with
the suffix .npz.
"""
import argparse
import json
import os
import pathlib
import sys


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--process-id", type=int, default=0)
  parser.add_argument("--num-processes", type=int, default=1)
  parser.add_argument("--port", type=int, default=0)
  parser.add_argument("--local-devices", type=int, required=True)
  parser.add_argument("--global-batch", type=int, default=8)
  parser.add_argument("--steps", type=int, default=2)
  parser.add_argument("--out", required=True)
  args = parser.parse_args()

  os.environ["JAX_PLATFORMS"] = "cpu"
  os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={args.local_devices}"
  root = pathlib.Path(__file__).resolve().parents[1]
  sys.path.insert(0, str(root))
  import jax
  import numpy as np
  import optax
  from flax import nnx

  cache = os.environ.get("MCC_JAX_TEST_CACHE", str(pathlib.Path.home() / ".cache" / "mcc_jax_test_xla"))
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
  if args.num_processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{args.port}", num_processes=args.num_processes,
                               process_id=args.process_id)

  from configs import tiny
  from input_pipeline.pipeline import to_device
  from mcc_jax.models.factory import build_discriminator, build_mcc
  from mcc_jax.models.vgg import VGG19Features
  from mcc_jax.training import sharding
  from mcc_jax.training.objective import LossWeights
  from mcc_jax.training.train_state import Graphdefs, create_train_state
  from mcc_jax.training.train_step import jit_train_step

  config = tiny.get_config().model
  config.generator.update(n_layers_motion=1, n_layers_app=1)
  mcc, disc = build_mcc(config), build_discriminator(config)
  vgg = VGG19Features(rngs=nnx.Rngs(1))
  graphdefs = Graphdefs(nnx.graphdef(mcc), nnx.graphdef(disc), nnx.graphdef(vgg))
  mesh = sharding.make_mesh()
  state = create_train_state(mcc, disc, jax.random.key(0))
  state_sharding = sharding.state_sharding(state, mesh)
  state = sharding.put_global(state, state_sharding)
  vgg_state = nnx.state(vgg)
  vgg_state = sharding.put_global(vgg_state, jax.tree.map(lambda _: sharding.replicated(mesh), vgg_state))
  step = jit_train_step(graphdefs, with_gan=True, weights=LossWeights(perceptual_scales=(1.0, 0.5, 0.25)),
                        state_sharding=state_sharding, batch_sharding=sharding.batch_sharding(mesh),
                        replicated=sharding.replicated(mesh))

  rng = np.random.default_rng(0)
  rows = args.global_batch // jax.process_count()
  mine = slice(jax.process_index() * rows, (jax.process_index() + 1) * rows)
  def first_gradients(state) -> dict:
    """Each network's gradient of the first iteration as one flat host vector: Adam's first moment after one
    update is (1 - b1) * gradient (this process's copy of the replicated arrays)."""
    mu_g, mu_d = optax.tree_utils.tree_get(state.opt_g, "mu"), optax.tree_utils.tree_get(state.opt_d, "mu")
    trees = {"generator": mu_g["generator"], "motion_estimator": mu_g["motion_estimator"], "discriminator": mu_d}
    return {name: np.concatenate([np.asarray(x.addressable_data(0), np.float64).ravel()
                                  for x in jax.tree.leaves(tree)]) / (1 - 0.9) for name, tree in trees.items()}

  history, gradients = [], None
  for index in range(args.steps):
    batch = {k: rng.integers(0, 256, (args.global_batch, 64, 64, 3), dtype=np.uint8) for k in ("source", "driving")}
    state, metrics = step(state, to_device({k: v[mine] for k, v in batch.items()}, mesh, sharding.BATCH_AXES),
                          vgg_state)
    history.append({k: float(v) for k, v in jax.device_get(metrics).items()})
    if index == 0:
      gradients = first_gradients(state)
  if jax.process_index() == 0:
    pathlib.Path(args.out).write_text(json.dumps({"devices": jax.device_count(), "processes": jax.process_count(),
                                                  "metrics": history}))
    np.savez(pathlib.Path(args.out).with_suffix(".npz"), **gradients)


if __name__ == "__main__":
  main()
