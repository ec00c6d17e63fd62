"""The model an evaluation runs, from a model checkpoint or from a training run's checkpoint.

- A model checkpoint (mcc_jax.model_checkpoint: `model_config.json` + `state/`, e.g. converted official
  weights, whose net_g is already the EMA one) is loaded as it is.
- A training workdir (or its `checkpoints/` folder, or one step folder in it) needs the run's config for the
  model's shapes; the generator takes the EMA weights, as the official test loads `params_ema`, with the motion
  estimator's trained weights and the BatchNorm statistics.
"""
import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from flax import nnx

from mcc_jax.model_checkpoint import CONFIG_FILE, load_model, read_model_config, this_process_only
from mcc_jax.models.mcc import MCC


@dataclasses.dataclass
class EvaluationModel:
  model: MCC
  model_config: dict
  step: int | None
  kind: str  # "model checkpoint" or "training checkpoint"
  generator_weights: str  # "ema" or "as saved" / "raw (not EMA)"
  path: str
  metadata: dict
  dtype: str = "float32"  # compute dtype


def _training_checkpoints(path: pathlib.Path) -> tuple[pathlib.Path, int | None] | None:
  """(checkpoints folder, step or None for the newest) when `path` is a training run, its checkpoints or a step."""
  for candidate, step in ((path / "checkpoints", None), (path, None)):
    if candidate.is_dir() and any(p.name.isdigit() and p.is_dir() for p in candidate.iterdir()):
      return candidate, step
  if path.name.isdigit() and (path / "state").is_dir():
    return path.parent, int(path.name)
  return None


def _restore_training(checkpoints: pathlib.Path, step: int | None, model_config, use_ema: bool, dtype):
  """Restores only the train state's step, networks and EMA (partial restore: no discriminator, no optimiser)."""
  from mcc_jax.models.factory import build_mcc

  model = nnx.eval_shape(lambda: build_mcc(model_config, dtype=dtype, remat=False))
  _, params, rest = nnx.split(model, nnx.Param, ...)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  wanted = {"step": jax.ShapeDtypeStruct((), jnp.int32), "mcc_params": params, "mcc_rest": rest,
            "ema": params["generator"]}
  wanted = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), wanted)
  restore_args = jax.tree.map(lambda x: ocp.ArrayRestoreArgs(sharding=device), wanted)
  manager = ocp.CheckpointManager(checkpoints.absolute(), options=ocp.CheckpointManagerOptions(
      read_only=True, multiprocessing_options=this_process_only()))
  try:
    steps = manager.all_steps()
    if not steps:
      raise FileNotFoundError(f"{checkpoints} holds no training checkpoint")
    step = max(steps) if step is None else step
    if step not in steps:
      raise FileNotFoundError(f"{checkpoints} has no checkpoint at step {step}; it has {sorted(steps)}")
    try:
      state = manager.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
          item=wanted, restore_args=restore_args, partial_restore=True)))["state"]
    except (ValueError, KeyError, TypeError) as e:
      raise ValueError(f"the training checkpoint {checkpoints / str(step)} does not match the config's model "
                       f"({type(e).__name__}: {e})") from None
  finally:
    manager.close()
  params = state["mcc_params"]
  if use_ema:
    params = nnx.merge_state(params, nnx.State({"generator": state["ema"]}))
  nnx.update(model, params, state["mcc_rest"])
  model.eval()
  return model, int(step)


def load_for_evaluation(checkpoint, model_config=None, *, use_ema: bool = True, step: int | None = None,
                        dtype: str | None = None) -> EvaluationModel:
  """The model in `checkpoint` (see the module docstring); `model_config` (a config's `model` section) is needed
  for training checkpoints only, and `step` picks one of them (default: the newest). `dtype` ("float32" or
  "bfloat16") is the compute dtype; None: the training config's `model.dtype`, float32 for a model checkpoint."""
  from mcc_jax.models.factory import COMPUTE_DTYPES, compute_dtype
  if dtype is not None and dtype not in COMPUTE_DTYPES:
    raise ValueError(f"dtype must be one of {sorted(COMPUTE_DTYPES)}; got {dtype!r}")
  path = pathlib.Path(checkpoint)
  if not path.exists():
    raise FileNotFoundError(f"checkpoint not found: {path}")
  if (path / CONFIG_FILE).is_file():
    metadata = json.loads((path / CONFIG_FILE).read_text()).get("metadata", {})
    dtype = dtype or "float32"
    model = load_model(path, dtype=COMPUTE_DTYPES[dtype])
    return EvaluationModel(model=model, model_config=read_model_config(path).to_dict(), step=metadata.get("step"),
                           kind="model checkpoint", generator_weights="as saved", path=str(path.absolute()),
                           metadata=metadata, dtype=dtype)
  training = _training_checkpoints(path)
  if training is None:
    raise FileNotFoundError(f"{path} is neither an mcc_jax model checkpoint ({CONFIG_FILE} + state/) nor a training "
                            "workdir with checkpoints/<step>/")
  if model_config is None:
    raise ValueError(f"{path} is a training checkpoint: pass --config (the run's config) for the model's shapes")
  checkpoints, found_step = training
  dtype = dtype or model_config.get("dtype", "float32")
  model, restored_step = _restore_training(checkpoints, step if step is not None else found_step, model_config,
                                           use_ema, compute_dtype({"dtype": dtype}))
  config = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(model_config)
  return EvaluationModel(model=model, model_config=config, step=restored_step, kind="training checkpoint",
                         generator_weights="ema" if use_ema else "raw (not EMA)", path=str(path.absolute()),
                         metadata={"checkpoints": str(checkpoints.absolute())}, dtype=dtype)
