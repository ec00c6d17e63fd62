"""The training loop: data, networks, the jitted step, checkpoints, logs and clean stops."""
import json
import logging
import pathlib
import signal
import time

import jax
import numpy as np
from flax import nnx

from input_pipeline.pipeline import TrainPipelineConfig, make_train_dataset, to_device
from mcc_jax.training import checkpointing, sharding
from mcc_jax.training.objective import LossWeights
from mcc_jax.training.train_state import Graphdefs, create_train_state
from mcc_jax.training.train_step import jit_train_step
from mcc_jax.training.writer import IntervalAverages, MetricWriter, image_grid


class NonFiniteLossError(FloatingPointError):
  pass


def _dataset_dir(config, workdir: pathlib.Path) -> str:
  if config.data.dir:
    return config.data.dir
  from input_pipeline.synthetic import write_synthetic_dataset
  synthetic = config.data.synthetic
  return str(write_synthetic_dataset(
      workdir / "synthetic", identities=synthetic.identities, clips_per_identity=synthetic.clips_per_identity,
      frames_per_clip=synthetic.frames, size=config.model.generator.img_size,
      test_fraction=synthetic.test_fraction, seed=config.seed))


def build_vgg19(config):
  """VGG19 for the perceptual loss, computing in the model's dtype (its L1 is taken in float32)."""
  from mcc_jax.models.factory import compute_dtype
  from mcc_jax.models.vgg import VGG19Features
  dtype = compute_dtype(config.model)
  if not config.train.perceptual_weight:
    logging.warning("perceptual loss off (config.train.perceptual_weight = 0)")
    return VGG19Features(dtype=dtype, rngs=nnx.Rngs(params=config.seed + 1))  # an unused argument of the step
  if config.train.vgg19_path:
    from mcc_jax.convert.vgg19 import load_vgg19
    return load_vgg19(config.train.vgg19_path, dtype=dtype)
  if not config.train.allow_random_vgg19:
    raise ValueError("the perceptual loss needs torchvision's VGG19 weights: set --config.train.vgg19_path="
                     "vgg19-dcbb9e9d.pth (or, for tests only, --config.train.allow_random_vgg19=True)")
  logging.warning("perceptual loss uses a RANDOM VGG19 (config.train.allow_random_vgg19)")
  return VGG19Features(dtype=dtype, rngs=nnx.Rngs(params=config.seed + 1))


def build_networks(config):
  """The MCC (from `config.train.init_from` when set) and the discriminator, in training mode."""
  from mcc_jax.models.factory import attention_implementation, build_discriminator, build_mcc, compute_dtype
  if config.train.init_from:
    from mcc_jax.model_checkpoint import check_architecture, load_model
    check_architecture(config.train.init_from, config.model)
    mcc = load_model(config.train.init_from, dtype=compute_dtype(config.model), remat=config.model.remat,
                     attention=attention_implementation(config.model))
    mcc.train()
  else:
    mcc = build_mcc(config.model, seed=config.seed)
  return mcc, build_discriminator(config.model, seed=config.seed + 2)


def _flat_config(config, prefix: str = "") -> dict:
  flat = {}
  for key, value in config.items():
    if hasattr(value, "items"):
      flat.update(_flat_config(value, f"{prefix}{key}."))
    else:
      flat[f"{prefix}{key}"] = value
  return flat


def _host_scalars(metrics) -> dict:
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


def train_and_evaluate(config, workdir, *, on_step=None) -> dict:
  """Train per `config` in `workdir`, resuming from its newest readable checkpoint. Returns the last metrics.

  SIGTERM stops the run after the current iteration with a checkpoint. A non-finite loss stops it with
  NonFiniteLossError after writing the offending batch's item ids to `workdir/nonfinite_batch.json`.
  `on_step(step)` is called after each iteration (tests use it).
  """
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  mesh = sharding.make_mesh(config.mesh.data, config.mesh.fsdp)
  train = config.train
  data = TrainPipelineConfig(
      data_dir=_dataset_dir(config, workdir), global_batch_size=train.global_batch_size, seed=config.seed,
      repeat=config.data.repeat, hflip_prob=config.data.hflip_prob, time_flip_prob=config.data.time_flip_prob,
      image_size=config.model.generator.img_size, worker_count=config.data.worker_count)
  iterator = iter(make_train_dataset(data))

  mcc, disc = build_networks(config)
  vgg = build_vgg19(config)
  graphdefs = Graphdefs(nnx.graphdef(mcc), nnx.graphdef(disc), nnx.graphdef(vgg))
  state = create_train_state(mcc, disc, jax.random.key(config.seed))
  state_sharding = sharding.state_sharding(state, mesh)
  vgg_state = nnx.state(vgg)
  vgg_state = sharding.put_global(vgg_state, jax.tree.map(lambda _: sharding.replicated(mesh), vgg_state))

  manager = checkpointing.make_manager(workdir / "checkpoints", every_steps=config.checkpoint.every_steps,
                                       keep=config.checkpoint.keep)
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), state, state_sharding)
  start, restored = checkpointing.restore_latest(manager, abstract, iterator)
  state = restored if restored is not None else sharding.put_global(state, state_sharding)
  start = start or 0
  if start:
    print(f"resumed from step {start}")

  options = dict(base_lr=train.base_lr, milestones=tuple(train.milestones), ema_decay=train.ema_decay,
                 weights=LossWeights(perceptual=train.perceptual_weight,
                                     perceptual_scales=tuple(train.perceptual_scales)),
                 bn_group_size=train.bn_group_size,
                 state_sharding=state_sharding, batch_sharding=sharding.batch_sharding(mesh),
                 replicated=sharding.replicated(mesh))
  steps = {}
  stop = {"requested": False}
  previous_handler = signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
  writer = MetricWriter(workdir, enabled=jax.process_index() == 0)
  writer.write_hparams(_flat_config(config))
  averages = IntervalAverages()
  metrics, timer = {}, (time.perf_counter(), start)

  def finish(step: int, device_metrics, item_index) -> dict:
    """The host's side of a dispatched step: wait for its metrics, halt if the loss is not finite, log."""
    nonlocal timer
    metrics = _host_scalars(device_metrics)
    loss = metrics["l_g_total"]
    if not np.isfinite(loss):
      (workdir / "nonfinite_batch.json").write_text(json.dumps(
          {"step": step, "item_index": np.asarray(item_index).tolist(), "l_g_total": loss}))
      raise NonFiniteLossError(f"non-finite generator loss {loss} at step {step}; the batch's item ids are "
                               f"in {workdir / 'nonfinite_batch.json'}")
    writer.write_jsonl(step, metrics)
    averages.add(metrics)
    if step % config.log.every_steps == 0 or step == train.num_steps:
      elapsed = time.perf_counter() - timer[0]
      rate = (step - timer[1]) / max(elapsed, 1e-9)
      timer = (time.perf_counter(), step)
      eta = (train.num_steps - step) / max(rate, 1e-9)
      interval = averages.compute_and_reset()
      writer.write_scalars(step, {**interval, "steps_per_s": rate, "eta_minutes": eta / 60})
      writer.flush()
      print(f"step {step}/{train.num_steps}  l_g_total {interval['l_g_total']:.4f}  "
            f"l_g_pix {interval['l_g_pix']:.4f}  {rate:.2f} steps/s  eta {eta / 60:.1f} min", flush=True)
    return metrics

  # A step's metrics are read after the next step is dispatched, so the host loads and logs while the devices
  # compute; the transfer guard turns any implicit transfer in the dispatch into an error. Before a checkpoint or
  # an image grid the step is finished first, so no state with a non-finite loss is ever saved.
  pending = None
  try:
    for step in range(start, train.num_steps):
      with_gan = step + 1 > train.net_d_start_iter
      if with_gan not in steps:
        steps[with_gan] = jit_train_step(graphdefs, with_gan=with_gan, **options)
      batch = next(iterator)
      item_index = batch.pop("item_index")
      device_batch = to_device({"source": batch["source"], "driving": batch["driving"]}, mesh, sharding.BATCH_AXES)
      with jax.transfer_guard("disallow"):
        state, device_metrics = steps[with_gan](state, device_batch, vgg_state)
      if pending is not None:
        metrics = finish(*pending)
      pending = (step + 1, device_metrics, item_index)
      if on_step is not None:
        on_step(step + 1)
      last = step + 1 == train.num_steps or stop["requested"]
      images = (step + 1) % config.log.images_every_steps == 0
      if last or images or manager.should_save(step + 1):
        metrics = finish(*pending)
        pending = None
        if images:
          writer.write_images(step + 1, {"samples": image_grid(graphdefs.mcc, state, batch)})
        checkpointing.save(manager, step + 1, state, iterator, force=last)
      if stop["requested"]:
        print(f"SIGTERM: saved step {step + 1}, stopping")
        break
  finally:
    manager.wait_until_finished()
    manager.close()
    writer.close()
    signal.signal(signal.SIGTERM, previous_handler)
  return metrics
