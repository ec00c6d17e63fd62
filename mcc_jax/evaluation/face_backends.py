"""Face landmark, head-pose and identity backends behind AKD, pose error, AED and CSIM.

They run on the CPU on single (H, W, 3) uint8 RGB images and return numpy arrays, or None when no face is found.
Numbers from different backends are not comparable: every backend has a `name` that results must carry.
"""
import concurrent.futures
import dataclasses
import importlib.util
import math
import multiprocessing
import pathlib
from typing import Any, Callable, Sequence

import numpy as np

from mcc_jax.evaluation.errors import MissingWeightsError

LANDMARKER_FLAG = "--face-landmarker"
DLIB_FACE_MODEL_FLAG = "--dlib-face-model"
DLIB_SHAPE_PREDICTOR_FLAG = "--dlib-shape-predictor"
ARCFACE_FLAG = "--arcface-onnx"

# Below this cos(pitch) the x and z rotations share one axis (gimbal lock); scipy uses the same bound.
_GIMBAL_EPS = 1e-7


def check_image(image: np.ndarray) -> np.ndarray:
  """The image as a C-contiguous (H, W, 3) uint8 array; ValueError for anything else."""
  if not isinstance(image, np.ndarray):
    raise ValueError(f"expected a numpy image, got {type(image).__name__}")
  if image.ndim != 3 or image.shape[-1] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
    raise ValueError(f"expected one (H, W, 3) RGB image, got shape {image.shape}")
  if image.dtype != np.uint8:
    raise ValueError(f"expected a uint8 image, got dtype {image.dtype}")
  return np.ascontiguousarray(image)


def euler_xyz(rotation: np.ndarray) -> np.ndarray:
  """Extrinsic x-y-z Euler angles in radians, wrapped to [-pi, pi): scipy's
  `Rotation.from_matrix(rotation).as_euler("xyz")`, which the official pose metric uses.

  A matrix that is not exactly orthogonal (MediaPipe's are float32) is first replaced by the nearest rotation
  (orthogonal Procrustes), as scipy does. In gimbal lock the z angle is set to 0, as scipy does.
  """
  rotation = np.asarray(rotation, np.float64)
  if rotation.shape != (3, 3):
    raise ValueError(f"expected a (3, 3) rotation matrix, got shape {rotation.shape}")
  if not np.all(np.isfinite(rotation)) or np.linalg.det(rotation) <= 0:
    raise ValueError(f"not a right-handed rotation matrix (non-finite or determinant <= 0): {rotation.tolist()}")
  u, _, vt = np.linalg.svd(rotation)
  r = u @ vt
  # r = Rz(z) @ Ry(y) @ Rx(x)
  cos_y = math.hypot(r[0, 0], r[1, 0])
  y = math.atan2(-r[2, 0], cos_y)
  if cos_y > _GIMBAL_EPS:
    x = math.atan2(r[2, 1], r[2, 2])
    z = math.atan2(r[1, 0], r[0, 0])
  else:
    x = math.atan2(-r[1, 2], r[1, 1])
    z = 0.0
  angles = np.array([x, y, z])
  return (angles + np.pi) % (2 * np.pi) - np.pi


@dataclasses.dataclass(frozen=True)
class FaceMesh:
  """One MediaPipe detection: `landmarks` (478, 2) float pixel coordinates (x, y); `transformation` the (4, 4)
  facial transformation matrix (canonical face -> camera)."""
  landmarks: np.ndarray
  transformation: np.ndarray

  @property
  def head_pose(self) -> np.ndarray:
    """(3,) Euler angles in degrees, extrinsic x-y-z, of the matrix's rotation part."""
    return np.degrees(euler_xyz(self.transformation[:3, :3]))


class _Closing:
  """Backends are context managers; close them (MediaPipe's own finaliser fails during interpreter teardown)."""

  def close(self) -> None:
    pass

  def __enter__(self):
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


class MediaPipeFace(_Closing):
  """MediaPipe Tasks FaceLandmarker (v2, IMAGE mode, one face, CPU), from the `.task` file the official pose
  metric uses (face_landmarker_v2_with_blendshapes.task)."""

  name = "mediapipe-face-landmarker-v2"

  def __init__(self, task_path: str | pathlib.Path | None):
    if task_path is None or not pathlib.Path(task_path).is_file():
      where = "no path given" if task_path is None else f"{task_path} not found"
      raise MissingWeightsError("mediapipe face landmarker",
                                f"{where}; pass {LANDMARKER_FLAG} PATH (face_landmarker_v2_with_blendshapes.task)")
    try:
      import mediapipe as mp
    except ImportError as e:
      raise ImportError("the MediaPipe face backend needs the mediapipe package: pip install mediapipe") from e
    self._mp = mp
    options = mp.tasks.vision.FaceLandmarkerOptions(
        base_options=mp.tasks.BaseOptions(model_asset_path=str(task_path),
                                          delegate=mp.tasks.BaseOptions.Delegate.CPU),
        running_mode=mp.tasks.vision.RunningMode.IMAGE, num_faces=1,
        output_facial_transformation_matrixes=True)
    try:
      self._landmarker = mp.tasks.vision.FaceLandmarker.create_from_options(options)
    except RuntimeError as e:
      raise ValueError(f"{task_path} is not a readable MediaPipe face landmarker task file: {e}") from e

  def detect(self, image: np.ndarray) -> FaceMesh | None:
    image = check_image(image)
    height, width = image.shape[:2]
    result = self._landmarker.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=image))
    if not result.face_landmarks:
      return None
    normalised = np.array([(point.x, point.y) for point in result.face_landmarks[0]], np.float64)
    return FaceMesh(landmarks=normalised * np.array([width, height], np.float64),
                    transformation=np.asarray(result.facial_transformation_matrixes[0], np.float64))

  def landmarks(self, image: np.ndarray) -> np.ndarray | None:
    """(478, 2) pixel coordinates (x, y), or None when no face is found."""
    mesh = self.detect(image)
    return None if mesh is None else mesh.landmarks

  def head_pose(self, image: np.ndarray) -> np.ndarray | None:
    """(3,) degrees, extrinsic x-y-z Euler angles of the facial transformation matrix, or None."""
    mesh = self.detect(image)
    return None if mesh is None else mesh.head_pose

  def close(self) -> None:
    self._landmarker.close()


def _face_recognition_models_file(name: str) -> pathlib.Path | None:
  # The package's own __init__ needs pkg_resources, which new setuptools lacks: locate it without importing it.
  spec = importlib.util.find_spec("face_recognition_models")
  if spec is None or not spec.submodule_search_locations:
    return None
  path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "models" / name
  return path if path.is_file() else None


def _dlib_file(path, default_name: str, flag: str) -> pathlib.Path:
  if path is None:
    found = _face_recognition_models_file(default_name)
    if found is None:
      raise MissingWeightsError("dlib face descriptor",
                                f"{default_name} not found; pip install face-recognition-models, or pass {flag} PATH")
    return found
  if not pathlib.Path(path).is_file():
    raise MissingWeightsError("dlib face descriptor", f"{path} not found; pass {flag} PATH")
  return pathlib.Path(path)


class DlibFaceDescriptor(_Closing):
  """dlib's ResNet face descriptor (128-d, not normalised): HOG face detector, 5-point shape predictor and
  `dlib_face_recognition_resnet_model_v1.dat`, from the face_recognition_models package unless paths are given.
  When several faces are found, the largest box is described."""

  name = "dlib-resnet-v1"

  def __init__(self, model_path: str | pathlib.Path | None = None,
               landmarks_path: str | pathlib.Path | None = None, *, upsample: int = 1, num_jitters: int = 1):
    model_path = _dlib_file(model_path, "dlib_face_recognition_resnet_model_v1.dat", DLIB_FACE_MODEL_FLAG)
    landmarks_path = _dlib_file(landmarks_path, "shape_predictor_5_face_landmarks.dat", DLIB_SHAPE_PREDICTOR_FLAG)
    try:
      import dlib
    except ImportError as e:
      raise ImportError("the dlib face backend needs dlib: pip install dlib-bin") from e
    self._detector = dlib.get_frontal_face_detector()
    try:
      self._shape_predictor = dlib.shape_predictor(str(landmarks_path))
    except RuntimeError as e:
      raise ValueError(f"{landmarks_path} is not a readable dlib shape predictor: {e}") from e
    try:
      self._descriptor = dlib.face_recognition_model_v1(str(model_path))
    except RuntimeError as e:
      raise ValueError(f"{model_path} is not a readable dlib face recognition model: {e}") from e
    self.upsample = upsample
    self.num_jitters = num_jitters

  def embedding(self, image: np.ndarray) -> np.ndarray | None:
    """(128,) float64 descriptor of the largest detected face, or None."""
    image = check_image(image)
    boxes = self._detector(image, self.upsample)
    if len(boxes) == 0:
      return None
    box = max(boxes, key=lambda b: b.area())
    shape = self._shape_predictor(image, box)
    return np.array(self._descriptor.compute_face_descriptor(image, shape, self.num_jitters), np.float64)


# ArcFace's 112x112 template (insightface): image-left eye, image-right eye, nose tip, left and right mouth corner.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]])
# The same five points in MediaPipe's 478-point mesh: iris centres, nose tip, mouth corners.
MEDIAPIPE_FIVE_POINTS = (468, 473, 1, 61, 291)


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
  """(2, 3) least-squares similarity (rotation, uniform scale, translation; no reflection) mapping the (N, 2)
  source points onto the target points: Umeyama's method, as insightface's alignment uses."""
  source, target = np.asarray(source, np.float64), np.asarray(target, np.float64)
  if source.ndim != 2 or source.shape[1] != 2 or source.shape != target.shape or len(source) < 2:
    raise ValueError(f"expected two (N, 2) point sets with N >= 2, got {source.shape} and {target.shape}")
  source_mean, target_mean = source.mean(0), target.mean(0)
  source_centred, target_centred = source - source_mean, target - target_mean
  variance = np.mean(np.sum(source_centred ** 2, axis=1))
  if variance == 0:
    raise ValueError("the source points coincide")
  u, singular, vt = np.linalg.svd(target_centred.T @ source_centred / len(source))
  signs = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
  rotation = u @ np.diag(signs) @ vt
  scale = np.sum(singular * signs) / variance
  return np.concatenate([scale * rotation, (target_mean - scale * rotation @ source_mean)[:, None]], axis=1)


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
  """(size, size, C) float64: output pixel p takes the bilinear sample of `image` at matrix^-1 p, with pixel
  centres at integer coordinates and zeros outside the image (OpenCV's warpAffine convention)."""
  inverse = np.linalg.inv(np.concatenate([matrix, [[0.0, 0.0, 1.0]]]))[:2]
  ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
  sample_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
  sample_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
  x0, y0 = np.floor(sample_x).astype(np.int64), np.floor(sample_y).astype(np.int64)
  fx, fy = (sample_x - x0)[..., None], (sample_y - y0)[..., None]
  height, width = image.shape[:2]
  pixels = image.astype(np.float64)

  def tap(y, x):
    inside = ((y >= 0) & (y < height) & (x >= 0) & (x < width))[..., None]
    return np.where(inside, pixels[np.clip(y, 0, height - 1), np.clip(x, 0, width - 1)], 0.0)

  top = tap(y0, x0) * (1 - fx) + tap(y0, x0 + 1) * fx
  bottom = tap(y0 + 1, x0) * (1 - fx) + tap(y0 + 1, x0 + 1) * fx
  return top * (1 - fy) + bottom * fy


class ArcFaceOnnx(_Closing):
  """A user-supplied ArcFace ONNX recognition model (e.g. insightface's glint360k `glintr100.onnx` of antelopev2),
  run with onnxruntime on the CPU. Faces are found and aligned to the 112x112 ArcFace template with MediaPipe's
  iris, nose-tip and mouth-corner landmarks instead of insightface's SCRFD points, so scores are close to, not
  identical with, insightface's. Input: RGB, NCHW, (x - input_mean) / input_std."""

  def __init__(self, model_path: str | pathlib.Path | None, task_path: str | pathlib.Path | None, *,
               input_mean: float = 127.5, input_std: float = 127.5):
    if model_path is None or not pathlib.Path(model_path).is_file():
      where = "no path given" if model_path is None else f"{model_path} not found"
      raise MissingWeightsError("arcface", f"{where}; pass {ARCFACE_FLAG} PATH (e.g. antelopev2's glintr100.onnx)")
    try:
      import onnxruntime
    except ImportError as e:
      raise ImportError("the ArcFace backend needs onnxruntime: pip install onnxruntime") from e
    try:
      self._session = onnxruntime.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable models
      raise ValueError(f"{model_path} is not a readable ONNX model: {e}") from e
    model_input = self._session.get_inputs()[0]
    self._input_name = model_input.name
    self.size = model_input.shape[-1] if isinstance(model_input.shape[-1], int) else 112
    self.input_mean, self.input_std = input_mean, input_std
    self.name = f"arcface-onnx-{pathlib.Path(model_path).stem}"
    self._landmarker = MediaPipeFace(task_path)

  def aligned_face(self, image: np.ndarray) -> np.ndarray | None:
    """(size, size, 3) uint8 RGB crop aligned to the ArcFace template (rounded like insightface's uint8 crop), or
    None when no face is found."""
    landmarks = self._landmarker.landmarks(image)
    if landmarks is None:
      return None
    template = ARCFACE_TEMPLATE * (self.size / 112.0)
    matrix = similarity_transform(landmarks[list(MEDIAPIPE_FIVE_POINTS)], template)
    return np.clip(np.round(warp_affine(image, matrix, self.size)), 0, 255).astype(np.uint8)

  def embedding(self, image: np.ndarray) -> np.ndarray | None:
    """The model's embedding (not normalised) of the aligned face, float64, or None."""
    face = self.aligned_face(image)
    if face is None:
      return None
    normalised = (face.astype(np.float64) - self.input_mean) / self.input_std
    batch = normalised.transpose(2, 0, 1)[None].astype(np.float32)
    return np.asarray(self._session.run(None, {self._input_name: batch})[0], np.float64).reshape(-1)

  def close(self) -> None:
    self._landmarker.close()


def _run_on_chunk(make_backend: Callable[[], Any], method: str, images: Sequence[np.ndarray]) -> list:
  with make_backend() as backend:
    return [getattr(backend, method)(image) for image in images]


def map_images(make_backend: Callable[[], Any], method: str, images: Sequence[np.ndarray], *,
               workers: int = 1) -> list:
  """`getattr(backend, method)(image)` for every image, in order, over `workers` CPU processes.

  `make_backend` builds the backend (e.g. `functools.partial(MediaPipeFace, path)`); it must be picklable, since
  backends themselves are not: each worker builds its own and runs it over one contiguous share of the images.
  It is also called once here first, so missing or corrupt weights raise here rather than inside a worker.
  Workers are spawned, never forked (JAX is multithreaded).
  """
  with make_backend() as backend:
    if not callable(getattr(backend, method, None)):
      raise ValueError(f"{type(backend).__name__} has no method {method!r}")
    if workers <= 1 or len(images) <= 1:
      return [getattr(backend, method)(image) for image in images]
  workers = min(workers, len(images))
  bounds = np.linspace(0, len(images), workers + 1).round().astype(int)
  chunks = [images[start:end] for start, end in zip(bounds[:-1], bounds[1:])]
  with concurrent.futures.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
    results = pool.map(_run_on_chunk, [make_backend] * workers, [method] * workers, chunks)
    return [result for chunk in results for result in chunk]
