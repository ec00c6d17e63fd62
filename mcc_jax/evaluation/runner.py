"""The evaluation loop: every task's frames in fixed-size batches sharded over the mesh, per-frame metrics, per-clip
and overall aggregates.

Rows (task, driving frame) from consecutive tasks share batches; the last batch is padded with copies of its last
row, whose results are dropped. The device works on batch k while the host takes batch k - 1's results (face
metrics on the CPU, clip bookkeeping). Overall values are means over all frames with a value (the official test
averages per frame), FID compares the set of source images (one per result) with the set of results.
"""
import dataclasses
from collections.abc import Callable, Iterable

import jax
import numpy as np
import tqdm

from mcc_jax.evaluation import processes
from mcc_jax.evaluation.inception import FEATURE_DIM
from mcc_jax.evaluation.metric_suite import MetricSuite
from mcc_jax.evaluation.pairs import ClipTask
from mcc_jax.evaluation.predictors import pad_rows
from mcc_jax.training import sharding


@dataclasses.dataclass
class ClipResult:
  """One task's per-frame values ({metric: (T,) with NaN where undefined}) and, if kept, its results."""
  task: ClipTask
  frame_values: dict[str, np.ndarray]
  results: np.ndarray | None = None

  def mean(self, metric: str) -> float:
    values = self.frame_values[metric]
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else float("nan")

  def count(self, metric: str) -> int:
    return int((~np.isnan(self.frame_values[metric])).sum())


@dataclasses.dataclass
class EvaluationResult:
  metrics: dict[str, dict]  # {metric: {"value": float, "frames": frames with a value}}
  clips: int
  frames: int
  predictor: str


class _Accumulator:
  def __init__(self):
    self.sums, self.counts = {}, {}
    self.result_features, self.source_features = [], []

  def add(self, clip: ClipResult) -> None:
    for metric, values in clip.frame_values.items():
      valid = values[~np.isnan(values)]
      self.sums[metric] = self.sums.get(metric, 0.0) + float(valid.astype(np.float64).sum())
      self.counts[metric] = self.counts.get(metric, 0) + len(valid)

  def part(self, metric_names, clips: int, frames: int) -> dict[str, np.ndarray]:
    """This process's share, as arrays (see `combine_parts`)."""
    names = [m for m in metric_names if m != "fid"]
    stack = lambda chunks: np.concatenate(chunks) if chunks else np.zeros((0, FEATURE_DIM), np.float32)
    return {"sums": np.array([self.sums.get(m, 0.0) for m in names], np.float64),
            "counts": np.array([self.counts.get(m, 0) for m in names], np.int64),
            "result_features": stack(self.result_features), "source_features": stack(self.source_features),
            "clips_frames": np.array([clips, frames], np.int64)}

  def combine_parts(self, metric_names, parts: list[dict]) -> tuple[int, int]:
    """Replace the sums, counts and features with those of all `parts` (in order); returns (clips, frames)."""
    names = [m for m in metric_names if m != "fid"]
    self.sums = dict(zip(names, np.sum([p["sums"] for p in parts], axis=0).tolist()))
    self.counts = dict(zip(names, np.sum([p["counts"] for p in parts], axis=0).tolist()))
    self.result_features = [p["result_features"] for p in parts]
    self.source_features = [p["source_features"] for p in parts]
    clips, frames = np.sum([p["clips_frames"] for p in parts], axis=0)
    return int(clips), int(frames)

  def metrics(self, suite: MetricSuite) -> dict:
    out = {}
    for metric in suite.names:
      if metric == "fid":
        frames = sum(len(f) for f in self.result_features)
        value = float("nan")
        if frames >= 2:
          value = suite.frechet_distance(np.concatenate(self.source_features), np.concatenate(self.result_features))
        out[metric] = {"value": value, "frames": frames}
      else:
        count = self.counts.get(metric, 0)
        out[metric] = {"value": self.sums[metric] / count if count else float("nan"), "frames": count}
    return out


class _Open:
  """A task whose rows are not all back yet."""

  def __init__(self, task: ClipTask, extras: dict, metrics: tuple, keep: bool, identity_reference: dict):
    self.task = task
    self.extras = extras
    self.values = {m: np.full(task.num_frames, np.nan) for m in metrics}
    self.results = np.zeros_like(task.driving) if keep else None
    self.identity_reference = identity_reference
    self.done = 0


def evaluate_tasks(tasks: Iterable[ClipTask], predictor, suite: MetricSuite, mesh, *, batch_size: int = 32,
                   keep_results: int = 0, total: int | None = None, progress: bool = True,
                   on_clip: Callable[[ClipResult], None] | None = None,
                   exchange_dir=None) -> EvaluationResult:
  """Run `predictor` on every frame of every task and measure the results with `suite`. With several processes,
  each passes its own share of the tasks, a mesh of its local devices and the shared `exchange_dir`; the returned
  metrics cover all shares.

  batch_size: rows per batch (rounded up to a multiple of the mesh's devices). keep_results: the first that many
  tasks keep their result frames in their ClipResult (for videos). on_clip is called with each finished task, in
  task order.
  """
  devices = mesh.size
  batch_size = max(devices, -(-batch_size // devices) * devices)
  batch_sharding = sharding.batch_sharding(mesh)
  ground_truth = suite.mode == "reconstruction"
  accumulator = _Accumulator()
  metric_names = tuple(m for m in suite.names if m != "fid")
  open_tasks: list[_Open] = []
  rows: list[tuple[_Open, int]] = []
  in_flight = None
  clip_count = frame_count = 0
  bar = tqdm.tqdm(total=total, unit="clip", desc=f"evaluate {predictor.name}", disable=not progress)

  def dispatch(batch_rows):
    count = len(batch_rows)
    source = pad_rows(np.stack([slot.task.source for slot, _ in batch_rows]), batch_size)
    driving = pad_rows(np.stack([slot.task.driving[i] for slot, i in batch_rows]), batch_size)
    extras = {k: pad_rows(np.stack([slot.extras[k] for slot, _ in batch_rows]), batch_size)
              for k in batch_rows[0][0].extras}
    source, driving, extras = jax.device_put((source, driving, extras), batch_sharding)
    results = predictor(source, driving, extras)
    measured = suite.batch_metrics(results, driving) if ground_truth else {}
    features = suite.fid_features(results) if suite.uses_fid else None
    return batch_rows, count, results, measured, features

  def finish(batch):
    nonlocal clip_count, frame_count
    batch_rows, count, results, measured, features = batch
    measured = {k: np.asarray(v)[:count] for k, v in measured.items()}
    need_images = suite.uses_faces or any(slot.results is not None for slot, _ in batch_rows)
    images = np.asarray(results)[:count] if need_images else None
    if features is not None:
      accumulator.result_features.append(np.asarray(features, np.float32)[:count])
    for row, (slot, i) in enumerate(batch_rows):
      for metric, values in measured.items():
        slot.values[metric][i] = values[row]
      if slot.results is not None:
        slot.results[i] = images[row]
      if suite.uses_faces:
        pose_reference = suite.face_reference(slot.task.driving[i], identity=ground_truth)
        identity_reference = pose_reference if ground_truth else slot.identity_reference
        for metric, value in suite.face_values(images[row], pose_reference, identity_reference).items():
          slot.values[metric][i] = value
      slot.done += 1
    while open_tasks and open_tasks[0].done == open_tasks[0].task.num_frames:
      slot = open_tasks.pop(0)
      clip = ClipResult(slot.task, slot.values, slot.results)
      accumulator.add(clip)
      clip_count += 1
      frame_count += slot.task.num_frames
      bar.update()
      bar.set_postfix(frames=frame_count)
      if on_clip is not None:
        on_clip(clip)

  def flush(batch_rows):
    nonlocal in_flight
    launched = dispatch(batch_rows)
    if in_flight is not None:
      finish(in_flight)
    in_flight = launched

  try:
    for index, task in enumerate(tasks):
      if task.num_frames == 0:
        raise ValueError(f"task {task.name} has no driving frames")
      identity_reference = (suite.face_reference(task.source, pose=False)
                            if suite.uses_faces and not ground_truth else {})
      slot = _Open(task, predictor.prepare(task), metric_names, index < keep_results, identity_reference)
      open_tasks.append(slot)
      if suite.uses_fid:
        source_features = np.asarray(suite.fid_features(
            jax.device_put(pad_rows(task.source[None], devices), batch_sharding)), np.float32)[:1]
        accumulator.source_features.append(np.repeat(source_features, task.num_frames, axis=0))
      for i in range(task.num_frames):
        rows.append((slot, i))
        if len(rows) == batch_size:
          flush(rows)
          rows = []
    if rows:
      flush(rows)
    if in_flight is not None:
      finish(in_flight)
  finally:
    bar.close()
  if exchange_dir is not None:
    parts = processes.combine(exchange_dir, accumulator.part(suite.names, clip_count, frame_count))
    clip_count, frame_count = accumulator.combine_parts(suite.names, parts)
  return EvaluationResult(metrics=accumulator.metrics(suite), clips=clip_count, frames=frame_count,
                          predictor=predictor.name)
