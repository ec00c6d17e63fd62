"""Train MCC: `python train.py --config configs/quickstart.py --workdir workdir/quickstart`.

Flags override config fields, e.g. `--config.train.vgg19_path=vgg19-dcbb9e9d.pth --config.train.num_steps=1000`.
The loop lives in mcc_jax.training.loop.train_and_evaluate.
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "a configs/*.py file", lock_config=True)
flags.DEFINE_string("workdir", None, "where checkpoints, logs and the synthetic data go")
flags.DEFINE_bool("multihost", False, "join a multi-process run found by jax.distributed.initialize() (TPU pods, "
                  "SLURM); elsewhere set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID instead")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
  from mcc_jax.distributed import initialize_processes
  try:
    initialize_processes(FLAGS.multihost)
  except ValueError as e:
    print(f"train.py: error: {e}", file=sys.stderr)
    return 1
  from mcc_jax.training.loop import train_and_evaluate
  train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
