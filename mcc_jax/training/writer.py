"""Metric and image logs: TensorBoard event files (tensorboardX, no TensorFlow) and a JSON-lines file."""
import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from input_pipeline.pipeline import normalize
from mcc_jax.io.images import to_uint8
from mcc_jax.models.generator import warp
from mcc_jax.ops import make_coordinate_grid


class MetricWriter:

  def __init__(self, workdir, *, enabled: bool = True):
    self.enabled = enabled
    self.workdir = pathlib.Path(workdir)
    self._tensorboard = None
    if enabled:
      from tensorboardX import SummaryWriter
      self._tensorboard = SummaryWriter(str(self.workdir / "tensorboard"))
      self._jsonl = open(self.workdir / "metrics.jsonl", "a")

  def append_jsonl(self, step: int, metrics: dict) -> None:
    if self.enabled:
      self._jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
      self._jsonl.flush()

  def scalars(self, step: int, metrics: dict) -> None:
    if self.enabled:
      for name, value in metrics.items():
        self._tensorboard.add_scalar(name, value, step)
      self._tensorboard.flush()

  def image(self, step: int, name: str, image: np.ndarray) -> None:
    if self.enabled:
      self._tensorboard.add_image(name, image, step, dataformats="HWC")

  def close(self) -> None:
    if self.enabled:
      self._tensorboard.close()
      self._jsonl.close()


@functools.partial(jax.jit, static_argnums=0)
def _visualise(mcc_graphdef, params, rest, source, driving):
  model = nnx.merge(mcc_graphdef, params, rest)
  model.eval()
  out = model.forward(source, driving, inference=True)
  size = source.shape[1]
  upscale = lambda x: jax.image.resize(x, (x.shape[0], size, size, x.shape[-1]), "nearest")
  flow = out["deformation_list"][-1]
  displacement = flow - make_coordinate_grid(flow.shape[1], flow.shape[2], flow.dtype)
  displacement = displacement / jnp.maximum(jnp.abs(displacement).max(axis=(1, 2, 3), keepdims=True), 1e-6)
  flow_picture = upscale(jnp.concatenate([displacement, jnp.zeros_like(displacement[..., :1])], axis=-1))
  occlusion = jnp.repeat(upscale(out["out_occ"][-1]) * 2 - 1, 3, axis=-1)
  return jnp.concatenate([source, driving, out["out"], warp(source, flow), occlusion, flow_picture], axis=2)


def image_grid(mcc_graphdef, state, batch: dict, rows: int = 4) -> np.ndarray:
  """Rows of source | driving | output | warped source | occlusion | flow (centred), from the current state."""
  n = min(rows, batch["source"].shape[0])
  images = [normalize(jnp.asarray(batch[k][:n])) for k in ("source", "driving")]
  grid = _visualise(mcc_graphdef, state.mcc_params, state.mcc_rest, *images)
  return to_uint8(np.concatenate(list(np.asarray(grid)), axis=0))
