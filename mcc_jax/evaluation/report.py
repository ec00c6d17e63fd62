"""An evaluation's outputs: `summary.json`, `per_clip.csv` and side-by-side videos (source | driving | result)."""
import csv
import json
import math
import pathlib
import re

import numpy as np
from PIL import Image

from mcc_jax.evaluation.metric_suite import IDENTITY_METRICS, LANDMARK_METRICS
from mcc_jax.evaluation.runner import ClipResult
from mcc_jax.io.video import write_video

SUMMARY_FILE, CLIPS_FILE, VIDEOS_DIR, RESULTS_DIR = "summary.json", "per_clip.csv", "videos", "results"
CLIP_COLUMNS = ("clip", "source", "driving", "source_identity", "driving_identity", "frames", "anchor_index")
_FACE_METRICS = LANDMARK_METRICS + IDENTITY_METRICS


def json_number(value):
  """NaN (nothing measured) -> None, +-inf (e.g. PSNR of identical images) -> "inf" / "-inf"; JSON has neither."""
  if isinstance(value, float) and not math.isfinite(value):
    return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
  return value


def _clean(value):
  if isinstance(value, dict):
    return {str(k): _clean(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_clean(v) for v in value]
  if isinstance(value, (np.floating, np.integer)):
    value = value.item()
  return json_number(value)


def write_summary(directory, summary: dict) -> pathlib.Path:
  path = pathlib.Path(directory) / SUMMARY_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(_clean(summary), indent=1, allow_nan=False))
  return path


def clip_columns(metric_names) -> list[str]:
  columns = list(CLIP_COLUMNS)
  for metric in metric_names:
    if metric == "fid":  # a property of the whole set
      continue
    columns.append(metric)
    if metric in _FACE_METRICS:
      columns.append(f"{metric}_frames")  # frames where both images had a face
  return columns


def clip_row(clip: ClipResult, metric_names) -> dict:
  task = clip.task
  row = {"clip": task.name, "source": task.source_ref, "driving": task.driving_ref,
         "source_identity": task.source_identity, "driving_identity": task.driving_identity,
         "frames": task.num_frames, "anchor_index": "" if task.anchor_index is None else task.anchor_index}
  for metric in metric_names:
    if metric == "fid":
      continue
    value = clip.mean(metric)
    row[metric] = "" if math.isnan(value) else repr(value)
    if metric in _FACE_METRICS:
      row[f"{metric}_frames"] = clip.count(metric)
  return row


def _part_path(directory, part: int) -> pathlib.Path:
  return pathlib.Path(directory) / f"{pathlib.Path(CLIPS_FILE).stem}.part{part}.csv"


class ClipTable:
  """per_clip.csv, one row appended (and flushed) per finished clip; with `part`, one process's share of it
  (merged by `merge_clip_tables`)."""

  def __init__(self, directory, metric_names, part: int | None = None):
    self.path = pathlib.Path(directory) / CLIPS_FILE if part is None else _part_path(directory, part)
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self.metric_names = tuple(metric_names)
    self._file = open(self.path, "w", newline="")
    self._writer = csv.DictWriter(self._file, fieldnames=clip_columns(self.metric_names))
    self._writer.writeheader()

  def add(self, clip: ClipResult) -> None:
    self._writer.writerow(clip_row(clip, self.metric_names))
    self._file.flush()

  def close(self) -> None:
    self._file.close()


def merge_clip_tables(directory, parts: int) -> pathlib.Path:
  """per_clip.csv from the processes' parts, in task order (process i holds tasks i, i + parts, ...)."""
  tables = []
  for part in range(parts):
    with open(_part_path(directory, part), newline="") as f:
      reader = csv.DictReader(f)
      fieldnames = reader.fieldnames
      tables.append(list(reader))
  path = pathlib.Path(directory) / CLIPS_FILE
  with open(path, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=fieldnames)
    writer.writeheader()
    for position in range(sum(len(t) for t in tables)):
      writer.writerow(tables[position % parts][position // parts])
  for part in range(parts):
    _part_path(directory, part).unlink()
  return path


def safe_name(clip_name: str) -> str:
  return re.sub(r"[^A-Za-z0-9._#=+-]", "_", clip_name)


def side_by_side(clip: ClipResult):
  """Frames of source | driving | result."""
  for driving, result in zip(clip.task.driving, clip.results):
    yield np.concatenate([clip.task.source, driving, result], axis=1)


def write_clip_video(directory, clip: ClipResult) -> pathlib.Path:
  if clip.results is None:
    raise ValueError(f"clip {clip.task.name} kept no result frames")
  return write_video(pathlib.Path(directory) / VIDEOS_DIR / f"{safe_name(clip.task.name)}.mp4", side_by_side(clip),
                     clip.task.fps)


def write_result_frames(directory, clip: ClipResult) -> pathlib.Path:
  """results/<clip>/<frame index>.png (lossless, for other tools)."""
  if clip.results is None:
    raise ValueError(f"clip {clip.task.name} kept no result frames")
  folder = pathlib.Path(directory) / RESULTS_DIR / safe_name(clip.task.name)
  folder.mkdir(parents=True, exist_ok=True)
  for index, image in enumerate(clip.results):
    Image.fromarray(image).save(folder / f"{index:05d}.png")
  return folder
