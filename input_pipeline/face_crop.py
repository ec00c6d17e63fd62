"""Face boxes and VoxCeleb-style crops: one fixed square per stretch of frames where the face stays put.

Pure functions on arrays, no I/O. Boxes are (x0, y0, x1, y1) in source-frame pixels.

- `FaceDetector`: dlib's HOG frontal face detector, run on a copy of the frame whose longer side is at most
  640 px (as FOMM's crop-video.py does); largest face first.
- `detect_sampled`: detect on every k-th frame (and the last one).
- `track`: one face box per frame: the sampled boxes of the followed face, linearly interpolated between two
  samples of the same face, else each frame takes the nearest sample (possibly "no face", NaN).
- `plan_chunks`: cut the frames into chunks where the face stays near the chunk's first box; each chunk gets
  one square, centred on its mean face box, `scale` times the box's larger side.
- `crop_and_resize`: cut a square out of a frame and resize it.

Where the square leaves the frame: along an axis where the frame is at least as long as the square, the
square is shifted back inside (the face is then off-centre, but every pixel is real); along an axis where the
frame is shorter, the square stays centred on the face and the missing pixels repeat the frame's edge
(`pad="edge"`, the default) or are black (`pad="black"`). Crop boxes recorded for such clips extend beyond
the frame.
"""
import dataclasses

import dlib
import numpy as np
from PIL import Image

NO_FACE = np.full(4, np.nan, np.float32)
# dlib's HOG window is 80x80: without upsampling it misses smaller faces.
_HOG_WINDOW = 80


@dataclasses.dataclass(frozen=True)
class CropSettings:
  """How faces are followed and cropped.

  every: detect on every `every`-th frame. iou_threshold / max_centre_shift: a box belongs to the chunk while
  its IoU with the chunk's first box is at least this and its centre is within this fraction of that box's
  larger side. max_lost: the most frames without a face inside a chunk. scale: crop side / face box side.
  min_frames, min_face: shorter chunks, or chunks whose mean face box side is smaller (px), are rejected.
  """
  every: int = 5
  iou_threshold: float = 0.25
  max_centre_shift: float = 0.5
  max_lost: int = 7
  scale: float = 1.8
  min_frames: int = 32
  min_face: int = 64


@dataclasses.dataclass(frozen=True)
class Chunk:
  """Frames [start, stop) with one crop square; `reason` says why it is rejected (None if accepted)."""
  start: int
  stop: int
  square: tuple
  face_size: float
  reason: str | None = None

  @property
  def num_frames(self) -> int:
    return self.stop - self.start


class FaceDetector:
  """dlib's HOG frontal face detector on a copy of the frame whose longer side is at most `max_side`.

  Upsamples once (4x the cost) only on frames where nothing was found and a face of `min_face` source pixels
  would be smaller than dlib's 80 px window in the downscaled copy.
  """

  def __init__(self, max_side: int = 640, min_face: int = 64):
    self.max_side = max_side
    self.min_face = min_face
    self._detector = dlib.get_frontal_face_detector()

  def __call__(self, frame: np.ndarray) -> np.ndarray:
    """(N, 4) float32 face boxes in source pixels, clipped to the frame, largest first."""
    height, width = frame.shape[:2]
    factor = min(1.0, self.max_side / max(height, width))
    small = np.asarray(frame, np.uint8)
    if factor < 1.0:
      size = (max(1, round(width * factor)), max(1, round(height * factor)))
      small = np.asarray(Image.fromarray(small).resize(size, Image.Resampling.BILINEAR))
    small = np.ascontiguousarray(small)
    found = self._detector(small, 0)
    if not found and self.min_face * factor < _HOG_WINDOW:
      found = self._detector(small, 1)
    boxes = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in found], np.float32)
    boxes = boxes.reshape(-1, 4) / factor
    boxes = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
    return boxes[np.argsort(-box_area(boxes), kind="stable")]


def box_area(boxes: np.ndarray) -> np.ndarray:
  boxes = np.asarray(boxes, np.float32)
  return np.maximum(boxes[..., 2] - boxes[..., 0], 0) * np.maximum(boxes[..., 3] - boxes[..., 1], 0)


def iou(a: np.ndarray, b: np.ndarray) -> float:
  inner = np.concatenate([np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])])
  overlap = float(box_area(inner))
  union = float(box_area(a) + box_area(b)) - overlap
  return overlap / union if union > 0 else 0.0


def same_face(reference: np.ndarray, box: np.ndarray, settings: CropSettings) -> bool:
  """Whether `box` is the face of `reference` that has not moved too far."""
  shift = np.hypot(*((box[:2] + box[2:]) - (reference[:2] + reference[2:])) / 2)
  side = max(reference[2] - reference[0], reference[3] - reference[1])
  return iou(reference, box) >= settings.iou_threshold and shift <= settings.max_centre_shift * side


def detect_sampled(frames, detector, every: int = 5, to_array=np.asarray):
  """Detect faces on frames 0, every, 2*every, ... and the last frame.

  `frames` is any iterable; `to_array` turns an item into a uint8 (H, W, 3) array and is called only on
  sampled frames. Returns ({frame index: (N, 4) boxes}, number of frames, (height, width)).
  """
  detections = {}
  frame_size = None
  index, last = -1, None
  for index, frame in enumerate(frames):
    last = frame
    if index % every == 0:
      array = to_array(frame)
      frame_size = frame_size or array.shape[:2]
      detections[index] = detector(array)
  if index >= 0 and index not in detections:
    detections[index] = detector(to_array(last))
  return detections, index + 1, frame_size


def track(detections: dict, num_frames: int, settings: CropSettings = CropSettings()) -> np.ndarray:
  """(num_frames, 4) boxes of one followed face, NaN where there is none.

  At each sample the face continuing the previous one is taken if there is one, else the largest face.
  """
  chosen = {}
  previous = None
  for index in sorted(detections):
    boxes = detections[index]
    if len(boxes) == 0:
      chosen[index] = NO_FACE
      continue
    pick = boxes[0]
    if previous is not None:
      matches = [box for box in boxes if same_face(previous, box, settings)]
      if matches:
        pick = max(matches, key=lambda box: iou(previous, box))
    chosen[index] = previous = np.asarray(pick, np.float32)

  boxes = np.tile(NO_FACE, (num_frames, 1))
  samples = sorted(chosen)
  for index in samples:
    boxes[index] = chosen[index]
  for a, b in zip(samples, samples[1:]):
    box_a, box_b = chosen[a], chosen[b]
    linear = not (np.isnan(box_a).any() or np.isnan(box_b).any()) and same_face(box_a, box_b, settings)
    for t in range(a + 1, b):
      if linear:
        boxes[t] = box_a + (box_b - box_a) * ((t - a) / (b - a))
      else:
        boxes[t] = box_a if t - a <= b - t else box_b
  return boxes


def crop_square(face_box: np.ndarray, frame_size: tuple, scale: float = 1.8) -> tuple:
  """Integer square (x0, y0, x1, y1) around `face_box`; see the module docstring for frame edges."""
  height, width = frame_size
  side = max(1, round(scale * float(max(face_box[2] - face_box[0], face_box[3] - face_box[1]))))
  start = []
  for centre, extent in (((face_box[0] + face_box[2]) / 2, width), ((face_box[1] + face_box[3]) / 2, height)):
    low = round(float(centre) - side / 2)
    if side <= extent:
      low = min(max(low, 0), extent - side)
    start.append(low)
  return (start[0], start[1], start[0] + side, start[1] + side)


def plan_chunks(boxes: np.ndarray, frame_size: tuple, settings: CropSettings = CropSettings()) -> list[Chunk]:
  """Chunks where the face stays put, in frame order; rejected ones carry a reason."""
  spans = []
  start = reference = last_seen = None
  for t, box in enumerate(boxes):
    if np.isnan(box).any():
      if start is not None and t - last_seen > settings.max_lost:
        spans.append((start, last_seen + 1))
        start = None
      continue
    if start is not None and not same_face(reference, box, settings):
      spans.append((start, last_seen + 1))
      start = None
    if start is None:
      start, reference = t, box
    last_seen = t
  if start is not None:
    spans.append((start, last_seen + 1))

  chunks = []
  for start, stop in spans:
    mean_box = np.nanmean(boxes[start:stop], axis=0)
    face_size = float(max(mean_box[2] - mean_box[0], mean_box[3] - mean_box[1]))
    reason = None
    if face_size < settings.min_face:
      reason = "face too small"
    elif stop - start < settings.min_frames:
      reason = "too short"
    chunks.append(Chunk(start, stop, crop_square(mean_box, frame_size, settings.scale), face_size, reason))
  return chunks


def crop_and_resize(frame: np.ndarray, square, size: int, pad: str = "edge") -> np.ndarray:
  """uint8 (size, size, 3): the `square` of `frame` (padded per `pad`, "edge" or "black"), resized bilinearly."""
  height, width = frame.shape[:2]
  x0, y0, x1, y1 = (int(v) for v in square)
  inside = frame[max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)]
  if inside.size == 0:
    raise ValueError(f"crop {square} lies outside the {width}x{height} frame")
  widths = ((max(-y0, 0), max(y1 - height, 0)), (max(-x0, 0), max(x1 - width, 0)), (0, 0))
  if any(any(w) for w in widths):
    inside = np.pad(inside, widths, mode="edge" if pad == "edge" else "constant")
  image = Image.fromarray(np.asarray(inside, np.uint8))
  if image.size != (size, size):
    image = image.resize((size, size), Image.Resampling.BILINEAR)
  return np.asarray(image)

