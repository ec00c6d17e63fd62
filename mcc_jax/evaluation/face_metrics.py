"""AKD, AED, CSIM and head-pose error between two aligned frame sequences, as the official basicsr/metrics code
defines them (face_akd and face_aed in extract.py, cmp_id_similarity.py, norm_pose/cmp_pose_accuracy.py).

Each takes `a` (the reference: driving frames, or the source for cross-identity) and `b` (the generated frames),
either one frame's array or a sequence of per-frame arrays where None marks a frame without a detection. Frames
where either side is None are skipped, as the official code skips them (explicitly for the generated side, through
its caught exception for the reference side). `*_per_frame` returns the scores of the kept frames, for averaging
over a whole test set as the official code does (one mean over all frames of all clips); the plain functions
return the mean over one sequence, or NaN when no frame has detections on both sides.
"""
import math
from typing import Callable, Sequence

import numpy as np

Frames = np.ndarray | Sequence[np.ndarray | None]


def _pairs(a: Frames, b: Frames, frame_ndim: int) -> list[tuple[np.ndarray, np.ndarray]]:
  if isinstance(a, np.ndarray) and a.ndim == frame_ndim:
    a, b = [a], [b]
  if isinstance(b, np.ndarray) and b.ndim == frame_ndim:
    raise ValueError(f"one side is a single frame and the other a sequence ({b.shape})")
  if len(a) != len(b):
    raise ValueError(f"the sequences differ in length: {len(a)} vs {len(b)} frames")
  pairs = []
  for index, (frame_a, frame_b) in enumerate(zip(a, b)):
    if frame_a is None or frame_b is None:
      continue
    frame_a, frame_b = np.asarray(frame_a, np.float64), np.asarray(frame_b, np.float64)
    if frame_a.ndim != frame_ndim or frame_a.shape != frame_b.shape:
      raise ValueError(f"frame {index}: expected two arrays of one {frame_ndim}-d shape, "
                       f"got {frame_a.shape} and {frame_b.shape}")
    pairs.append((frame_a, frame_b))
  return pairs


def _per_frame(score: Callable[[np.ndarray, np.ndarray], float], a: Frames, b: Frames,
               frame_ndim: int) -> np.ndarray:
  return np.array([score(frame_a, frame_b) for frame_a, frame_b in _pairs(a, b, frame_ndim)], np.float64)


def _mean(scores: np.ndarray) -> float:
  return float(np.mean(scores)) if scores.size else math.nan


def _unit(embedding: np.ndarray) -> np.ndarray:
  norm = np.linalg.norm(embedding)
  if norm == 0:
    raise ValueError("a face embedding of norm 0 cannot be normalised")
  return embedding / norm


def _akd_frame(landmarks_a: np.ndarray, landmarks_b: np.ndarray) -> float:
  return float(np.mean(np.abs(landmarks_a - landmarks_b)))


def _aed_frame(embedding_a: np.ndarray, embedding_b: np.ndarray) -> float:
  return float(np.sum((_unit(embedding_a) - _unit(embedding_b)) ** 2))


def _csim_frame(embedding_a: np.ndarray, embedding_b: np.ndarray) -> float:
  return float(np.dot(_unit(embedding_a), _unit(embedding_b)))


def _pose_frame(pose_a: np.ndarray, pose_b: np.ndarray) -> float:
  return float(np.mean(np.abs(pose_a - pose_b)))


def akd_per_frame(landmarks_a: Frames, landmarks_b: Frames) -> np.ndarray:
  """Official face_akd: per frame, the mean over all landmarks and both coordinates of |a - b|, in pixels (an L1
  mean, not a Euclidean distance). Landmarks are (N, 2)."""
  return _per_frame(_akd_frame, landmarks_a, landmarks_b, 2)


def akd(landmarks_a: Frames, landmarks_b: Frames) -> float:
  """Mean of `akd_per_frame`."""
  return _mean(akd_per_frame(landmarks_a, landmarks_b))


def aed_per_frame(embeddings_a: Frames, embeddings_b: Frames) -> np.ndarray:
  """Official face_aed: the sum of squared differences (squared L2) of L2-normalised embeddings. The official
  OpenFace network normalises its output; other backends' embeddings are normalised here."""
  return _per_frame(_aed_frame, embeddings_a, embeddings_b, 1)


def aed(embeddings_a: Frames, embeddings_b: Frames) -> float:
  """Mean of `aed_per_frame`."""
  return _mean(aed_per_frame(embeddings_a, embeddings_b))


def csim_per_frame(embeddings_a: Frames, embeddings_b: Frames) -> np.ndarray:
  """Official calculate_id_similarity: the dot product of the L2-normalised embeddings (cosine similarity)."""
  return _per_frame(_csim_frame, embeddings_a, embeddings_b, 1)


def csim(embeddings_a: Frames, embeddings_b: Frames) -> float:
  """Mean of `csim_per_frame`."""
  return _mean(csim_per_frame(embeddings_a, embeddings_b))


def pose_error_per_frame(poses_a: Frames, poses_b: Frames) -> np.ndarray:
  """Official calculate_pose_distance: the mean over the three Euler angles (degrees) of |a - b|. Differences are
  not wrapped, as in the official code."""
  return _per_frame(_pose_frame, poses_a, poses_b, 1)


def pose_error(poses_a: Frames, poses_b: Frames) -> float:
  """Mean of `pose_error_per_frame`."""
  return _mean(pose_error_per_frame(poses_a, poses_b))
