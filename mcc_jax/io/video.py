"""Reading and writing video files with PyAV: uint8 RGB frames in, H.264 mp4 out, audio carried over.

Frames are read upright (a phone video's display rotation is applied, as ffmpeg's player does) and optionally
resized (bilinear) to a square. Written files are H.264 (libx264, yuv420p) so that every player opens them; an
audio track can be taken from another file (the driving clip), copied when mp4 can hold its codec, else
re-encoded as AAC, and cut at the end of the video.
"""
import dataclasses
import fractions
import pathlib
import sys
from collections.abc import Iterable, Iterator

import av
import numpy as np
from PIL import Image

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".webm", ".mkv")
# Audio codecs the mp4 muxer takes as they are; others are re-encoded.
_MP4_AUDIO_CODECS = ("aac", "mp3", "alac")


@dataclasses.dataclass
class Video:
  frames: np.ndarray  # (T, H, W, 3) uint8 RGB
  fps: float


def _open(path) -> av.container.InputContainer:
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f"video not found: {path}")
  try:
    return av.open(str(path))
  except av.error.FFmpegError as e:
    raise ValueError(f"{path} is not a readable video: {e}") from None


def upright_rgb(frame: av.VideoFrame) -> np.ndarray:
  """The frame as (H, W, 3) uint8 RGB, turned by its display rotation."""
  array = frame.to_ndarray(format="rgb24")
  turns = round(frame.rotation / 90) % 4
  return np.ascontiguousarray(np.rot90(array, turns)) if turns else array


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize of an (H, W, 3) uint8 image to size x size (a no-op when it is that size)."""
  if image.shape[:2] == (size, size):
    return image
  return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))


def iter_frames(path, *, max_frames: int | None = None) -> Iterator[np.ndarray]:
  """Decode a video's frames one at a time (upright RGB uint8), the first `max_frames` (None: all).

  Raises FileNotFoundError for a missing file and ValueError for a file with no readable video stream or one
  that fails before its first frame (a failure later ends the frames there).
  """
  container = _open(path)
  try:
    if not container.streams.video:
      raise ValueError(f"{path} has no video stream")
    count = 0
    try:
      for frame in container.decode(container.streams.video[0]):
        if max_frames is not None and count >= max_frames:
          return
        yield upright_rgb(frame)
        count += 1
    except av.error.FFmpegError as e:
      if not count:
        raise ValueError(f"{path} is not a readable video: {e}") from None
      print(f"warning: {path}: decoding failed after {count} frames ({e}); using those", file=sys.stderr)
  finally:
    container.close()


def video_fps(path) -> float:
  container = _open(path)
  try:
    if not container.streams.video:
      raise ValueError(f"{path} has no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else 25.0
  finally:
    container.close()


def read_video(path, *, size: int | None = None, max_frames: int | None = None) -> Video:
  """The first `max_frames` (None: all) frames of a video file, resized to size x size when given (errors as
  `iter_frames`)."""
  frames = [resize_square(f, size) if size else f for f in iter_frames(path, max_frames=max_frames)]
  if not frames:
    raise ValueError(f"{path} has no decodable frames")
  return Video(frames=np.stack(frames), fps=video_fps(path))


def has_audio(path) -> bool:
  container = _open(path)
  try:
    return bool(container.streams.audio)
  finally:
    container.close()


def _even(image: np.ndarray) -> np.ndarray:
  """yuv420p needs even sides: repeat the last row / column where a side is odd."""
  height, width = image.shape[:2]
  if height % 2 or width % 2:
    image = np.pad(image, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
  return image


def _add_audio(source: av.container.InputContainer, output):
  """(input stream, output stream, copy?) for the first audio track of `source`; None if it has none.

  Streams must all exist before the first packet is written."""
  if not source.streams.audio:
    return None
  audio = source.streams.audio[0]
  if audio.codec_context.name in _MP4_AUDIO_CODECS:
    return audio, output.add_stream_from_template(audio), True
  return audio, output.add_stream("aac", rate=audio.rate or 44100), False


def _write_audio(source: av.container.InputContainer, output, plan, duration: float) -> None:
  audio, stream, copy = plan
  if copy:
    for packet in source.demux(audio):
      if packet.dts is None:
        continue
      if packet.pts is not None and float(packet.pts * packet.time_base) >= duration:
        break
      packet.stream = stream
      output.mux(packet)
    return
  resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=stream.rate)
  for frame in source.decode(audio):
    if frame.time is not None and frame.time >= duration:
      break
    for resampled in resampler.resample(frame):
      output.mux(stream.encode(resampled))
  output.mux(stream.encode(None))


def write_video(path, frames: Iterable[np.ndarray], fps: float, *, audio_from=None, crf: int = 18) -> pathlib.Path:
  """Write (H, W, 3) uint8 RGB frames as an H.264 mp4 at `fps`; returns the path.

  audio_from: a file whose first audio track is added (cut at the video's end); nothing is added when it has none.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  rate = fractions.Fraction(fps).limit_denominator(1001)
  source = _open(audio_from) if audio_from is not None else None
  count = 0
  try:
    with av.open(str(path), mode="w") as output:
      stream = output.add_stream("libx264", rate=rate, options={"crf": str(crf)})
      stream.pix_fmt = "yuv420p"
      audio = _add_audio(source, output) if source is not None else None
      for image in frames:
        image = _even(np.ascontiguousarray(image, np.uint8))
        if count == 0:
          stream.height, stream.width = image.shape[:2]
        elif image.shape[:2] != (stream.height, stream.width):
          raise ValueError(f"frame {count} is {image.shape[1]}x{image.shape[0]}, earlier frames "
                           f"{stream.width}x{stream.height}")
        output.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        count += 1
      if count == 0:
        raise ValueError(f"no frames to write to {path}")
      output.mux(stream.encode(None))
      if audio is not None:
        _write_audio(source, output, audio, count / float(rate))
  finally:
    if source is not None:
      source.close()
  return path
