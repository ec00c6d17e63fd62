"""Metric and image logs: TensorBoard event files (tensorboardX, no TensorFlow) and a JSON-lines file."""
import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics as clu_metrics
from flax import nnx

from mcc_jax.io.images import normalize
from mcc_jax.io.images import to_uint8
from mcc_jax.models.generator import warp
from mcc_jax.ops import make_coordinate_grid


class MetricWriter:
  """TensorBoard event files and `metrics.jsonl`, behind the method names of clu's `metric_writers.MetricWriter`.

  clu's own writers import TensorFlow (its summary writer), which this project does not install; tensorboardX
  writes the same event files. Only process 0 writes (`enabled`).
  """

  def __init__(self, workdir, *, enabled: bool = True):
    self.enabled = enabled
    self.workdir = pathlib.Path(workdir)
    if enabled:
      from tensorboardX import SummaryWriter
      self._tensorboard = SummaryWriter(str(self.workdir / "tensorboard"))
      self._jsonl = open(self.workdir / "metrics.jsonl", "a")

  def write_jsonl(self, step: int, metrics: dict) -> None:
    """One line per iteration: the exact per-step values (the TensorBoard scalars are interval averages)."""
    if self.enabled:
      self._jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
      self._jsonl.flush()

  def write_scalars(self, step: int, scalars: dict) -> None:
    if self.enabled:
      for name, value in scalars.items():
        self._tensorboard.add_scalar(name, value, step)

  def write_images(self, step: int, images: dict) -> None:
    """images: name -> (H, W, 3) uint8."""
    if self.enabled:
      for name, image in images.items():
        self._tensorboard.add_image(name, image, step, dataformats="HWC")

  def write_hparams(self, hparams: dict) -> None:
    if self.enabled:
      self._tensorboard.add_text("config", "\n".join(f"    {k}: {v}" for k, v in sorted(hparams.items())), 0)

  def flush(self) -> None:
    if self.enabled:
      self._tensorboard.flush()
      self._jsonl.flush()

  def close(self) -> None:
    if self.enabled:
      self._tensorboard.close()
      self._jsonl.close()


class IntervalAverages:
  """clu `metrics.Average` of every scalar since the last report."""

  def __init__(self):
    self._averages = {}

  def add(self, metrics: dict) -> None:
    for name, value in metrics.items():
      average = clu_metrics.Average.from_model_output(np.float32(value))
      self._averages[name] = self._averages[name].merge(average) if name in self._averages else average

  def compute_and_reset(self) -> dict:
    result = {name: float(average.compute()) for name, average in self._averages.items()}
    self._averages = {}
    return result


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
