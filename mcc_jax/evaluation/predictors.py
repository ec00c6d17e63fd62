"""What produces an evaluation's results: the model (absolute or relative motion), or a baseline.

A predictor maps batches of (source, driving) uint8 frames, sharded over the mesh's batch axes, to uint8 results
(rounded as the official `tensor2img`: clamp to [-1, 1], then round((x + 1) / 2 * 255)). `prepare(task)` gives
per-task arrays that every row of the task carries (the relative-motion keypoints).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from mcc_jax.io.images import normalize
from mcc_jax.evaluation.relative_motion import movement_scale, relative_keypoints
from mcc_jax.models.mcc import MCC
from mcc_jax.training import sharding


def to_uint8(images: jax.Array) -> jax.Array:
  return jnp.round((jnp.clip(images.astype(jnp.float32), -1, 1) + 1) * 127.5).astype(jnp.uint8)


@functools.partial(jax.jit, static_argnums=0)
def _keypoints(graphdef, state, images):
  model = nnx.merge(graphdef, state)
  return model.motion_estimator.estimate_kp(normalize(images))


@functools.partial(jax.jit, static_argnums=0)
def _animate(graphdef, state, source, driving, kp_anchor, scale, relative):
  """Rows with `relative` move the source keypoints as the driving ones moved from the anchor's; the others take
  the driving keypoints as they are (absolute motion, the model's own forward pass). One program for both."""
  model = nnx.merge(graphdef, state)
  source = normalize(source)
  kp_driving = model.motion_estimator.estimate_kp(normalize(driving))
  kp_source = model.motion_estimator.estimate_kp(source)
  moved = relative_keypoints(kp_source, kp_driving, kp_anchor, scale)
  kp = {k: jnp.where(relative.reshape((-1,) + (1,) * (v.ndim - 1)), moved[k], v) for k, v in kp_driving.items()}
  motion = model.motion_estimator.estimate_motion(kp_source, kp, source)
  return to_uint8(model.generator(source, motion, inference=True)["out"])


def pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
  """`array` with its last row repeated up to `rows` rows."""
  missing = rows - len(array)
  return array if missing <= 0 else np.concatenate([array, np.repeat(array[-1:], missing, axis=0)])


class ModelPredictor:
  """MCC inference in eval mode; relative motion for tasks with an anchor frame (adapt_scale as configured)."""

  def __init__(self, model: MCC, mesh, *, adapt_scale: bool = True, name: str = "model"):
    self.name = name
    self.adapt_scale = adapt_scale
    self.image_size = model.img_size
    self._mesh = mesh
    self._batch = sharding.batch_sharding(mesh)
    model.eval()
    self._graphdef, state = nnx.split(model)
    self._state = jax.device_put(state, sharding.replicated(mesh))
    kp_shapes = jax.eval_shape(lambda: _keypoints(self._graphdef, self._state,
                                                  jnp.zeros((mesh.size, self.image_size, self.image_size, 3),
                                                            jnp.uint8)))
    self._no_anchor = {"kp_anchor_value": np.zeros(kp_shapes["value"].shape[1:], np.float32)}
    if "jacobian" in kp_shapes:
      self._no_anchor["kp_anchor_jacobian"] = np.broadcast_to(np.eye(2, dtype=np.float32),
                                                               kp_shapes["jacobian"].shape[1:]).copy()

  def keypoints(self, images: np.ndarray) -> dict:
    """Keypoints ({'value', 'jacobian'} numpy) of uint8 images (any count; padded to the mesh)."""
    count = len(images)
    padded = pad_rows(np.asarray(images), -(-count // self._mesh.size) * self._mesh.size)
    kp = _keypoints(self._graphdef, self._state, jax.device_put(padded, self._batch))
    return {k: np.asarray(v)[:count] for k, v in kp.items()}

  def prepare(self, task) -> dict:
    """Per-row inputs of `task`: the anchor frame's keypoints and the movement scale (relative motion), or
    placeholders that absolute rows ignore."""
    if task.anchor_index is None:
      return {"relative": np.bool_(False), "scale": np.float32(1), **self._no_anchor}
    kp = self.keypoints(np.stack([task.source, task.driving[task.anchor_index]]))
    scale = movement_scale(kp["value"][:1], kp["value"][1:])[0] if self.adapt_scale else np.float32(1)
    return {"relative": np.bool_(True), "scale": scale, **{f"kp_anchor_{k}": v[1] for k, v in kp.items()}}

  def __call__(self, source, driving, extras: dict):
    kp_anchor = {k[len("kp_anchor_"):]: v for k, v in extras.items() if k.startswith("kp_anchor_")}
    return _animate(self._graphdef, self._state, source, driving, kp_anchor, extras["scale"], extras["relative"])


class CopySource:
  """Baseline: the result is the source image (no motion at all)."""
  name = "copy_source"

  def prepare(self, task) -> dict:
    return {}

  def __call__(self, source, driving, extras: dict):
    return source


class CopyDriving:
  """Oracle: the result is the driving frame itself (perfect reconstruction; a check of the metrics' direction)."""
  name = "copy_driving"

  def prepare(self, task) -> dict:
    return {}

  def __call__(self, source, driving, extras: dict):
    return driving


def predict_task(predictor, task, mesh, *, batch_size: int = 32, progress: bool = False) -> np.ndarray:
  """(T, S, S, 3) uint8 results of one task, in batches of `batch_size` (rounded up to the mesh) sharded over the
  mesh, the last one padded."""
  import tqdm
  batch_size = -(-batch_size // mesh.size) * mesh.size
  batch_sharding = sharding.batch_sharding(mesh)
  extras = predictor.prepare(task)
  results = []
  for start in tqdm.trange(0, task.num_frames, batch_size, unit="batch", disable=not progress):
    driving = task.driving[start:start + batch_size]
    count = len(driving)
    rows = {k: np.repeat(np.asarray(v)[None], batch_size, axis=0) for k, v in extras.items()}
    source = np.repeat(task.source[None], batch_size, axis=0)
    inputs = jax.device_put((source, pad_rows(driving, batch_size), rows), batch_sharding)
    results.append(np.asarray(predictor(*inputs))[:count])
  return np.concatenate(results)
