"""Raw talking-face videos -> VoxCeleb-style face clips -> the TFDS dataset (`python -m input_pipeline.prepare -h`).

Inputs (`--layout`; every input is called a "video" below, whatever its kind):
- videos: every .mp4 .avi .mov .webm .mkv file under --input (recursive), decoded with PyAV and turned
  upright by its display rotation (phone videos). A file that cannot be opened ("unreadable") or fails
  part-way ("corrupt": a decoding error, or far fewer frames than its header says) is reported and skipped.
- frames: every folder under --input that directly holds .png/.jpg/.jpeg images is one video (frames in
  name order, numbers compared as numbers; --fps).
- vox-png: FOMM's `--input/{train,test}/<clip>/<frame>.png`, imported as is: no detection, no crop, frames
  resized to --size only if they are not that size already, the given train/test split kept.
- auto (default): vox-png when --input has a train/ or test/ folder of such clip folders, else videos and
  frame folders together.

Identity (whose face it is; the dataset's train/test split is by identity, so no person is in both):
- a file or folder name with a VoxCeleb prefix (`id10001#...`): the part before the first '#';
- else, for a video in a sub-folder of --input: the name of the top folder under --input (one folder per
  person, as in VoxCeleb2's `id00012/<youtube id>/00001.mp4`);
- else the file stem (frame folder: its name).

Videos and frame folders: faces are detected and followed (input_pipeline.face_crop); every stretch of frames
where the face stays put (at least --min-frames) becomes a clip `<identity>#<video>#<first>#<last>` (frame
indices, inclusive) of one fixed square crop, resized to --size and stored as JPEG (quality 95) in the
ClipStore `--out/clips`. Each video is decoded twice (find faces, then crop), so memory does not grow with
its length.

Resume: `--out/videos_done/` holds one record per finished video (the clip ids it produced, or why it was
skipped). A rerun skips recorded videos and redoes the others from scratch; skipped (bad) videos are retried
only with --retry-failed. `--out/settings.json` keeps the crop settings (--size, --scale, --pad): a rerun
with other ones is refused rather than mixing crops.

At the end the dataset is (re)built in `--out/data` (input_pipeline.face_dataset) and a report is printed and
written to `--out/report.json`. The exit code is 0 even when some videos were skipped; 1 when no clip could
be written at all, 2 for a missing --input or a settings mismatch.
"""
import argparse
import collections
import concurrent.futures
import contextlib
import dataclasses
import functools
import hashlib
import json
import multiprocessing
import os
import pathlib
import re
import shutil
import sys
import time

import av
import numpy as np
import tensorflow_datasets as tfds
import tqdm
from PIL import Image

from input_pipeline import face_crop
from input_pipeline.clip_store import ClipMeta, ClipStore, safe_clip_id
from input_pipeline.face_dataset import build_dataset, dataset_dir
from mcc_jax.io.video import upright_rgb

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".webm", ".mkv")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LAYOUTS = ("auto", "videos", "frames", "vox-png")
CLIPS, DATA, RECORDS, SETTINGS, REPORT = "clips", "data", "videos_done", "settings.json", "report.json"
SKIP_CATEGORIES = ("unreadable", "corrupt", "no face", "face too small", "too short", "error", "worker crashed")


class Skip(Exception):
  """A video that gives no clip; `category` is one of SKIP_CATEGORIES."""

  def __init__(self, category: str, detail: str):
    super().__init__(f"{category} ({detail})")
    self.category = category


@dataclasses.dataclass(frozen=True)
class Source:
  """One video; its clips are `<identity>#<key>#<first>#<last>` (vox-png: just `key`).

  kind: "video", "frames" or "vox-png". name: its path relative to --input, as reported.
  """
  kind: str
  path: str
  name: str
  identity: str
  key: str
  split: str | None = None


@dataclasses.dataclass(frozen=True)
class Options:
  """Per-run settings the workers need (see the command line options)."""
  size: int = 256
  crop: face_crop.CropSettings = face_crop.CropSettings()
  pad: str = "edge"
  fps: float = 25.0
  max_frames: int = 0


def identity_and_key(parts) -> tuple[str, str]:
  """(identity, key) of a video at relative path `parts` (last part without file suffix); see the docstring."""
  *folders, name = parts
  if "#" in name and not name.startswith("#"):
    identity, rest = name.split("#", 1)
    return identity, "/".join([*folders, rest])
  if folders:
    return folders[0], "/".join([*folders[1:], name])
  return name, name


def _natural_key(name: str):
  return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _images(folder) -> list[pathlib.Path]:
  return sorted((p for p in pathlib.Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                key=lambda p: _natural_key(p.name))


def _vox_clip_folders(root: pathlib.Path):
  for split in ("train", "test"):
    if (root / split).is_dir():
      for folder in sorted((root / split).iterdir()):
        if folder.is_dir():
          yield split, folder


def looks_like_vox(root: pathlib.Path) -> bool:
  return any(any(p.suffix.lower() == ".png" for p in folder.iterdir()) for _, folder in _vox_clip_folders(root))


def discover(root: pathlib.Path, layout: str = "auto", exclude=None) -> list[Source]:
  """The videos under `root`, in a stable order (`exclude`: a folder not to look into, e.g. --out)."""
  root = root.resolve()
  if layout == "auto" and looks_like_vox(root):
    layout = "vox-png"
  if layout == "vox-png":
    return [Source("vox-png", str(folder), f"{split}/{folder.name}", identity_and_key([folder.name])[0],
                   safe_clip_id(folder.name), split) for split, folder in _vox_clip_folders(root)]

  exclude = pathlib.Path(exclude).resolve() if exclude else None
  sources = []
  for directory, folders, files in os.walk(root):
    directory = pathlib.Path(directory)
    folders[:] = sorted(f for f in folders if not f.startswith(".") and directory / f != exclude)
    relative = directory.relative_to(root).parts
    if layout != "videos" and any(f.lower().endswith(IMAGE_SUFFIXES) for f in files):
      parts = relative or (root.name,)
      sources.append(Source("frames", str(directory), "/".join(parts) + "/", *identity_and_key(parts)))
    if layout != "frames":
      for file in sorted(f for f in files if f.lower().endswith(VIDEO_SUFFIXES) and not f.startswith(".")):
        stem = pathlib.Path(file).stem
        sources.append(Source("video", str(directory / file), "/".join([*relative, file]),
                              *identity_and_key([*relative, stem])))

  clashes = collections.Counter((s.identity, s.key) for s in sources)
  return [dataclasses.replace(s, key=s.key + pathlib.Path(s.path).suffix)
          if clashes[s.identity, s.key] > 1 and s.kind == "video" else s for s in sources]


class VideoReader:
  """Frames of a video file (PyAV); `open()` can be entered again to decode it again."""

  def __init__(self, path, max_frames: int = 0):
    self.path = str(path)
    self.max_frames = max_frames
    self.fps = 25.0

  to_array = staticmethod(upright_rgb)  # the RGB frame turned by its display rotation (phone videos)

  @contextlib.contextmanager
  def open(self):
    try:
      container = av.open(self.path)
    except Exception as error:
      raise Skip("unreadable", f"cannot open as a video: {error}") from None
    try:
      if not container.streams.video:
        raise Skip("unreadable", "no video stream")
      stream = container.streams.video[0]
      rate = stream.average_rate or stream.guessed_rate
      self.fps = float(rate) if rate else 25.0
      yield self._decode(container, stream)
    finally:
      container.close()

  def _decode(self, container, stream):
    count = 0
    try:
      for frame in container.decode(stream):
        yield frame
        count += 1
        if count == self.max_frames:
          return
    except av.error.FFmpegError as error:
      raise Skip("corrupt", f"decoded {count} frames before error: {error}") from None
    expected = stream.frames
    if expected and count < expected - max(2, expected // 20):
      raise Skip("corrupt", f"truncated: decoded {count} of {expected} frames")


class FolderReader:
  """Frames of a folder of images, all of one size."""

  def __init__(self, folder, fps: float = 25.0, max_frames: int = 0):
    self.paths = _images(folder)[:max_frames or None]
    self.fps = fps
    self._size = None

  def to_array(self, path) -> np.ndarray:
    try:
      with Image.open(path) as image:
        array = np.asarray(image.convert("RGB"))
    except Exception as error:
      raise Skip("corrupt", f"{path.name}: {error}") from None
    if self._size is None:
      self._size = array.shape
    if array.shape != self._size:
      raise Skip("corrupt", f"{path.name} is {array.shape[1]}x{array.shape[0]}, earlier frames "
                            f"{self._size[1]}x{self._size[0]}")
    return array

  @contextlib.contextmanager
  def open(self):
    yield iter(self.paths)


@functools.cache
def _detector(min_face: int) -> face_crop.FaceDetector:
  return face_crop.FaceDetector(min_face=min_face)


def _crops(frames, chunk: face_crop.Chunk, to_array, options: Options):
  for index, frame in frames:
    if index >= chunk.start:
      yield face_crop.crop_and_resize(to_array(frame), chunk.square, options.size, pad=options.pad)
    if index >= chunk.stop - 1:
      return


def cut_clips(store: ClipStore, source: Source, reader, options: Options, on_plan) -> dict:
  """Find the face chunks of one video and write one clip per accepted chunk; raises Skip if none."""
  settings = options.crop
  with reader.open() as frames:
    detections, count, frame_size = face_crop.detect_sampled(
        frames, _detector(settings.min_face), settings.every, reader.to_array)
  if count == 0:
    raise Skip("unreadable", "no frames")
  if not any(len(boxes) for boxes in detections.values()):
    raise Skip("no face", f"none in {len(detections)} sampled frames of {count}")
  chunks = face_crop.plan_chunks(face_crop.track(detections, count, settings), frame_size, settings)
  rejected = [{"first": c.start, "last": c.stop - 1, "face": round(c.face_size), "reason": c.reason}
              for c in chunks if c.reason]
  accepted = [c for c in chunks if c.reason is None]
  if not accepted:
    longest = max(chunks, key=lambda c: c.num_frames)
    raise Skip(longest.reason, f"longest face stretch {longest.num_frames} frames, face {longest.face_size:.0f} px;"
                               f" needs {settings.min_frames} frames, {settings.min_face} px")
  clip_ids = [safe_clip_id(f"{source.identity}#{source.key}#{c.start:06d}#{c.stop - 1:06d}") for c in accepted]
  on_plan(clip_ids)
  with reader.open() as frames:
    frames = enumerate(frames)
    for chunk, clip_id in zip(accepted, clip_ids):
      meta = ClipMeta(clip_id=clip_id, identity=source.identity, source_path=source.path,
                      num_frames=chunk.num_frames, boxes=[list(chunk.square)] * chunk.num_frames, fps=reader.fps)
      store.write(meta, _crops(frames, chunk, reader.to_array, options))
  return {"clips": clip_ids, "frames_written": sum(c.num_frames for c in accepted), "frames_read": count,
          "fps": reader.fps, "frame_size": list(frame_size[::-1]), "rejected_chunks": rejected}


def import_vox_clip(store: ClipStore, source: Source, options: Options, on_plan) -> dict:
  """Copy one vox-png clip folder as it is (resized to --size if needed)."""
  reader = FolderReader(source.path, options.fps, options.max_frames)
  if not reader.paths:
    raise Skip("unreadable", "no frames")
  on_plan([source.key])
  height, width = reader.to_array(reader.paths[0]).shape[:2]

  def frames():
    for path in reader.paths:
      array = reader.to_array(path)
      if array.shape[:2] != (options.size, options.size):
        array = np.asarray(Image.fromarray(array).resize((options.size, options.size), Image.Resampling.BILINEAR))
      yield array

  count = len(reader.paths)
  store.write(ClipMeta(clip_id=source.key, identity=source.identity, source_path=source.path, num_frames=count,
                       boxes=[[0, 0, width, height]] * count, fps=options.fps, split=source.split), frames())
  return {"clips": [source.key], "frames_written": count, "frames_read": count, "fps": options.fps,
          "frame_size": [width, height], "rejected_chunks": []}


def record_path(out: pathlib.Path, source: Source) -> pathlib.Path:
  digest = hashlib.sha1(source.name.encode()).hexdigest()[:10]
  return out / RECORDS / f"{safe_clip_id(source.name)[:120]}.{digest}.json"


def _write_json(path: pathlib.Path, value) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + ".tmp")
  tmp.write_text(json.dumps(value, indent=1))
  os.replace(tmp, path)


def _read_record(path: pathlib.Path) -> dict | None:
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError):
    return None


def _remove_clips(store: ClipStore, clip_ids) -> None:
  for clip_id in clip_ids:
    shutil.rmtree(store.clip_dir(clip_id), ignore_errors=True)


def process_source(source: Source, out_dir: str, options: Options) -> dict:
  """Turn one video into clips and write its record; never raises: any failure becomes the skip reason.

  Before writing clips the record says `started` with the planned clip ids, so a rerun after a crash can
  remove them first.
  """
  out = pathlib.Path(out_dir)
  store = ClipStore(out / CLIPS)
  path = record_path(out, source)
  earlier = _read_record(path)
  if earlier:
    _remove_clips(store, earlier.get("clips", []))
  planned = []

  def on_plan(clip_ids):
    planned.extend(clip_ids)
    _write_json(path, {"source": source.name, "status": "started", "clips": clip_ids})

  began = time.monotonic()
  record = {"source": source.name, "path": source.path, "kind": source.kind, "identity": source.identity}
  try:
    if source.kind == "vox-png":
      result = import_vox_clip(store, source, options, on_plan)
    else:
      reader = (VideoReader(source.path, options.max_frames) if source.kind == "video"
                else FolderReader(source.path, options.fps, options.max_frames))
      result = cut_clips(store, source, reader, options, on_plan)
    record.update(status="done", **result)
  except Exception as error:
    _remove_clips(store, planned)
    category = error.category if isinstance(error, Skip) else "error"
    reason = str(error) if isinstance(error, Skip) else f"error ({type(error).__name__}: {error})"
    record.update(status="skipped", category=category, reason=reason, clips=[], frames_written=0)
  record["seconds"] = round(time.monotonic() - began, 2)
  _write_json(path, record)
  return record


def _crashed(source: Source, out: pathlib.Path, error) -> dict:
  record = {"source": source.name, "path": source.path, "kind": source.kind, "identity": source.identity,
            "status": "skipped", "category": "worker crashed", "reason": f"worker crashed ({error})",
            "clips": [], "frames_written": 0}
  _write_json(record_path(out, source), record)
  return record


def run_all(sources, out: pathlib.Path, options: Options, workers: int, on_record) -> None:
  """Process every source, `workers` at a time; a worker process that dies costs only its own video."""
  if workers <= 1:
    for source in sources:
      on_record(process_source(source, str(out), options))
    return
  context = multiprocessing.get_context("spawn")
  suspects = []
  pending = collections.deque(sources)
  while pending:
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as pool:
      running = {}
      broken = False
      while running or pending and not broken:
        while pending and not broken and len(running) < 2 * workers:
          source = pending.popleft()
          try:
            running[pool.submit(process_source, source, str(out), options)] = source
          except concurrent.futures.process.BrokenProcessPool:
            pending.appendleft(source)
            broken = True
        done, _ = concurrent.futures.wait(running, return_when=concurrent.futures.FIRST_COMPLETED)
        for future in done:
          source = running.pop(future)
          try:
            on_record(future.result())
          except concurrent.futures.process.BrokenProcessPool:
            suspects.append(source)
            broken = True
  for source in suspects:  # one at a time, so a crash is pinned on the video that caused it
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
      try:
        on_record(pool.submit(process_source, source, str(out), options).result())
      except concurrent.futures.process.BrokenProcessPool as error:
        on_record(_crashed(source, out, error))


def _check_settings(out: pathlib.Path, options: Options) -> str | None:
  """Why this run may not add to `out` (its clips were cropped otherwise), or None."""
  wanted = {"size": options.size, "scale": options.crop.scale, "pad": options.pad}
  recorded = _read_record(out / SETTINGS)
  if recorded and recorded != wanted and ClipStore(out / CLIPS).clip_ids():
    return (f"{out} was prepared with {recorded}, this run asks for {wanted}; use the same settings to resume "
            "or a new --out")
  _write_json(out / SETTINGS, wanted)
  return None


def _build(out: pathlib.Path, test_fraction: float, processed: int, clip_count: int) -> dict:
  earlier = _read_record(out / REPORT) or {}
  earlier_dataset = earlier.get("dataset") or {}
  current = (processed == 0 and earlier_dataset.get("test_fraction") == test_fraction
             and earlier_dataset.get("clips") == clip_count)
  try:
    path = dataset_dir(out / DATA) if current else None
  except FileNotFoundError:
    path = None
  if path is None:
    path = build_dataset(out / CLIPS, out / DATA, test_fraction=test_fraction)
  splits = tfds.builder_from_directory(str(path)).info.splits
  return {"path": str(path), "test_fraction": test_fraction, "clips": sum(s.num_examples for s in splits.values()),
          "splits": {name: splits[name].num_examples for name in sorted(splits)},
          "bytes": sum(p.stat().st_size for p in path.rglob("*") if p.is_file())}


def make_report(records, already_done: int, processed: int) -> dict:
  skipped = collections.defaultdict(list)
  rejected = collections.Counter()
  for record in records:
    if record["status"] != "done":
      skipped[record.get("category", "error")].append({"video": record["source"], "reason": record.get("reason")})
    rejected.update(chunk["reason"] for chunk in record.get("rejected_chunks", []))
  return {
      "videos_seen": len(records),
      "videos_already_done": already_done,
      "videos_processed_now": processed,
      "videos_with_clips": sum(r["status"] == "done" for r in records),
      "clips_written": sum(len(r.get("clips", [])) for r in records),
      "frames_written": sum(r.get("frames_written", 0) for r in records),
      "videos_skipped": sum(len(v) for v in skipped.values()),
      "skipped_by_reason": {c: skipped[c] for c in SKIP_CATEGORIES if c in skipped},
      "rejected_chunks_by_reason": dict(rejected),
  }


def print_report(report: dict, out: pathlib.Path) -> None:
  print(f"prepare: {report['videos_seen']} videos seen ({report['videos_already_done']} already done, "
        f"{report['videos_processed_now']} processed now); {report['clips_written']} clips, "
        f"{report['frames_written']} frames written from {report['videos_with_clips']} videos")
  if report["videos_skipped"]:
    print(f"skipped {report['videos_skipped']} videos:")
    for category, videos in report["skipped_by_reason"].items():
      print(f"  {category}: {len(videos)}")
      for video in videos:
        print(f"    {video['video']}: {video['reason']}")
  if report["rejected_chunks_by_reason"]:
    print("face stretches left out: " + ", ".join(f"{reason} {n}"
                                                  for reason, n in report["rejected_chunks_by_reason"].items()))
  dataset = report.get("dataset")
  if dataset:
    splits = ", ".join(f"{name} {n} clips" for name, n in dataset["splits"].items())
    print(f"dataset: {dataset['path']} ({splits}; {dataset['bytes'] / 2**20:.1f} MiB)")
  print(f"report: {out / REPORT}")


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m input_pipeline.prepare", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--input", required=True, help="folder of videos, frame folders or vox-png clips")
  parser.add_argument("--out", required=True, help="work and output folder (clips/, data/, report.json)")
  parser.add_argument("--size", type=int, default=256, help="side of the square output frames")
  parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (1: no pool)")
  parser.add_argument("--test-fraction", type=float, default=0.1, help="fraction of identities for 'test'")
  parser.add_argument("--min-frames", type=int, default=32, help="shortest clip kept")
  parser.add_argument("--min-face", type=int, default=64, help="smallest face kept (mean box side, source px)")
  parser.add_argument("--scale", type=float, default=1.8, help="crop side / face box side")
  parser.add_argument("--pad", choices=("edge", "black"), default="edge",
                      help="fill for a crop that leaves the frame")
  parser.add_argument("--layout", choices=LAYOUTS, default="auto")
  parser.add_argument("--fps", type=float, default=25.0, help="frame rate recorded for frame folders")
  parser.add_argument("--max-frames", type=int, default=0, help="read at most this many frames per video (0: all)")
  parser.add_argument("--retry-failed", action="store_true", help="process videos skipped by an earlier run again")
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  began = time.monotonic()
  root, out = pathlib.Path(args.input), pathlib.Path(args.out)
  if not root.is_dir():
    print(f"prepare: input folder {root} does not exist", file=sys.stderr)
    return 2
  crop = face_crop.CropSettings(scale=args.scale, min_frames=args.min_frames, min_face=args.min_face)
  options = Options(size=args.size, crop=crop, pad=args.pad, fps=args.fps, max_frames=args.max_frames)
  (out / RECORDS).mkdir(parents=True, exist_ok=True)
  mismatch = _check_settings(out, options)
  if mismatch:
    print(f"prepare: {mismatch}", file=sys.stderr)
    return 2

  sources = discover(root, args.layout, exclude=out)
  if not sources:
    print(f"prepare: no videos, frame folders or vox-png clips under {root} (--layout {args.layout})",
          file=sys.stderr)
    return 1
  records = {}
  for source in sources:
    record = _read_record(record_path(out, source))
    if record and (record.get("status") == "done" or record.get("status") == "skipped" and not args.retry_failed):
      records[source.name] = record
  todo = [s for s in sources if s.name not in records]
  already_done = len(records)
  print(f"prepare: {len(sources)} videos under {root}; {already_done} already done (skipped), {len(todo)} to do")

  with tqdm.tqdm(total=len(todo), unit="video", desc="prepare") as progress:
    def on_record(record):
      records[record["source"]] = record
      progress.update()
    run_all(todo, out, options, args.workers, on_record)

  report = {"input": str(root.resolve()), "out": str(out.resolve()), **make_report(
      [records[s.name] for s in sources], already_done, len(todo))}
  clip_count = len(ClipStore(out / CLIPS).clip_ids())
  if clip_count:
    report["dataset"] = _build(out, args.test_fraction, len(todo), clip_count)
  report["seconds"] = round(time.monotonic() - began, 1)
  _write_json(out / REPORT, report)
  print_report(report, out)
  if not clip_count:
    print("prepare: no clip could be written", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
