"""Evaluate MCC: `python evaluate.py --checkpoint DIR --data DIR --workdir OUT [--config configs/paper.py]`.

--checkpoint: an mcc_jax model checkpoint (e.g. `python -m mcc_jax.convert` of the official weights) or a
training workdir (needs --config; the EMA generator is used). --data: a dataset prepared by
input_pipeline.prepare (its --out) or a folder of square face videos / frame folders (resized to the model's
size). --mode reconstruction (source = first frame, driving = every frame of the same clip) or cross_identity
(each clip drives another identity's first frame, relative motion with adapt_scale); --pairs reads an official
pairs CSV instead. Metrics whose weights are not given are skipped with a line saying what to pass.
Writes summary.json, per_clip.csv, pairs.csv and videos/ to --workdir; the job is
mcc_jax.evaluation.job.run_evaluation.
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "a configs/*.py file (required for a training checkpoint)",
                                lock_config=True)
flags.DEFINE_string("checkpoint", None, "model checkpoint directory or training workdir")
flags.DEFINE_string("data", None, "prepared dataset, or folder of face videos / frame folders")
flags.DEFINE_string("workdir", None, "output directory")
flags.DEFINE_enum("mode", "reconstruction", ["reconstruction", "cross_identity"], "evaluation protocol")
flags.DEFINE_string("pairs", None, "official-format pairs CSV (default: generated pairs)")
flags.DEFINE_string("split", "test", "dataset split (or sub-folder of a video folder) to read")
flags.DEFINE_list("clips", None, "only these clip ids (comma-separated), in this order")
flags.DEFINE_integer("num-videos", 4, "side-by-side videos written for the first N clips")
flags.DEFINE_boolean("save-frames", False, "also write every result frame as results/<clip>/<frame>.png")
flags.DEFINE_integer("max-frames", None, "at most this many driving frames per clip")
flags.DEFINE_integer("batch-size", 32, "frames per batch over all devices (rounded up to a multiple of them)")
flags.DEFINE_boolean("adapt-scale", True, "cross_identity: scale the motion by the keypoint hull areas")
flags.DEFINE_boolean("ema", True, "training checkpoint: use the EMA generator (as the official test)")
flags.DEFINE_integer("step", None, "training checkpoint: this step instead of the newest")
flags.DEFINE_enum("predictor", "model", ["model", "copy_source", "copy_driving"],
                  "what makes the results: the model, or a baseline that copies the source / the driving frame")
flags.DEFINE_enum("dtype", None, ["float32", "bfloat16"], "compute dtype of the model (default: the training "
                  "config's model.dtype, float32 for a model checkpoint)")
flags.DEFINE_list("metrics", None, "only these metrics (default: every metric of the mode)")
flags.DEFINE_string("lpips-backbone", None, "torchvision VGG16 (or AlexNet) weights for LPIPS")
flags.DEFINE_enum("lpips-net", "vgg", ["vgg", "alex"], "LPIPS backbone")
flags.DEFINE_string("lpips-heads", None, "LPIPS linear heads (default: those of the installed lpips package)")
flags.DEFINE_string("fid-weights", None, "FID InceptionV3 weights (default: those of an installed package)")
flags.DEFINE_string("face-landmarker", None, "MediaPipe face_landmarker .task for AKD and head pose "
                    "(default: $MCC_FACE_LANDMARKER)")
flags.DEFINE_string("dlib-face-model", None, "dlib face descriptor for AED/CSIM (default: face_recognition_models)")
flags.DEFINE_integer("face-size", 256, "face metrics see frames resized to this size")
flags.DEFINE_bool("multihost", False, "join a multi-process run found by jax.distributed.initialize() (TPU pods, "
                  "SLURM; elsewhere set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID): each process "
                  "evaluates its share of the clips on its own devices, process 0 writes the outputs (shared "
                  "--workdir)")
flags.mark_flags_as_required(["checkpoint", "data", "workdir"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  from mcc_jax.distributed import initialize_processes
  try:
    initialize_processes(FLAGS.multihost)
  except ValueError as e:
    print(f"evaluate.py: error: {e}", file=sys.stderr)
    return 1
  from mcc_jax.evaluation.job import EvaluationOptions, format_summary, run_evaluation
  from mcc_jax.evaluation.metric_suite import MetricOptions
  value = lambda name: FLAGS[name].value
  options = EvaluationOptions(
      checkpoint=value("checkpoint"), data=value("data"), workdir=value("workdir"), mode=value("mode"),
      config=FLAGS.config, config_file=config_flags.get_config_filename(FLAGS["config"]) if FLAGS.config else None,
      pairs=value("pairs"), split=value("split"), clips=tuple(value("clips")) if value("clips") else None,
      num_videos=value("num-videos"), save_frames=value("save-frames"), max_frames=value("max-frames"), batch_size=value("batch-size"),
      adapt_scale=value("adapt-scale"), use_ema=value("ema"), step=value("step"), predictor=value("predictor"),
      dtype=value("dtype"),
      metrics=MetricOptions(
          metrics=tuple(value("metrics")) if value("metrics") else None, lpips_backbone=value("lpips-backbone"),
          lpips_net=value("lpips-net"), lpips_heads=value("lpips-heads"), fid_weights=value("fid-weights"),
          face_landmarker=value("face-landmarker"), dlib_model=value("dlib-face-model"),
          face_size=value("face-size")))
  try:
    summary = run_evaluation(options)
  except (FileNotFoundError, ValueError) as e:
    print(f"evaluate.py: error: {e}", file=sys.stderr)
    return 1
  import jax
  if jax.process_index() != 0:
    return 0
  print(format_summary(summary))
  print(f"wrote {options.workdir}/summary.json, per_clip.csv, pairs.csv and {len(summary['outputs']['videos'])} "
        "videos")
  return 0


if __name__ == "__main__":
  app.run(main)
