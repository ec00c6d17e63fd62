"""Training-pair throughput of the input pipeline at 256 px, by worker count, plus a one-thread cost breakdown.

  python benchmarks/input_pipeline.py [--data-dir DIR] [--batches 100] [--workers 0 1 2] [--read-threads 1 2]

Without --data-dir (or with an empty one) it first builds 50 clips x 60 frames of 256-px JPEGs: cut from the face
videos in ../shared/real_media/crops256 when present, else textured noise. Prints a JSON report, then a table.
"""
import argparse
import itertools
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image
from tensorflow_datasets.proto import tf_example_pb2

if not __package__:  # run as a script: this file's folder would shadow the input_pipeline package
  sys.path = [p for p in sys.path if pathlib.Path(p or ".").resolve() != pathlib.Path(__file__).resolve().parent]
from input_pipeline.clip_store import ClipMeta, ClipStore, encode_jpeg  # noqa: E402
from input_pipeline.face_dataset import build_dataset, dataset_dir, open_split  # noqa: E402
from input_pipeline.pipeline import TrainPipelineConfig, decode_frame, make_train_dataset  # noqa: E402

SIZE = 256
REAL_VIDEOS = pathlib.Path(__file__).resolve().parents[2] / "shared" / "real_media" / "crops256"


def video_clips(num_frames: int):
  """(identity, frames) segments of the real face videos, taking the videos in turn."""
  import av
  segments = []
  for path in sorted(REAL_VIDEOS.glob("*.mp4")):
    with av.open(str(path)) as container:
      frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    frames = [f if f.shape[:2] == (SIZE, SIZE) else np.asarray(Image.fromarray(f).resize((SIZE, SIZE)))
              for f in frames]
    segments.append([(path.stem, frames[i:i + num_frames])
                     for i in range(0, len(frames) - num_frames + 1, num_frames)])
  return [segment for group in itertools.zip_longest(*segments) for segment in group if segment]


def textured_clips(num_clips: int, num_frames: int):
  rng = np.random.default_rng(0)
  for clip in range(num_clips):
    texture = np.asarray(Image.fromarray(rng.integers(0, 256, (48, 48, 3), np.uint8)).resize((SIZE, SIZE),
                                                                                            Image.BICUBIC))
    yield f"texture{clip // 3}", [np.roll(texture, 2 * t, axis=1) for t in range(num_frames)]


def build(data_dir: pathlib.Path, num_clips: int, num_frames: int) -> str:
  clips = video_clips(num_frames) if list(REAL_VIDEOS.glob("*.mp4")) else []
  origin = "real face videos"
  if len(clips) < num_clips:
    clips, origin = list(textured_clips(num_clips, num_frames)), "textured noise"
  with tempfile.TemporaryDirectory() as store_root:
    store = ClipStore(store_root)
    for i, (identity, frames) in enumerate(clips[:num_clips]):
      store.write(ClipMeta(clip_id=f"clip{i:03d}", identity=identity, source_path=identity, num_frames=num_frames,
                           boxes=[[0, 0, SIZE, SIZE]] * num_frames, split="train"), [encode_jpeg(f) for f in frames])
    build_dataset(store_root, data_dir)
  return origin


def cpu_seconds_of_process_tree(root: int = os.getpid()) -> float:
  """User + system CPU time of a process and its live descendants (Linux /proc)."""
  parents, ticks = {}, {}
  for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
    try:
      fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
      continue
    pid = int(stat.parent.name)
    parents[pid], ticks[pid] = int(fields[1]), int(fields[11]) + int(fields[12])
  tree, frontier = {root}, [root]
  while frontier:
    children = [pid for pid, parent in parents.items() if parent in frontier and pid not in tree]
    tree.update(children)
    frontier = children
  return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def measure(data_dir, *, workers: int, read_threads: int, batch: int, batches: int, warmup: int) -> dict:
  """Pairs per wall-clock second and per CPU-second (the latter holds up on a busy, shared machine)."""
  config = TrainPipelineConfig(data_dir=str(data_dir), global_batch_size=batch, seed=0, repeat=1000,
                               image_size=SIZE, worker_count=workers, read_threads=read_threads)
  iterator = iter(make_train_dataset(config, process_index=0, process_count=1))
  for _ in range(warmup):
    next(iterator)
  start, start_cpu = time.perf_counter(), cpu_seconds_of_process_tree()
  for _ in range(batches):
    next(iterator)
  elapsed, cpu = time.perf_counter() - start, cpu_seconds_of_process_tree() - start_cpu
  if workers:
    iterator.close()
  return {"pairs_per_s": batches * batch / elapsed, "pairs_per_cpu_s": batches * batch / cpu}


def stage_costs(data_dir, repeats: int = 200) -> dict:
  """Milliseconds per pair of each step, on one thread (median of `repeats`)."""
  source = open_split(data_dir, "train")
  raw_reader = source.data_source
  rng = np.random.default_rng(0)
  records = rng.integers(len(source), size=repeats)
  example = source[0]
  jpegs = example["frames"]
  batch_frames = [decode_frame(jpegs[k % len(jpegs)], SIZE) for k in range(32)]

  def median_ms(step) -> float:
    times = []
    for record in records:
      start = time.perf_counter()
      step(int(record))
      times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)

  return {
      "record_read_and_unzstd": median_ms(lambda r: raw_reader[r]),
      "record_read_and_proto_parse": median_ms(lambda r: tf_example_pb2.Example.FromString(raw_reader[r])),
      "record_read_and_tfds_decode (not used)": median_ms(lambda r: source[r]),
      "jpeg_decode_2_frames": median_ms(lambda r: [decode_frame(jpegs[(r + k) % len(jpegs)], SIZE) for k in (0, 7)]),
      "jpeg_decode_2_frames_mirrored": median_ms(
          lambda r: [decode_frame(jpegs[(r + k) % len(jpegs)], SIZE, mirror=True) for k in (0, 7)]),
      "batch_stack_per_pair": median_ms(lambda r: np.stack(batch_frames)) / 16,
      "record_bytes": len(raw_reader[0]),
      "mean_jpeg_bytes": int(np.mean([len(j) for j in jpegs])),
      "frames_per_clip": len(jpegs),
  }


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--data-dir", type=pathlib.Path)
  parser.add_argument("--clips", type=int, default=50)
  parser.add_argument("--frames", type=int, default=60)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--batches", type=int, default=100)
  parser.add_argument("--warmup", type=int, default=10)
  parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--read-threads", type=int, nargs="+", default=[1, 2])
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  data_dir = args.data_dir or pathlib.Path(tempfile.mkdtemp(prefix="mcc_pipeline_bench_"))
  try:
    dataset_dir(data_dir)
    origin = "existing"
  except FileNotFoundError:
    origin = build(data_dir, args.clips, args.frames)
  rows = []
  for workers, threads in itertools.product(args.workers, args.read_threads):
    runs = [measure(data_dir, workers=workers, read_threads=threads, batch=args.batch, batches=args.batches,
                    warmup=args.warmup) for _ in range(args.repeats)]
    rows.append({"workers": workers, "read_threads": threads,
                 "pairs_per_s": round(max(run["pairs_per_s"] for run in runs), 1),
                 "pairs_per_cpu_s": round(statistics.median(run["pairs_per_cpu_s"] for run in runs), 1)})
  cpus = os.cpu_count()
  report = {"cpu_count": cpus, "processor": platform.processor() or platform.machine(), "data_dir": str(data_dir),
            "frames_from": origin, "batch": args.batch, "timed_batches": args.batches, "repeats": args.repeats,
            "load_average": os.getloadavg(),
            "ms_per_pair_one_thread": {k: round(v, 3) if isinstance(v, float) else v
                                       for k, v in stage_costs(data_dir).items()},
            "throughput": rows}
  print(json.dumps(report, indent=1))
  print(f"\n{cpus} cpus; pairs/s: best of {args.repeats} runs; pairs/cpu-s: median, CPU time of the process tree")
  print(f"{'workers':>8} {'threads':>8} {'pairs/s':>9} {'pairs/cpu-s':>12}")
  for row in rows:
    print(f"{row['workers']:>8} {row['read_threads']:>8} {row['pairs_per_s']:>9} {row['pairs_per_cpu_s']:>12}")


if __name__ == "__main__":
  main()
