"""The evaluation job behind evaluate.py: load the model and the clips, make or read the pairs, run, report.

Outputs in the workdir: summary.json (metrics with the backend of each, skipped metrics with the reason, the
config, checkpoint and step, the data and pairs, settings), per_clip.csv, pairs.csv (exactly what was evaluated,
re-usable with --pairs), videos/<clip>.mp4 (source | driving | result) for the first `num_videos` clips and, with
`save_frames`, every result frame as results/<clip>/<frame>.png (as the official test saves them).

Several processes (a pod, after jax.distributed.initialize) share the tasks; process 0 writes the outputs.
"""
import dataclasses
import json
import pathlib
import time

import jax

from mcc_jax.evaluation import pairs as pairs_lib
from mcc_jax.evaluation import report
from mcc_jax.evaluation.checkpoint_loading import load_for_evaluation
from mcc_jax.evaluation.clips import open_clips
from mcc_jax.evaluation.metric_suite import MetricOptions, MetricSuite, check_metric_names
from mcc_jax.evaluation.predictors import CopyDriving, CopySource, ModelPredictor
from mcc_jax.evaluation.runner import evaluate_tasks
from mcc_jax.training import sharding

PAIRS_FILE = "pairs.csv"
PREDICTORS = ("model", "copy_source", "copy_driving")
COMPARISONS = {
    "reconstruction": {"l1": "result vs driving", "psnr": "result vs driving", "ssim": "result vs driving",
                       "lpips": "result vs driving", "akd": "result vs driving", "aed": "result vs driving",
                       "csim": "result vs driving", "pose_error": "result vs driving",
                       "fid": "source set vs result set"},
    "cross_identity": {"fid": "source set vs result set", "aed": "result vs source", "csim": "result vs source",
                       "pose_error": "result vs driving"},
}


@dataclasses.dataclass
class EvaluationOptions:
  """What evaluate.py's flags set. config: a full config (ml_collections) or None; its `model` section is needed
  for training checkpoints only. predictor: "model", or a baseline ("copy_source", "copy_driving")."""
  checkpoint: str
  data: str
  workdir: str
  mode: str = "reconstruction"
  config: object = None
  config_file: str | None = None
  pairs: str | None = None
  split: str = "test"
  clips: tuple[str, ...] | None = None
  num_videos: int = 4
  save_frames: bool = False
  max_frames: int | None = None
  batch_size: int = 32
  adapt_scale: bool = True
  use_ema: bool = True
  step: int | None = None
  predictor: str = "model"
  dtype: str | None = None  # compute dtype; None: the training config's model.dtype, or float32
  metrics: MetricOptions = dataclasses.field(default_factory=MetricOptions)
  progress: bool = True


def _config_model(config):
  return None if config is None else config.model


def _as_json(value):
  return json.loads(json.dumps(value.to_dict() if hasattr(value, "to_dict") else value))


def run_evaluation(options: EvaluationOptions, *, loaded=None) -> dict:
  """Evaluate per `options`, write the outputs and return the summary. `loaded` (an EvaluationModel) skips
  loading the checkpoint again (benchmarks evaluating one model several ways)."""
  began = time.monotonic()
  if options.mode not in pairs_lib.MODES:
    raise ValueError(f"--mode must be one of {pairs_lib.MODES}; got {options.mode!r}")
  if options.predictor not in PREDICTORS:
    raise ValueError(f"predictor must be one of {PREDICTORS}; got {options.predictor!r}")
  if options.max_frames is not None and options.max_frames < 1:
    raise ValueError(f"--max-frames must be at least 1; got {options.max_frames}")
  if not pathlib.Path(options.data).exists():
    raise FileNotFoundError(f"--data not found: {options.data}")
  check_metric_names(options.mode, options.metrics.metrics)
  pair_list = pairs_lib.read_pairs(options.pairs, options.mode) if options.pairs else None
  workdir = pathlib.Path(options.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  if loaded is None:
    loaded = load_for_evaluation(options.checkpoint, _config_model(options.config), use_ema=options.use_ema,
                                 step=options.step, dtype=options.dtype)
  if options.config is not None and _as_json(options.config.model) != _as_json(loaded.model_config):
    print("warning: the model of --config differs from the checkpoint's; the checkpoint's is used")
  size = loaded.model.img_size
  # Several processes (a pod): each evaluates every process_count-th task on its own devices, the metrics are
  # combined at the end, and process 0 writes the summary (the workdir must be shared).
  shard = (jax.process_index(), jax.process_count())
  lead = shard[0] == 0
  mesh = sharding.make_mesh(devices=jax.local_devices())
  clips = open_clips(options.data, split=options.split, size=size, clip_ids=options.clips)
  if pair_list is None:
    pair_list = pairs_lib.generated_pairs(clips, options.mode)
  csv_dir = pathlib.Path(options.pairs).parent if options.pairs else None
  if lead:
    pairs_lib.write_pairs(workdir / PAIRS_FILE, pair_list, options.mode)
  tasks = pairs_lib.tasks_from_pairs(pair_list, options.mode, clips=clips, size=size, max_frames=options.max_frames,
                                     csv_dir=csv_dir, data_dir=options.data, shard=shard)

  if options.predictor == "model":
    predictor = ModelPredictor(loaded.model, mesh, adapt_scale=options.adapt_scale)
  else:
    predictor = CopySource() if options.predictor == "copy_source" else CopyDriving()
  suite = MetricSuite(options.mode, options.metrics, replicated=sharding.replicated(mesh))
  for metric, reason in suite.skipped.items():
    if lead:
      print(f"skipped {metric}: {reason}")
  table = report.ClipTable(workdir, suite.names, part=None if shard[1] == 1 else shard[0])
  videos = []
  num_videos = options.num_videos if lead else 0

  def on_clip(clip):
    table.add(clip)
    if clip.results is not None and len(videos) < num_videos:
      videos.append(str(report.write_clip_video(workdir, clip).relative_to(workdir)))
    if options.save_frames:
      report.write_result_frames(workdir, clip)

  try:
    total = pairs_lib.count_tasks(pair_list, options.mode, clips, shard=shard)
    result = evaluate_tasks(tasks, predictor, suite, mesh, batch_size=options.batch_size,
                            keep_results=total if options.save_frames else num_videos, total=total,
                            progress=options.progress and lead, on_clip=on_clip,
                            exchange_dir=workdir if shard[1] > 1 else None)
  finally:
    table.close()
    suite.close()
  if shard[1] > 1 and lead:  # evaluate_tasks returned after every process had written its part
    report.merge_clip_tables(workdir, shard[1])

  summary = {
      "mode": options.mode,
      "predictor": result.predictor,
      "metrics": {name: {**value, "backend": suite.backends.get(name), "compares":
                         COMPARISONS[options.mode][name]} for name, value in result.metrics.items()},
      "skipped": dict(suite.skipped),
      "clips": result.clips,
      "frames": result.frames,
      "checkpoint": {"path": loaded.path, "kind": loaded.kind, "step": loaded.step,
                     "generator_weights": loaded.generator_weights, "metadata": loaded.metadata},
      "config": {"file": options.config_file, "model": loaded.model_config},
      "data": {"path": str(pathlib.Path(options.data).absolute()), "clips": clips.description,
               "split": options.split, "pairs": str(pathlib.Path(options.pairs).absolute()) if options.pairs
               else "generated", "pairs_file": PAIRS_FILE, "max_frames": options.max_frames, "image_size": size},
      "settings": {"dtype": loaded.dtype, "batch_size": options.batch_size, "processes": shard[1],
                   "devices": mesh.size * shard[1], "platform": jax.devices()[0].platform,
                   "relative_motion": options.mode == "cross_identity", "adapt_scale": options.adapt_scale,
                   "face_size": options.metrics.face_size},
      "outputs": {"per_clip": report.CLIPS_FILE, "videos": videos,
                  "result_frames": report.RESULTS_DIR if options.save_frames else None},
      "seconds": round(time.monotonic() - began, 1),
  }
  summary["frames_per_s"] = round(result.frames / max(summary["seconds"], 1e-9), 3)  # model loading and compiles included
  if lead:
    report.write_summary(workdir, summary)
  return summary


def format_summary(summary: dict) -> str:
  """A few lines for the terminal."""
  lines = [f"{summary['mode']} ({summary['predictor']}): {summary['clips']} clips, {summary['frames']} frames, "
           f"checkpoint step {summary['checkpoint']['step']}"]
  for name, value in summary["metrics"].items():
    number = value["value"]
    shown = "n/a" if number != number else f"{number:.4f}"
    lines.append(f"  {name:10s} {shown:>10s}  ({value['frames']} frames; {value['backend']})")
  for name, reason in summary["skipped"].items():
    lines.append(f"  {name:10s} skipped: {reason}")
  return "\n".join(lines)
