"""Training entry point (thin): `python train.py --config configs/paper.py --workdir DIR`.

The training loop (losses, sharded G+D step, checkpoints) is not built yet; it is tracked as the project's
training issue. This entry point says so instead of pretending to train.
"""
import sys


def main() -> int:
  print("train.py: training is not implemented yet (see the training issue); the model, converter and parity "
        "tests are in place. Try `python -m mcc_jax.demo`.", file=sys.stderr)
  return 2


if __name__ == "__main__":
  sys.exit(main())
