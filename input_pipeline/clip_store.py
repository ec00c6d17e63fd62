"""The resumable work area that preprocessing fills before the TFDS dataset is built.

One directory per clip: `frames/00000.jpg ...` and `meta.json`, written last, so a clip counts as done only
when its `meta.json` exists. A rerun skips done clips; a half-written clip is rewritten.
"""
import dataclasses
import io
import json
import os
import pathlib
import re
import shutil

import numpy as np
from PIL import Image

META = "meta.json"
FRAMES = "frames"
_SAFE = re.compile(r"[^A-Za-z0-9._#=+-]")


def safe_clip_id(name: str) -> str:
  """A clip id usable as a directory name (VoxCeleb ids such as `id10001#abc#000001#000100` stay as they are)."""
  return _SAFE.sub("_", name)


def encode_jpeg(frame: np.ndarray, quality: int = 95) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(np.asarray(frame, np.uint8)).save(buffer, format="JPEG", quality=quality)
  return buffer.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
  with Image.open(io.BytesIO(data)) as image:
    return np.asarray(image.convert("RGB"))


@dataclasses.dataclass
class ClipMeta:
  """What the dataset records about a clip besides its frames.

  boxes: per frame, the crop square (x0, y0, x1, y1) in upright source-frame pixels (the whole frame for
  imported frame folders); it may extend past the frame where the crop was padded. motion: per frame, known motion parameters (synthetic clips; zero columns otherwise).
  """
  clip_id: str
  identity: str
  source_path: str
  num_frames: int
  boxes: list
  fps: float = 25.0
  motion: list = dataclasses.field(default_factory=list)
  motion_names: list = dataclasses.field(default_factory=list)
  split: str | None = None


class ClipStore:

  def __init__(self, root):
    self.root = pathlib.Path(root)
    self.root.mkdir(parents=True, exist_ok=True)

  def clip_dir(self, clip_id: str) -> pathlib.Path:
    return self.root / clip_id

  def has(self, clip_id: str) -> bool:
    return (self.clip_dir(clip_id) / META).is_file()

  def clip_ids(self) -> list[str]:
    return sorted(p.parent.name for p in self.root.glob(f"*/{META}"))

  def write(self, meta: ClipMeta, frames) -> None:
    """Write JPEG bytes or uint8 (H, W, 3) frames, then the metadata (atomically)."""
    directory = self.clip_dir(meta.clip_id)
    if directory.exists():
      shutil.rmtree(directory)
    (directory / FRAMES).mkdir(parents=True)
    count = 0
    try:
      for i, frame in enumerate(frames):
        data = frame if isinstance(frame, bytes) else encode_jpeg(frame)
        (directory / FRAMES / f"{i:05d}.jpg").write_bytes(data)
        count += 1
      if count != meta.num_frames:
        raise ValueError(f"{meta.clip_id}: {count} frames written, metadata says {meta.num_frames}")
    except BaseException:
      shutil.rmtree(directory, ignore_errors=True)
      raise
    tmp = directory / (META + ".tmp")
    tmp.write_text(json.dumps(dataclasses.asdict(meta)))
    os.replace(tmp, directory / META)

  def read_meta(self, clip_id: str) -> ClipMeta:
    return ClipMeta(**json.loads((self.clip_dir(clip_id) / META).read_text()))

  def read_frames(self, clip_id: str) -> list[bytes]:
    return [p.read_bytes() for p in sorted((self.clip_dir(clip_id) / FRAMES).glob("*.jpg"))]
