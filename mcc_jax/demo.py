"""Animate a source face with a driving frame and write a side-by-side picture.

  python -m mcc_jax.demo                                  # built-in synthetic face, tiny untrained model
  python -m mcc_jax.demo --checkpoint DIR --source s.png --driving d.png --out demo.png

With no --checkpoint the model is configs/tiny.py with random weights: the run exercises the whole pipeline
(keypoints, dense motion, four codebook compensation steps, decoding) but its picture is not meaningful.
Convert the official weights with `python -m mcc_jax.convert` and pass the result as --checkpoint.
"""
import argparse
import pathlib
import sys
import time

import numpy as np


def _grid(images: list[np.ndarray]) -> np.ndarray:
  from mcc_jax.io.images import to_uint8
  return np.concatenate([to_uint8(im) for im in images], axis=1)


def _flow_picture(flow: np.ndarray, size: int) -> np.ndarray:
  """The flow's displacement from identity as colour, resized (nearest) to size x size, in [-1, 1]."""
  from mcc_jax.ops import make_coordinate_grid
  displacement = flow - np.asarray(make_coordinate_grid(*flow.shape[:2]))
  scale = max(np.abs(displacement).max(), 1e-6)
  picture = np.concatenate([displacement / scale, np.zeros_like(displacement[..., :1])], axis=-1)
  reps = size // flow.shape[0]
  return np.repeat(np.repeat(picture, reps, 0), reps, 1)


def run(args) -> pathlib.Path:
  import jax.numpy as jnp

  from input_pipeline.synthetic import generate_clip
  from mcc_jax.io.images import read_image, write_image

  if args.checkpoint:
    from mcc_jax.model_checkpoint import load_model
    model = load_model(args.checkpoint)
    print(f"model: {args.checkpoint}")
  else:
    from configs import tiny
    from mcc_jax.models.factory import build_mcc
    model = build_mcc(tiny.get_config().model)
    model.eval()
    print("model: configs/tiny.py with random weights (pass --checkpoint for a trained model)")
  size = model.img_size
  if not (args.source and args.driving):
    frames = generate_clip(identity_seed=0, clip_seed=0, num_frames=24, size=size)[0] / 127.5 - 1.0
  source = read_image(args.source, size) if args.source else frames[0]
  driving = read_image(args.driving, size) if args.driving else frames[-1]
  start = time.perf_counter()
  out = model.reconstruct(jnp.asarray(source[None]), jnp.asarray(driving[None]))
  image = np.asarray(out["image"][0])
  first = time.perf_counter() - start
  start = time.perf_counter()
  np.asarray(model.reconstruct(jnp.asarray(source[None]), jnp.asarray(driving[None]))["image"])
  print(f"reconstruct at {size} px: {first:.2f} s with compilation, {time.perf_counter() - start:.3f} s after")
  occlusion = np.repeat(np.asarray(out["occlusions"][-1][0]), 3, axis=-1)
  reps = size // occlusion.shape[0]
  occlusion = np.repeat(np.repeat(occlusion, reps, 0), reps, 1) * 2 - 1
  flow = _flow_picture(np.asarray(out["deformations"][-1][0]), size)
  path = write_image(args.out, _grid([source, driving, image, flow, occlusion]))
  print(f"wrote {path}: source | driving | output | final flow | final occlusion")
  return path


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m mcc_jax.demo", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", help="an mcc_jax model checkpoint directory (python -m mcc_jax.convert)")
  parser.add_argument("--source", help="source face image (default: a synthetic face, input_pipeline.synthetic)")
  parser.add_argument("--driving", help="driving face image (default: the same face, later in its clip)")
  parser.add_argument("--out", default="outputs/demo.png", help="output picture")
  args = parser.parse_args(argv)
  try:
    run(args)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
