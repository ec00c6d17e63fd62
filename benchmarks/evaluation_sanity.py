"""Do the evaluation metrics move the right way? Same-identity reconstruction on the real eval clips, three ways.

  python benchmarks/evaluation_sanity.py --checkpoint DIR [--max-frames 32] [--lpips-backbone vgg16-397923af.pth] \\
      [--face-landmarker ../shared/reference/models/face_landmarker_v2_with_blendshapes.task]

The clips are `eval` of ../shared/real_media/crops256/split.json (source = frame 0, driving = frames 1..N; frame 0
is left out so that copying the source does not score an infinite PSNR there). Rows:
- copy_driving: the result is the driving frame itself, the ground truth: L1 0, PSNR inf, LPIPS 0, AKD 0;
- copy_source: the result is the source frame (no motion): the baseline a model has to beat on L1 / PSNR / SSIM /
  LPIPS / AKD / pose. Its FID is 0 by construction: the official FID compares the source set with the results;
- model: the checkpoint.
Each run's summary.json and per_clip.csv are written under --workdir/<row>.
"""
import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # the package, not benchmarks/input_pipeline.py

SHARED_MEDIA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "real_media"
ROWS = ("copy_driving", "copy_source", "model")


def _later_frame_pairs(clips, clip_ids, max_frames: int | None, path: pathlib.Path) -> pathlib.Path:
  """An official-format pairs CSV: each clip's frame 0 driven by its frames 1..max_frames."""
  from mcc_jax.evaluation.pairs import Pair, write_pairs
  pairs = []
  for clip_id in clip_ids:
    count = len(clips.frames(clip_id, None if max_frames is None else max_frames + 1))
    pairs += [Pair(f"{clip_id}/0", f"{clip_id}/{i}") for i in range(1, count)]
  return write_pairs(path, pairs, "reconstruction")


def _cell(value) -> str:
  if value is None or value != value:
    return "n/a"
  return "inf" if value == float("inf") else f"{value:.4f}"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", required=True, help="model checkpoint or training workdir")
  parser.add_argument("--config", help="configs/*.py of a training workdir")
  parser.add_argument("--media", default=str(SHARED_MEDIA), help="real_media folder (crops256/ + split.json)")
  parser.add_argument("--workdir", default="outputs/evaluation_sanity")
  parser.add_argument("--max-frames", type=int, default=32, help="driving frames per clip (0: all)")
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--metrics", help="comma-separated subset (default: every reconstruction metric)")
  parser.add_argument("--lpips-backbone")
  parser.add_argument("--fid-weights")
  parser.add_argument("--face-landmarker")
  args = parser.parse_args(argv)

  from mcc_jax.evaluation.checkpoint_loading import load_for_evaluation
  from mcc_jax.evaluation.clips import open_clips
  from mcc_jax.evaluation.job import EvaluationOptions, run_evaluation
  from mcc_jax.evaluation.metric_suite import LOWER_IS_BETTER, MetricOptions

  crops = pathlib.Path(args.media) / "crops256"
  split = crops / "split.json"
  if not split.is_file():
    print(f"error: {split} not found (pass --media)", file=sys.stderr)
    return 1
  clip_ids = json.loads(split.read_text())["eval"]
  config = None
  if args.config:
    from configs import load_config_file
    config = load_config_file(args.config)
  loaded = load_for_evaluation(args.checkpoint, config.model if config else None)
  max_frames = args.max_frames or None
  workdir = pathlib.Path(args.workdir)
  clips = open_clips(crops, size=loaded.model.img_size, clip_ids=clip_ids)
  pairs = _later_frame_pairs(clips, clip_ids, max_frames, workdir / "pairs_later_frames.csv")
  metric_options = MetricOptions(metrics=tuple(args.metrics.split(",")) if args.metrics else None,
                                 lpips_backbone=args.lpips_backbone, fid_weights=args.fid_weights,
                                 face_landmarker=args.face_landmarker)
  summaries = {}
  for row in ROWS:
    summaries[row] = run_evaluation(EvaluationOptions(
        checkpoint=args.checkpoint, data=str(crops), workdir=str(workdir / row), pairs=str(pairs), clips=clip_ids,
        batch_size=args.batch_size, num_videos=2 if row == "model" else 0, predictor=row, metrics=metric_options),
        loaded=loaded)

  names = list(summaries["model"]["metrics"])
  step = summaries["model"]["checkpoint"]["step"]
  print(f"\nsame-identity reconstruction, {summaries['model']['clips']} real eval clips, "
        f"{summaries['model']['frames']} frames, {loaded.model.img_size} px; checkpoint {args.checkpoint} "
        f"(step {step})")
  titles = [n + (" v" if LOWER_IS_BETTER[n] else " ^") for n in names]
  widths = [max(11, len(t)) + 2 for t in titles]
  print(f"{'':14s}" + "".join(f"{t:>{w}s}" for t, w in zip(titles, widths)))
  for row in ROWS:
    print(f"{row:14s}" + "".join(f"{_cell(summaries[row]['metrics'][n]['value']):>{w}s}"
                                 for n, w in zip(names, widths)))
  print("(v lower is better, ^ higher is better; backends: " + ", ".join(
      f"{n} {summaries['model']['metrics'][n]['backend']}" for n in names) + ")")
  for name, reason in summaries["model"]["skipped"].items():
    print(f"skipped {name}: {reason}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
