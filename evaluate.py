"""Evaluation entry point (thin): `python evaluate.py --config ... --checkpoint DIR --data DIR --workdir OUT`.

The evaluation loops and metrics are not built yet; they are tracked as the project's evaluation issue.
"""
import sys


def main() -> int:
  print("evaluate.py: evaluation is not implemented yet (see the evaluation issue). To animate one image with a "
        "converted checkpoint: python -m mcc_jax.demo --checkpoint DIR --source S.png --driving D.png",
        file=sys.stderr)
  return 2


if __name__ == "__main__":
  sys.exit(main())
