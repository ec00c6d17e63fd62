"""Animate a face picture with a driving video and write an mp4 (with the driving clip's audio, if it has any).

  python -m mcc_jax.animate --checkpoint DIR --source face.png --driving clip.mp4 --out out.mp4
  mcc-animate --checkpoint DIR --source face.png --driving clip.mp4 --out out.mp4 --find-best-frame \\
      --face-landmarker face_landmarker_v2_with_blendshapes.task

Both inputs are cropped as preprocessing crops faces (input_pipeline.face_crop: dlib's face box, a square of
--scale times its side, resized to the model's size); the driving clip gets one square around its mean face box.
--no-crop takes them as they are (already face crops) and only resizes them. Motion is relative by default (the
source's keypoints move as the driving keypoints move from an anchor frame, scaled by the keypoint hull areas: the
official demo's --relative --adapt_scale); --absolute uses the driving keypoints themselves. The anchor is the
first driving frame, or --best-frame N, or with --find-best-frame the frame whose face landmarks (MediaPipe,
normalised for position and size) are closest to the source's, as the official demo picks it.
"""
import argparse
import os
import pathlib
import sys

import numpy as np

FACE_LANDMARKER_ENV = "MCC_FACE_LANDMARKER"
LANDMARK_SIZE = 256


def crop_face_image(image: np.ndarray, size: int, *, scale: float = 1.8, name: str = "image") -> np.ndarray:
  """The largest face of `image`, cropped as preprocessing does and resized to size x size."""
  from input_pipeline import face_crop
  boxes = face_crop.FaceDetector()(image)
  if len(boxes) == 0:
    raise ValueError(f"no face found in {name}; pass --no-crop if it is already a face crop")
  square = face_crop.crop_square(boxes[0], image.shape[:2], scale)
  return face_crop.crop_and_resize(image, square, size)


def crop_face_video(path, size: int, *, scale: float = 1.8, max_frames: int | None = None) -> np.ndarray:
  """(T, size, size, 3) uint8: every frame cut to one square around the clip's mean face box. Decodes the clip
  twice (find the face on every 5th frame, then crop) so that memory does not grow with the frame size."""
  from input_pipeline import face_crop
  from mcc_jax.io.video import iter_frames
  detections, count, frame_size = face_crop.detect_sampled(iter_frames(path, max_frames=max_frames),
                                                           face_crop.FaceDetector())
  if count == 0:
    raise ValueError(f"{path} has no decodable frames")
  boxes = face_crop.track(detections, count)
  found = boxes[~np.isnan(boxes).any(axis=1)]
  if len(found) == 0:
    raise ValueError(f"no face found in {path} ({len(detections)} frames searched); pass --no-crop if it is "
                     "already a face crop")
  square = face_crop.crop_square(found.mean(axis=0), frame_size, scale)
  return np.stack([face_crop.crop_and_resize(frame, square, size)
                   for frame in iter_frames(path, max_frames=max_frames)])


def normalized_landmarks(landmarks: np.ndarray) -> np.ndarray:
  """Landmarks centred and divided by the square root of their hull area (the official find_best_frame's
  normalisation)."""
  from mcc_jax.evaluation.relative_motion import convex_hull_area
  centred = np.asarray(landmarks, np.float64) - np.mean(landmarks, axis=0, keepdims=True)
  return centred / np.sqrt(convex_hull_area(centred))


def find_best_frame(source: np.ndarray, driving: np.ndarray, landmarker) -> int:
  """Index of the driving frame whose normalised landmarks are nearest (squared L2) to the source's; frames
  without a face are passed over."""
  from mcc_jax.io.video import resize_square
  landmarks = lambda image: landmarker.landmarks(resize_square(image, LANDMARK_SIZE))
  reference = landmarks(source)
  if reference is None:
    raise ValueError("--find-best-frame: the face landmarker finds no face in the source")
  reference = normalized_landmarks(reference)
  best, best_distance = None, np.inf
  for index, frame in enumerate(driving):
    found = landmarks(frame)
    if found is None:
      continue
    distance = float(((normalized_landmarks(found) - reference) ** 2).sum())
    if distance < best_distance:
      best, best_distance = index, distance
  if best is None:
    raise ValueError("--find-best-frame: the face landmarker finds no face in any driving frame")
  return best


def _landmarker_path(path) -> str:
  from mcc_jax.evaluation.errors import MissingWeightsError
  path = path or os.environ.get(FACE_LANDMARKER_ENV)
  if not path:
    raise MissingWeightsError("--find-best-frame", "pass --face-landmarker PATH (MediaPipe "
                              f"face_landmarker_v2_with_blendshapes.task) or set ${FACE_LANDMARKER_ENV}")
  return path


def run(args) -> pathlib.Path:
  from mcc_jax.evaluation.clips import read_frame
  from mcc_jax.evaluation.pairs import ClipTask
  from mcc_jax.evaluation.predictors import ModelPredictor, predict_task
  from mcc_jax.io.video import has_audio, read_video, video_fps, write_video
  from mcc_jax.model_checkpoint import load_model, read_model_config
  from mcc_jax.training.sharding import make_mesh

  for name, path in (("--source", args.source), ("--driving", args.driving)):
    if not pathlib.Path(path).is_file():
      raise FileNotFoundError(f"{name} not found: {path}")
  if args.max_frames is not None and args.max_frames < 2:
    raise ValueError(f"--max-frames must be at least 2; got {args.max_frames}")
  size = read_model_config(args.checkpoint).generator["img_size"]
  landmarker_path = _landmarker_path(args.face_landmarker) if args.find_best_frame else None
  fps = video_fps(args.driving)
  if args.no_crop:
    source = read_frame(args.source, size)
    driving = read_video(args.driving, size=size, max_frames=args.max_frames).frames
  else:
    source = crop_face_image(read_frame(args.source), size, scale=args.scale, name=args.source)
    driving = crop_face_video(args.driving, size, scale=args.scale, max_frames=args.max_frames)
  if len(driving) < 2:
    raise ValueError(f"{args.driving} has {len(driving)} frame(s); a driving clip needs at least 2")
  anchor = 0
  if args.best_frame is not None:
    if not 0 <= args.best_frame < len(driving):
      raise ValueError(f"--best-frame {args.best_frame} is outside the clip's {len(driving)} frames")
    anchor = args.best_frame
  elif landmarker_path is not None:
    from mcc_jax.evaluation.face_backends import MediaPipeFace
    with MediaPipeFace(landmarker_path) as landmarker:
      anchor = find_best_frame(source, driving, landmarker)
    print(f"best frame: {anchor}")

  model = load_model(args.checkpoint)
  mesh = make_mesh()
  task = ClipTask(name=pathlib.Path(args.out).stem, source_ref=args.source, driving_ref=args.driving,
                  source=source, driving=driving, fps=fps, anchor_index=None if args.absolute else anchor)
  predictor = ModelPredictor(model, mesh, adapt_scale=not args.no_adapt_scale)
  results = predict_task(predictor, task, mesh, batch_size=args.batch_size, progress=True)
  audio = args.driving if has_audio(args.driving) else None
  out = write_video(args.out, results, fps, audio_from=audio)
  print(f"wrote {out}: {len(results)} frames, {size}x{size}, {fps:g} fps" + (", with the driving audio" if audio
                                                                            else ""))
  if args.visual:
    frames = (np.concatenate([source, d, r], axis=1) for d, r in zip(driving, results))
    print(f"wrote {write_video(args.visual, frames, fps, audio_from=audio)}: source | driving | result")
  return out


def parse_args(argv):
  parser = argparse.ArgumentParser(prog="python -m mcc_jax.animate", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--checkpoint", required=True, help="an mcc_jax model checkpoint (python -m mcc_jax.convert)")
  parser.add_argument("--source", required=True, help="the face picture to animate")
  parser.add_argument("--driving", required=True, help="the video whose motion drives it")
  parser.add_argument("--out", required=True, help="output mp4")
  parser.add_argument("--visual", help="also write source | driving | result to this mp4")
  parser.add_argument("--no-crop", action="store_true", help="inputs are face crops already: only resize them")
  parser.add_argument("--scale", type=float, default=1.8, help="crop side / face box side")
  parser.add_argument("--absolute", action="store_true", help="absolute driving keypoints instead of relative motion")
  parser.add_argument("--no-adapt-scale", action="store_true",
                      help="relative motion without scaling by the keypoint hull areas")
  anchor = parser.add_mutually_exclusive_group()
  anchor.add_argument("--find-best-frame", action="store_true",
                      help="anchor relative motion at the driving frame whose face is most like the source's")
  anchor.add_argument("--best-frame", type=int, help="anchor relative motion at this driving frame")
  parser.add_argument("--face-landmarker", help="MediaPipe face_landmarker .task for --find-best-frame "
                                                f"(default: ${FACE_LANDMARKER_ENV})")
  parser.add_argument("--max-frames", type=int, help="use at most this many driving frames")
  parser.add_argument("--batch-size", type=int, default=32, help="frames per batch over all devices")
  return parser.parse_args(argv)


def main(argv=None) -> int:
  args = parse_args(argv)
  try:
    run(args)
  except (FileNotFoundError, ValueError) as e:
    print(f"mcc-animate: error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
