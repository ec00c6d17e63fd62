"""Evaluation pairs: the official CSV formats, generated pairs, and the per-clip tasks they turn into.

Official CSVs (read with a header row; other columns are ignored):
- reconstruction (`FramesMotionTransferTestDataset_PairsList`): `source`, `driving` and optionally `anchor`, one
  row per generated frame, both frame image paths. Motion is absolute, so `anchor` is not used.
- cross-identity (`FramesMotionTransferTestDataset_CrossID_videopair_anchor`): `source` (an image), `driving`
  (a folder of frames), optionally `anchor` (an image) and `anchor_idx`. As the official loader does, the driving
  video is its frames minus the first one, and motion is relative to driving frame `anchor_idx` (after that cut);
  without `anchor_idx` an `anchor` is looked up among the driving frames by file name, else frame 0 is used.

A reference in a CSV is a path (absolute, else relative to the CSV's folder, else to --data), or points into
--data: `<clip id>` for a whole clip, `<clip id>/<frame index>` for one frame (clip ids contain no '/').
Reconstruction rows may also give a whole clip as `driving` (every frame of it is driven); generated pairs
are written that way.

Rows become tasks: consecutive rows with the same source and the same driving video form one task, one source
image driven by a sequence of frames.
"""
import csv
import dataclasses
import functools
import pathlib
import re
from collections.abc import Callable, Iterator

import numpy as np

from mcc_jax.evaluation.clips import IMAGE_SUFFIXES, frame_files, identity_of, read_frame, read_frame_folder
from mcc_jax.io.video import VIDEO_SUFFIXES, read_video

MODES = ("reconstruction", "cross_identity")
_FRAME_REF = re.compile(r"^([^/]+)/(\d+)$")


@dataclasses.dataclass(frozen=True)
class Pair:
  source: str
  driving: str
  anchor: str | None = None
  anchor_idx: int | None = None


@dataclasses.dataclass
class ClipTask:
  """One source image animated by a sequence of driving frames (uint8, model size).

  anchor_index: relative motion from that driving frame (cross-identity); None for absolute motion.
  """
  name: str
  source_ref: str
  driving_ref: str
  source: np.ndarray
  driving: np.ndarray
  fps: float
  anchor_index: int | None = None
  source_identity: str = ""
  driving_identity: str = ""

  @property
  def num_frames(self) -> int:
    return len(self.driving)


def _check_mode(mode: str) -> None:
  if mode not in MODES:
    raise ValueError(f"mode must be one of {MODES}; got {mode!r}")


def read_pairs(path, mode: str) -> list[Pair]:
  """The rows of an official-format pairs CSV."""
  _check_mode(mode)
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"pairs CSV not found: {path}")
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    columns = reader.fieldnames or []
    for required in ("source", "driving"):
      if required not in columns:
        raise ValueError(f"{path}: no '{required}' column (columns: {columns}); the official format has "
                         "source,driving[,anchor]" + ("[,anchor_idx]" if mode == "cross_identity" else ""))
    pairs = []
    for line, row in enumerate(reader, start=2):
      if not row["source"] or not row["driving"]:
        raise ValueError(f"{path}:{line}: empty source or driving")
      anchor_idx = (row.get("anchor_idx") or "").strip()
      try:
        anchor_idx = int(float(anchor_idx)) if anchor_idx else None
      except ValueError:
        raise ValueError(f"{path}:{line}: anchor_idx {anchor_idx!r} is not an integer") from None
      pairs.append(Pair(row["source"].strip(), row["driving"].strip(), (row.get("anchor") or "").strip() or None,
                        anchor_idx))
  if not pairs:
    raise ValueError(f"{path} has no pairs")
  return pairs


def write_pairs(path, pairs: list[Pair], mode: str) -> pathlib.Path:
  _check_mode(mode)
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  columns = ["source", "driving"] + (["anchor_idx"] if mode == "cross_identity" else [])
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(columns)
    for pair in pairs:
      writer.writerow([pair.source, pair.driving] + ([pair.anchor_idx] if mode == "cross_identity" else []))
  return path


def generated_pairs(clips, mode: str) -> list[Pair]:
  """reconstruction: each clip's first frame, driven by the whole clip. cross_identity: each clip drives the first
  frame of the next clip (in clip order, wrapping around) of another identity, from its first frame on."""
  _check_mode(mode)
  ids = list(clips.ids)
  if mode == "reconstruction":
    return [Pair(f"{clip_id}/0", clip_id) for clip_id in ids]
  pairs = []
  for i, clip_id in enumerate(ids):
    others = [c for c in ids[i + 1:] + ids[:i] if clips.identity(c) != clips.identity(clip_id)]
    if not others:
      raise ValueError(f"cross-identity pairs need clips of at least two identities; {clips.description} has "
                       f"only {clips.identity(clip_id)!r}")
    pairs.append(Pair(f"{others[0]}/0", clip_id, anchor_idx=0))
  return pairs


class _Resolver:
  """Turns references into frames, using the clips of --data and paths relative to the CSV or --data."""

  def __init__(self, clips, size: int, bases: tuple):
    self.clips = clips
    self.size = size
    self.bases = [pathlib.Path(b) for b in bases if b is not None]

  def path(self, reference: str) -> pathlib.Path | None:
    candidate = pathlib.Path(reference)
    if candidate.is_absolute():
      return candidate if candidate.exists() else None
    for base in self.bases:
      if (base / candidate).exists():
        return base / candidate
    return None

  def is_clip(self, reference: str) -> bool:
    return self.clips is not None and reference in self.clips.ids

  def frame(self, reference: str) -> tuple[np.ndarray, str]:
    """(image, identity) of a frame reference."""
    match = _FRAME_REF.match(reference)
    if match and self.is_clip(match.group(1)):
      clip_id, index = match.group(1), int(match.group(2))
      frames = self.clips.frames(clip_id, index + 1)
      if index >= len(frames):
        raise ValueError(f"frame reference {reference!r}: clip {clip_id} has {len(frames)} frames")
      return frames[index], self.clips.identity(clip_id)
    path = self.path(reference)
    if path is None or not path.is_file() or path.suffix.lower() not in IMAGE_SUFFIXES:
      raise FileNotFoundError(f"frame {reference!r} is neither an image file nor <clip id>/<frame index> of a clip "
                              "in --data")
    return read_frame(path, self.size), identity_of(_video_stem(path.parent.name))

  def video(self, reference: str, max_frames: int | None) -> tuple[np.ndarray, list[str], float, str]:
    """(frames, frame names, fps, identity) of a whole-video reference."""
    if self.is_clip(reference):
      frames = self.clips.frames(reference, max_frames)
      return frames, [str(i) for i in range(len(frames))], self.clips.fps(reference), self.clips.identity(reference)
    path = self.path(reference)
    if path is not None and path.is_dir():
      names = [p.name for p in frame_files(path)][:max_frames]
      return read_frame_folder(path, self.size, max_frames), names, 25.0, identity_of(_video_stem(path.name))
    if path is not None and path.suffix.lower() in VIDEO_SUFFIXES:
      video = read_video(path, size=self.size, max_frames=max_frames)
      return video.frames, [str(i) for i in range(len(video.frames))], video.fps, identity_of(path.stem)
    raise FileNotFoundError(f"driving video {reference!r} is neither a clip id of --data, a folder of frames nor "
                            "a video file")


def _video_stem(name: str) -> str:
  path = pathlib.PurePath(name)
  return path.stem if path.suffix.lower() in VIDEO_SUFFIXES else path.name


def _short_name(reference: str) -> str:
  match = _FRAME_REF.match(reference)
  if match:
    return f"{match.group(1)}_f{match.group(2)}"
  path = pathlib.PurePath(reference)
  return f"{_video_stem(path.parent.name)}_{path.stem}" if path.suffix else _video_stem(path.name)


def _task_name(source_ref: str, driving_key: str) -> str:
  match = _FRAME_REF.match(source_ref)
  if match and match.group(1) == driving_key:
    return driving_key
  return f"{_short_name(source_ref)}__{_video_stem(pathlib.PurePath(driving_key).name)}"


def _reconstruction_groups(pairs, is_clip) -> list[tuple[str, str, list[str] | None]]:
  """(source, driving video, driving frame references or None for the whole video) per task."""
  groups = []
  for pair in pairs:
    match = _FRAME_REF.match(pair.driving)
    if is_clip(pair.driving):
      key, frame = pair.driving, None
    elif match and is_clip(match.group(1)):
      key, frame = match.group(1), pair.driving
    else:
      key, frame = str(pathlib.PurePath(pair.driving).parent), pair.driving
    last = groups[-1] if groups else None
    if last and last[0] == pair.source and last[1] == key and frame is not None and last[2] is not None:
      last[2].append(frame)
    else:
      groups.append((pair.source, key, None if frame is None else [frame]))
  return groups


def _reconstruction_tasks(pairs, resolver: _Resolver, max_frames) -> Iterator[tuple[str, Callable[[], ClipTask]]]:
  """(name, load) per task: loading (decoding the clip) waits until load() is called."""
  def load(source_ref, key, frame_refs, name):
    source, source_identity = resolver.frame(source_ref)
    if frame_refs is None:
      driving, _, fps, identity = resolver.video(key, max_frames)
    else:
      frame_refs = frame_refs[:max_frames]
      if resolver.is_clip(key):  # decode the clip once, up to the last frame used
        indices = [int(_FRAME_REF.match(ref).group(2)) for ref in frame_refs]
        frames = resolver.clips.frames(key, max(indices) + 1)
        if max(indices) >= len(frames):
          raise ValueError(f"frame reference {key}/{max(indices)}: clip {key} has {len(frames)} frames")
        driving, fps, identity = frames[indices], resolver.clips.fps(key), resolver.clips.identity(key)
      else:
        resolved = [resolver.frame(ref) for ref in frame_refs]
        driving, fps, identity = np.stack([image for image, _ in resolved]), 25.0, resolved[0][1]
    return ClipTask(name=name, source_ref=source_ref, driving_ref=key, source=source, driving=driving, fps=fps,
                    anchor_index=None, source_identity=source_identity, driving_identity=identity)

  for source_ref, key, frame_refs in _reconstruction_groups(pairs, resolver.is_clip):
    yield _task_name(source_ref, key), functools.partial(load, source_ref, key, frame_refs)


def _anchor_index(pair: Pair, names: list[str]) -> int:
  if pair.anchor_idx is not None:
    index = pair.anchor_idx
  elif pair.anchor is not None and pathlib.PurePath(pair.anchor).name in names:
    index = names.index(pathlib.PurePath(pair.anchor).name)
  else:
    index = 0
  if not 0 <= index < len(names):
    raise ValueError(f"anchor_idx {index} is outside the {len(names)} driving frames of {pair.driving!r}")
  return index


def _cross_identity_tasks(pairs, resolver: _Resolver, max_frames) -> Iterator[tuple[str, Callable[[], ClipTask]]]:
  def load(pair, name):
    source, source_identity = resolver.frame(pair.source)
    frames, names, fps, identity = resolver.video(pair.driving, None if max_frames is None else max_frames + 1)
    if len(frames) < 2:
      raise ValueError(f"driving video {pair.driving!r} has {len(frames)} frame(s); cross-identity needs at least 2 "
                       "(the first one is left out, as the official loader does)")
    frames, names = frames[1:], names[1:]
    return ClipTask(name=name, source_ref=pair.source, driving_ref=pair.driving, source=source, driving=frames,
                    fps=fps, anchor_index=_anchor_index(pair, names), source_identity=source_identity,
                    driving_identity=identity)

  for pair in pairs:
    yield _task_name(pair.source, pair.driving), functools.partial(load, pair)


def tasks_from_pairs(pairs: list[Pair], mode: str, *, clips=None, size: int, max_frames: int | None = None,
                     csv_dir=None, data_dir=None, shard: tuple[int, int] = (0, 1)) -> Iterator[ClipTask]:
  """The tasks of `pairs`, loaded lazily (one clip in memory at a time); names are made unique.

  shard (index, count): only tasks index, index + count, ... (one process's share); the others are never loaded.
  """
  _check_mode(mode)
  index, count = shard
  resolver = _Resolver(clips, size, (csv_dir, data_dir))
  tasks = (_reconstruction_tasks(pairs, resolver, max_frames) if mode == "reconstruction"
           else _cross_identity_tasks(pairs, resolver, max_frames))
  seen = {}
  for position, (name, load) in enumerate(tasks):
    repeats = seen[name] = seen.get(name, 0) + 1
    if position % count == index:
      yield load(name if repeats == 1 else f"{name}-{repeats}")


def count_tasks(pairs: list[Pair], mode: str, clips=None, shard: tuple[int, int] = (0, 1)) -> int:
  """How many tasks `tasks_from_pairs` yields (for a progress bar)."""
  _check_mode(mode)
  if mode == "cross_identity":
    total = len(pairs)
  else:
    total = len(_reconstruction_groups(pairs, lambda reference: clips is not None and reference in clips.ids))
  return len(range(shard[0], total, shard[1]))
