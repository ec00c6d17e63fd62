"""Model checkpoints in this project's format: a directory with `model_config.json` and an orbax `state/`.

The state holds every MCC variable (parameters, BatchNorm statistics, buffers) under the NNX module paths.
Conversion from the official weights writes this format; training and evaluation read it.
"""
import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from mcc_jax.models.factory import build_mcc
from mcc_jax.models.mcc import MCC

CONFIG_FILE = "model_config.json"
STATE_DIR = "state"


def _jsonable(value):
  if hasattr(value, "to_dict"):
    value = value.to_dict()
  if isinstance(value, dict):
    return {k: _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  return value


def this_process_only() -> ocp.options.MultiprocessingOptions:
  """Orbax options for a read by one process on its own (each evaluation process loads the model by itself): no
  cross-process synchronisation."""
  index = jax.process_index()
  return ocp.options.MultiprocessingOptions(primary_host=index, active_processes={index},
                                            barrier_sync_key_prefix=f"process{index}")


def save_model(model: MCC, model_config, directory, *, metadata: dict | None = None) -> pathlib.Path:
  """Write `model`'s variables and the model config (plus optional metadata) to `directory`."""
  directory = pathlib.Path(directory).absolute()
  directory.mkdir(parents=True, exist_ok=True)
  config = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(model_config)
  payload = {"model": _jsonable(config), "metadata": metadata or {}}
  (directory / CONFIG_FILE).write_text(json.dumps(payload, indent=2))
  state = nnx.to_pure_dict(nnx.state(model))
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(directory / STATE_DIR, state, force=True)
  checkpointer.wait_until_finished()
  checkpointer.close()
  return directory


def read_model_config(directory) -> ml_collections.ConfigDict:
  path = pathlib.Path(directory) / CONFIG_FILE
  if not path.is_file():
    raise FileNotFoundError(f"{directory} is not an mcc_jax model checkpoint: {CONFIG_FILE} is missing")
  return ml_collections.ConfigDict(json.loads(path.read_text())["model"])


def check_architecture(directory, model_config) -> None:
  """Raise if the model saved in `directory` is not the one `model_config` describes (compute dtype, remat and
  attention aside: they do not change the variables)."""
  saved = read_model_config(directory)
  for section in ("motion_estimator", "generator"):
    have, want = _jsonable(saved[section]), _jsonable(model_config[section])
    differ = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
    if differ:
      raise ValueError(f"{directory} holds a different {section} than the config: "
                       + ", ".join(f"{k} saved {have.get(k)!r} vs config {want.get(k)!r}" for k in differ))


def load_model(directory, *, dtype=jnp.float32, param_dtype=jnp.float32, remat: bool = False,
               attention: str = "xla") -> MCC:
  """The MCC model saved in `directory` (eval mode), computing in `dtype` with the given `attention`."""
  directory = pathlib.Path(directory).absolute()
  model_config = read_model_config(directory)
  if not (directory / STATE_DIR).exists():
    raise FileNotFoundError(f"{directory} has no {STATE_DIR}/ directory with the model variables")
  model = nnx.eval_shape(lambda: build_mcc(model_config, dtype=dtype, param_dtype=param_dtype, remat=remat,
                                           attention=attention))
  abstract = nnx.state(model)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])  # not the saving run's devices
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), nnx.to_pure_dict(abstract))
  checkpointer = ocp.StandardCheckpointer(multiprocessing_options=this_process_only())
  restored = checkpointer.restore(directory / STATE_DIR, target)
  checkpointer.close()
  nnx.replace_by_pure_dict(abstract, jax.tree.map(jnp.asarray, restored))
  nnx.update(model, abstract)
  model.eval()
  return model


def state_arrays(model: MCC) -> dict:
  """Flat {path: numpy array} of every variable, for comparisons."""
  return {path: np.asarray(v[...]) for path, v in nnx.to_flat_state(nnx.state(model))}
