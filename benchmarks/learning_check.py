"""Does training help? Same-identity reconstruction L1 on held-out clips: a trained run vs copying the source.

  python train.py --config configs/quickstart.py --workdir workdir/quickstart
  python benchmarks/learning_check.py --workdir workdir/quickstart
  python benchmarks/learning_check.py --config configs/real_smoke.py --workdir workdir/real_smoke   # real faces

For every test clip, source = its first frame and driving = each later frame; prints the mean |output - driving|
(on [0, 1] images) of the trained model (raw and EMA generator, with the trained motion estimator), of the
initial model (`train.init_from`, else the untrained one), and of the copy-the-source baseline.

--split test: the dataset's test clips (quickstart: held-out identities; real_smoke: the held-out last quarter of
each clip); train: the training clips themselves; new_clips (synthetic data only): clips never trained on (new
motion and backgrounds) of the training identities, drawn now from the synthetic generator.
"""
import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # the package, not benchmarks/input_pipeline.py

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def _reconstruction_l1(model, clips, chunk: int = 16) -> float:
  """Mean over clips of each clip's L1; frames go through in batches of `chunk` (one compile per model)."""
  from mcc_jax.evaluation.predictors import pad_rows
  errors = []
  for clip in clips:
    frames = clip["frames"].astype(np.float32) / 127.5 - 1
    driving = frames[1:]
    total = 0.0
    for start in range(0, len(driving), chunk):
      part = driving[start:start + chunk]
      padded = pad_rows(part, chunk)
      image = jnp.clip(model.reconstruct(np.broadcast_to(frames[:1], padded.shape), padded)["image"], -1, 1)
      total += float(jnp.sum(jnp.abs(image[:len(part)] - part)))
    errors.append(total / driving.size / 2)
  return float(np.mean(errors))


def _copy_source_l1(clips) -> float:
  return float(np.mean([np.mean(np.abs(c["frames"][1:].astype(np.float32) - c["frames"][:1])) / 255 for c in clips]))


def _new_clips_of_training_identities(config, count: int) -> list[dict]:
  """One new clip (the clip index after the dataset's last) of each of the first `count` training identities."""
  from input_pipeline.synthetic import clip_seeds, generate_clip, num_test_identities
  synthetic = config.data.synthetic
  if config.data.dir:
    raise ValueError("--split new_clips needs the run's synthetic dataset (config.data.dir is set)")
  count = min(count, synthetic.identities - num_test_identities(synthetic.identities, synthetic.test_fraction))
  new = synthetic.clips_per_identity
  return [{"clip_id": f"synth{i:03d}#clip{new:02d}",
           "frames": generate_clip(*clip_seeds(config.seed, i, new), synthetic.frames,
                                   config.model.generator.img_size)[0]} for i in range(count)]


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--config", default="configs/quickstart.py")
  parser.add_argument("--split", default="test", choices=("test", "train", "new_clips"),
                      help="the test clips; the training clips; new synthetic clips of the training identities")
  parser.add_argument("--step", type=int, default=None, help="a checkpoint step (default: the newest)")
  parser.add_argument("--max-clips", type=int, default=None, help="only the first N clips of the split")
  parser.add_argument("--data", help="the run's dataset, when it was not the config's data.dir")
  parser.add_argument("--init-from", help="the run's initial model, when it was not the config's train.init_from")
  args = parser.parse_args()
  from configs import load_config_file
  config = load_config_file(args.config)
  config.data.dir = args.data or config.data.dir
  config.train.init_from = args.init_from or config.train.init_from

  from input_pipeline.face_dataset import dataset_dir
  from input_pipeline.pipeline import iterate_clips
  from mcc_jax.evaluation.checkpoint_loading import load_for_evaluation
  from mcc_jax.training.loop import build_networks
  workdir = pathlib.Path(args.workdir)
  if args.split == "new_clips":
    clips = _new_clips_of_training_identities(config, args.max_clips or 8)
  else:
    data = config.data.dir or str(dataset_dir(workdir / "synthetic" / "data"))
    clips = list(iterate_clips(data, args.split, image_size=config.model.generator.img_size))[:args.max_clips]

  initial = build_networks(config)[0]
  initial.eval()
  trained = load_for_evaluation(workdir, config.model, use_ema=False, step=args.step)
  trained_ema = load_for_evaluation(workdir, config.model, use_ema=True, step=trained.step)
  result = {"step": trained.step, "test_clips": len(clips), "frames": int(sum(len(c["frames"]) - 1 for c in clips)),
            "l1_copy_source": _copy_source_l1(clips), "l1_initial_model": _reconstruction_l1(initial, clips),
            "l1_trained": _reconstruction_l1(trained.model, clips),
            "l1_trained_ema": _reconstruction_l1(trained_ema.model, clips)}
  print(json.dumps(result, indent=1))


if __name__ == "__main__":
  main()
