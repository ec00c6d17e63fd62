"""The clips an evaluation reads: a prepared dataset split, or a folder of face videos / frame folders.

Both give clip ids, each clip's identity, frame rate and frames (uint8 (T, S, S, 3), resized bilinearly to the
model's size S). A folder may hold already-cropped square face videos (`*.mp4`, `*.avi`, ...) and FOMM-style
frame folders (one folder of .png/.jpg frames per clip); when it has a `<split>/` sub-folder (FOMM's
`train/` + `test/`), that one is read. A folder clip's identity is the part of its name before the first '#'
(VoxCeleb names), else its whole name.
"""
import functools
import pathlib
import re

import numpy as np
from PIL import Image

from mcc_jax.io.video import VIDEO_SUFFIXES, read_video, resize_square

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def _natural_key(name: str):
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def frame_files(folder) -> list[pathlib.Path]:
  """A frame folder's images in name order (numbers compared as numbers)."""
  return sorted((p for p in pathlib.Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                key=lambda p: _natural_key(p.name))


def read_frame(path, size: int | None = None) -> np.ndarray:
  """An image file as (H, W, 3) uint8 RGB, resized (bilinear) to size x size when given."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"image not found: {path}")
  try:
    with Image.open(path) as image:
      array = np.asarray(image.convert("RGB"))
  except OSError as e:
    raise ValueError(f"{path} is not a readable image: {e}") from None
  return resize_square(array, size) if size else array


def read_frame_folder(folder, size: int, max_frames: int | None = None) -> np.ndarray:
  paths = frame_files(folder)[:max_frames]
  if not paths:
    raise ValueError(f"{folder} holds no .png/.jpg frames")
  return np.stack([read_frame(p, size) for p in paths])


def identity_of(name: str) -> str:
  return name.split("#", 1)[0] if "#" in name and not name.startswith("#") else name


class DatasetClips:
  """One split of a dataset written by input_pipeline.prepare (its --out, or the dataset directory itself)."""

  def __init__(self, data_dir, split: str, size: int):
    from input_pipeline.face_dataset import dataset_dir, open_split
    from input_pipeline.pipeline import load_clip_index
    path = pathlib.Path(data_dir)
    if not (path / "dataset_info.json").is_file() and (path / "data").is_dir():
      path = path / "data"  # prepare's --out
    self.data_dir = dataset_dir(path)
    self.size = size
    index = load_clip_index(self.data_dir, split)
    self._source = open_split(self.data_dir, split)
    self._record = {clip_id: i for i, clip_id in enumerate(index.clip_ids)}
    self._identity = {clip_id: index.identities[index.clip_identity[i]] for i, clip_id in enumerate(index.clip_ids)}
    self.ids = sorted(index.clip_ids)
    self.description = f"dataset {self.data_dir} split {split!r}"

  def identity(self, clip_id: str) -> str:
    return self._identity[clip_id]

  @functools.lru_cache(maxsize=2)
  def _example(self, clip_id: str) -> dict:
    return self._source[self._record[clip_id]]

  def fps(self, clip_id: str) -> float:
    return float(self._example(clip_id)["fps"])

  def frames(self, clip_id: str, max_frames: int | None = None) -> np.ndarray:
    from input_pipeline.pipeline import decode_frame
    jpegs = self._example(clip_id)["frames"][:max_frames]
    return np.stack([decode_frame(jpeg, self.size) for jpeg in jpegs])


class FolderClips:
  """Face videos and frame folders directly inside a folder (or inside its `<split>/` sub-folder)."""

  def __init__(self, folder, split: str, size: int, fps: float = 25.0):
    root = pathlib.Path(folder)
    if not root.is_dir():
      raise FileNotFoundError(f"data folder not found: {root}")
    if (root / split).is_dir():
      root = root / split
    self.size = size
    self._fps = fps
    self._paths = {}
    for path in sorted(root.iterdir(), key=lambda p: _natural_key(p.name)):
      if path.name.startswith("."):
        continue
      if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES:
        name = path.stem
      elif path.is_dir() and frame_files(path):
        name = path.name[:-4] if path.name.endswith(".mp4") else path.name  # FOMM names frame folders *.mp4
      else:
        continue
      if name in self._paths:
        raise ValueError(f"two clips named {name!r} in {root}: {self._paths[name].name} and {path.name}")
      self._paths[name] = path
    if not self._paths:
      raise ValueError(f"{root} holds no videos ({', '.join(VIDEO_SUFFIXES)}) or folders of frames")
    self.ids = list(self._paths)
    self.description = f"folder {root}"

  def identity(self, clip_id: str) -> str:
    return identity_of(clip_id)

  def path(self, clip_id: str) -> pathlib.Path:
    return self._paths[clip_id]

  @functools.lru_cache(maxsize=2)
  def _video(self, clip_id: str, max_frames: int | None):
    path = self._paths[clip_id]
    if path.is_dir():
      return read_frame_folder(path, self.size, max_frames), self._fps
    video = read_video(path, size=self.size, max_frames=max_frames)
    return video.frames, video.fps

  def fps(self, clip_id: str) -> float:
    path = self._paths[clip_id]
    return self._fps if path.is_dir() else self._video(clip_id, 1)[1]

  def frames(self, clip_id: str, max_frames: int | None = None) -> np.ndarray:
    return self._video(clip_id, max_frames)[0]


def open_clips(data, *, split: str = "test", size: int, clip_ids=None):
  """DatasetClips when `data` holds a prepared dataset, else FolderClips; `clip_ids` keeps only those (in that
  order)."""
  path = pathlib.Path(data)
  if not path.exists():
    raise FileNotFoundError(f"--data not found: {path}")
  is_dataset = any((p / "dataset_info.json").is_file() or any(p.glob("mcc_face_clips/*/dataset_info.json"))
                   for p in (path, path / "data"))
  clips = DatasetClips(path, split, size) if is_dataset else FolderClips(path, split, size)
  if clip_ids:
    missing = [c for c in clip_ids if c not in clips.ids]
    if missing:
      raise ValueError(f"clips not in {clips.description}: {', '.join(missing)}")
    clips.ids = list(clip_ids)
  return clips
