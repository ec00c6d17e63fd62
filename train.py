"""Train MCC: `python train.py --config configs/quickstart.py --workdir workdir/quickstart`.

Flags override config fields, e.g. `--config.train.vgg19_path=vgg19-dcbb9e9d.pth --config.train.num_steps=1000`.
The loop lives in mcc_jax.training.loop.train_and_evaluate.
"""
import os

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "a configs/*.py file", lock_config=True)
flags.DEFINE_string("workdir", None, "where checkpoints, logs and the synthetic data go")
flags.DEFINE_bool("multihost", False, "call jax.distributed.initialize() with no arguments (TPU pods, SLURM: it "
                  "finds its peers); also done when JAX_COORDINATOR_ADDRESS or JAX_NUM_PROCESSES > 1 is set")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax logs every checkpoint step at INFO
  import jax
  if FLAGS.multihost or "JAX_COORDINATOR_ADDRESS" in os.environ or os.environ.get("JAX_NUM_PROCESSES", "1") != "1":
    jax.distributed.initialize()
  from mcc_jax.training.loop import train_and_evaluate
  train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  app.run(main)
