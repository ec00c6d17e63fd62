"""Face backends (MediaPipe landmarks and head pose, dlib identity) against the packages called directly on real
faces, and the AKD / AED / CSIM / pose-error definitions of the official code."""
import functools
import importlib.util
import math

import numpy as np
import pytest

from conftest import REAL_MEDIA
from mcc_jax.evaluation import face_backends, face_metrics
from mcc_jax.evaluation.errors import MissingWeightsError

CROPS = REAL_MEDIA / "crops256"
TASK_FILE = REAL_MEDIA.parent / "reference" / "models" / "face_landmarker_v2_with_blendshapes.task"
# Two clips of different people; frames 0 and 10 of one clip are the same person.
CLIP_A, CLIP_B = "fomm_00", "retalking_face1"
# scipy computes the same angles in another order of operations (via a quaternion).
EULER_TOLERANCE_DEGREES = 1e-9


def _frames(name: str, indices: tuple[int, ...]) -> list[np.ndarray]:
  av = pytest.importorskip("av")
  path = CROPS / f"{name}.mp4"
  if not path.is_file():
    pytest.skip(f"real face clip {path} not found (it lives in ../shared/real_media)")
  with av.open(str(path)) as container:
    frames = [frame.to_ndarray(format="rgb24") for _, frame in zip(range(max(indices) + 1), container.decode(video=0))]
  return [frames[i] for i in indices]


@pytest.fixture(scope="module")
def faces() -> dict[str, np.ndarray]:
  a0, a10 = _frames(CLIP_A, (0, 10))
  b0, = _frames(CLIP_B, (0,))
  return {"a0": a0, "a10": a10, "b0": b0}


@pytest.fixture(scope="module")
def non_faces() -> list[np.ndarray]:
  noise = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
  return [np.full((256, 256, 3), 128, np.uint8), noise]


@pytest.fixture(scope="module")
def mediapipe_face():
  pytest.importorskip("mediapipe")
  if not TASK_FILE.is_file():
    pytest.skip(f"MediaPipe task file {TASK_FILE} not found (it lives in ../shared/reference/models)")
  backend = face_backends.MediaPipeFace(TASK_FILE)
  yield backend
  backend.close()


def _dlib_models_or_skip():
  pytest.importorskip("dlib")
  try:
    return face_backends.DlibFaceDescriptor()
  except MissingWeightsError as e:
    pytest.skip(str(e))


@pytest.fixture(scope="module")
def dlib_descriptor():
  return _dlib_models_or_skip()


def test_mediapipe_matches_the_landmarker_called_directly(mediapipe_face, faces):
  mp = pytest.importorskip("mediapipe")
  # The official extractor's options (blendshapes on); ours leaves them off, which must not change the geometry.
  options = mp.tasks.vision.FaceLandmarkerOptions(
      base_options=mp.tasks.BaseOptions(model_asset_path=str(TASK_FILE)),
      running_mode=mp.tasks.vision.RunningMode.IMAGE, num_faces=1, output_face_blendshapes=True,
      output_facial_transformation_matrixes=True)
  with mp.tasks.vision.FaceLandmarker.create_from_options(options) as landmarker:
    for image in faces.values():
      result = landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=image))
      height, width = image.shape[:2]
      expected = np.array([(p.x * width, p.y * height) for p in result.face_landmarks[0]])
      mesh = mediapipe_face.detect(image)
      np.testing.assert_array_equal(mesh.landmarks, expected)
      np.testing.assert_array_equal(mesh.transformation, result.facial_transformation_matrixes[0])
      np.testing.assert_array_equal(mediapipe_face.landmarks(image), expected)
      assert mediapipe_face.landmarks(image).shape == (478, 2)


def test_head_pose_matches_scipy_on_real_faces(mediapipe_face, faces):
  rotation = pytest.importorskip("scipy.spatial.transform").Rotation
  for image in faces.values():
    matrix = mediapipe_face.detect(image).transformation
    expected = rotation.from_matrix(matrix[:3, :3]).as_euler("xyz", degrees=True)
    np.testing.assert_allclose(mediapipe_face.head_pose(image), expected, rtol=0, atol=EULER_TOLERANCE_DEGREES)


def test_euler_xyz_matches_scipy():
  rotation = pytest.importorskip("scipy.spatial.transform").Rotation
  rng = np.random.default_rng(1)
  matrices = list(rotation.random(200, rng=rng).as_matrix())
  # Not exactly orthogonal, like MediaPipe's float32 matrices.
  matrices += [m.astype(np.float32).astype(np.float64) + rng.normal(0, 1e-5, (3, 3)) for m in matrices[:50]]
  # Gimbal lock (pitch of +-90 degrees), where scipy sets the z angle to 0.
  for pitch in (90.0, -90.0):
    matrices += list(rotation.from_euler("xyz", rng.uniform(-180, 180, (5, 3)) * [1, 0, 1] + [0, pitch, 0],
                                         degrees=True).as_matrix())
  worst = 0.0
  with pytest.warns(UserWarning, match="Gimbal lock"):
    for m in matrices:
      expected = rotation.from_matrix(m).as_euler("xyz", degrees=True)
      got = np.degrees(face_backends.euler_xyz(m))
      worst = max(worst, float(np.max(np.abs(got - expected))))
  assert worst <= EULER_TOLERANCE_DEGREES, worst


def test_euler_xyz_rejects_non_rotations():
  with pytest.raises(ValueError, match="3, 3"):
    face_backends.euler_xyz(np.eye(4))
  with pytest.raises(ValueError, match="determinant"):
    face_backends.euler_xyz(np.diag([1.0, 1.0, -1.0]))
  with pytest.raises(ValueError, match="determinant"):
    face_backends.euler_xyz(np.full((3, 3), np.nan))


def test_dlib_matches_dlib_called_directly(dlib_descriptor, faces):
  import dlib
  models = face_backends._face_recognition_models_file
  detector = dlib.get_frontal_face_detector()
  predictor = dlib.shape_predictor(str(models("shape_predictor_5_face_landmarks.dat")))
  network = dlib.face_recognition_model_v1(str(models("dlib_face_recognition_resnet_model_v1.dat")))
  for image in faces.values():
    boxes = detector(image, 1)
    assert len(boxes) == 1
    expected = np.array(network.compute_face_descriptor(image, predictor(image, boxes[0]), 1))
    got = dlib_descriptor.embedding(image)
    assert got.shape == (128,)
    np.testing.assert_array_equal(got, expected)


def test_no_face_gives_none(mediapipe_face, dlib_descriptor, non_faces):
  for image in non_faces:
    assert mediapipe_face.detect(image) is None
    assert mediapipe_face.landmarks(image) is None
    assert mediapipe_face.head_pose(image) is None
    assert dlib_descriptor.embedding(image) is None


@pytest.mark.parametrize("bad", [np.zeros((64, 64), np.uint8), np.zeros((64, 64, 4), np.uint8),
                                 np.zeros((2, 64, 64, 3), np.uint8), np.zeros((64, 64, 3), np.float32),
                                 [[0, 0, 0]]])
def test_wrong_input_raises(mediapipe_face, dlib_descriptor, bad):
  with pytest.raises(ValueError, match="expected"):
    mediapipe_face.landmarks(bad)
  with pytest.raises(ValueError, match="expected"):
    dlib_descriptor.embedding(bad)


def test_missing_or_corrupt_weights(tmp_path):
  with pytest.raises(MissingWeightsError, match="--face-landmarker"):
    face_backends.MediaPipeFace(None)
  with pytest.raises(MissingWeightsError, match="--face-landmarker"):
    face_backends.MediaPipeFace(tmp_path / "absent.task")
  with pytest.raises(MissingWeightsError, match="--dlib-face-model"):
    face_backends.DlibFaceDescriptor(model_path=tmp_path / "absent.dat")
  corrupt = tmp_path / "corrupt.dat"
  corrupt.write_bytes(np.random.default_rng(0).bytes(1000))
  if TASK_FILE.is_file() and importlib.util.find_spec("mediapipe"):
    with pytest.raises(ValueError, match="not a readable MediaPipe"):
      face_backends.MediaPipeFace(corrupt)
  _dlib_models_or_skip()
  with pytest.raises(ValueError, match="not a readable dlib face recognition model"):
    face_backends.DlibFaceDescriptor(model_path=corrupt)


def test_identical_images_give_perfect_scores(mediapipe_face, dlib_descriptor, faces):
  image = faces["a0"]
  landmarks, pose = mediapipe_face.landmarks(image), mediapipe_face.head_pose(image)
  embedding = dlib_descriptor.embedding(image)
  assert face_metrics.akd(landmarks, mediapipe_face.landmarks(image.copy())) == 0.0
  assert face_metrics.pose_error(pose, mediapipe_face.head_pose(image.copy())) == 0.0
  again = dlib_descriptor.embedding(image.copy())
  assert face_metrics.aed(embedding, again) == 0.0
  assert face_metrics.csim(embedding, again) == pytest.approx(1.0, abs=1e-12)


def test_other_identity_is_farther_than_the_same_clip(mediapipe_face, dlib_descriptor, faces):
  same = [dlib_descriptor.embedding(faces[k]) for k in ("a0", "a10")]
  other = dlib_descriptor.embedding(faces["b0"])
  aed_same, aed_other = face_metrics.aed(*same), face_metrics.aed(same[0], other)
  assert 0.0 < aed_same < aed_other / 2, (aed_same, aed_other)
  assert face_metrics.csim(*same) > face_metrics.csim(same[0], other)
  # Landmarks move between frames: AKD of two frames is positive and a few pixels, not hundreds.
  akd = face_metrics.akd(mediapipe_face.landmarks(faces["a0"]), mediapipe_face.landmarks(faces["a10"]))
  assert 0.1 < akd < 60.0, akd


def test_metric_definitions_and_missing_detections():
  a = np.array([[0.0, 0.0], [10.0, 10.0]])
  b = np.array([[3.0, 4.0], [10.0, 10.0]])
  # Mean of |differences| over coordinates (1.75), not the mean Euclidean distance (2.5).
  assert face_metrics.akd(a, b) == 1.75
  # None on either side skips the frame; the mean is over the kept frames.
  assert face_metrics.akd([a, None, a, a], [b, b, None, a]) == (1.75 + 0.0) / 2
  np.testing.assert_array_equal(face_metrics.akd_per_frame([a, None, a], [b, b, a]), [1.75, 0.0])
  assert math.isnan(face_metrics.akd([a, None], [None, b]))
  assert face_metrics.akd_per_frame([], []).shape == (0,)

  e1, e2 = np.array([3.0, 4.0, 0.0]), np.array([0.0, 2.0, 0.0])
  # Squared L2 of the unit vectors (0.6, 0.8, 0) and (0, 1, 0); cosine 0.8.
  assert face_metrics.aed(e1, e2) == pytest.approx(0.6 ** 2 + 0.2 ** 2, abs=1e-15)
  assert face_metrics.csim([e1, e1], [e2, None]) == pytest.approx(0.8, abs=1e-15)
  assert face_metrics.aed(e1, 5 * e1) == pytest.approx(0.0, abs=1e-15)
  assert face_metrics.pose_error(np.array([10.0, -5.0, 2.0]), np.array([7.0, 1.0, 2.0])) == 3.0
  # A (T, N, 2) array is a clip.
  assert face_metrics.akd(np.stack([a, a]), np.stack([b, a])) == 0.875

  with pytest.raises(ValueError, match="length"):
    face_metrics.akd([a, a], [b])
  with pytest.raises(ValueError, match="shape"):
    face_metrics.akd(a, b[:1])
  with pytest.raises(ValueError, match="single frame"):
    face_metrics.aed([e1], e2)
  with pytest.raises(ValueError, match="norm 0"):
    face_metrics.csim(e1, np.zeros(3))


def test_worker_pool_gives_the_serial_results(faces):
  pytest.importorskip("mediapipe")
  if not TASK_FILE.is_file():
    pytest.skip(f"MediaPipe task file {TASK_FILE} not found")
  images = list(faces.values()) + [np.full((64, 64, 3), 128, np.uint8)]
  make = functools.partial(face_backends.MediaPipeFace, TASK_FILE)
  serial = face_backends.map_images(make, "head_pose", images)
  pooled = face_backends.map_images(make, "head_pose", images, workers=2)
  assert serial[-1] is None and pooled[-1] is None
  for s, p in zip(serial[:-1], pooled[:-1]):
    np.testing.assert_array_equal(s, p)
  with pytest.raises(MissingWeightsError):
    face_backends.map_images(functools.partial(face_backends.MediaPipeFace, None), "head_pose", images, workers=2)
  with pytest.raises(ValueError, match="no method"):
    face_backends.map_images(make, "embedding", images)


def test_similarity_transform_recovers_a_known_similarity():
  rng = np.random.default_rng(2)
  angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
  rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
  source = rng.uniform(0, 100, (5, 2))
  target = source @ (scale * rotation).T + shift
  expected = np.concatenate([scale * rotation, shift[:, None]], axis=1)
  np.testing.assert_allclose(face_backends.similarity_transform(source, target), expected, rtol=0, atol=1e-12)
  # A mirror image is fitted by a rotation, never a reflection.
  fitted = face_backends.similarity_transform(source, source * [-1.0, 1.0])
  assert np.linalg.det(fitted[:, :2]) > 0
  with pytest.raises(ValueError, match="coincide"):
    face_backends.similarity_transform(np.ones((5, 2)), target)


def test_warp_affine_matches_opencv(mediapipe_face, faces):
  cv2 = pytest.importorskip("cv2")
  image = faces["b0"]
  points = mediapipe_face.landmarks(image)[list(face_backends.MEDIAPIPE_FIVE_POINTS)]
  # The ArcFace crop, and a zoomed-out one that is mostly outside the image.
  for template in (face_backends.ARCFACE_TEMPLATE, face_backends.ARCFACE_TEMPLATE * 0.3 + 20):
    matrix = face_backends.similarity_transform(points, template)
    ours = np.round(face_backends.warp_affine(image, matrix, 112))
    theirs = cv2.warpAffine(image, matrix, (112, 112), flags=cv2.INTER_LINEAR, borderValue=0)
    # OpenCV quantises the sampling positions to 1/32 pixel: at most one grey level apart after rounding.
    assert np.max(np.abs(ours - theirs)) <= 1
    assert np.mean(ours != theirs) < 0.01
  assert np.mean(np.all(theirs == 0, axis=-1)) > 0.5


def _tiny_arcface_onnx(path, embedding_size: int = 16) -> np.ndarray:
  """A stand-in recognition network (flatten then one matrix product) with ArcFace's input and output layout."""
  onnx = pytest.importorskip("onnx")
  weights = np.random.default_rng(3).normal(0, 0.01, (3 * 112 * 112, embedding_size)).astype(np.float32)
  helper = onnx.helper
  graph = helper.make_graph(
      [helper.make_node("Flatten", ["input.1"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "w"], ["emb"])],
      "tiny_arcface",
      [helper.make_tensor_value_info("input.1", onnx.TensorProto.FLOAT, [1, 3, 112, 112])],
      [helper.make_tensor_value_info("emb", onnx.TensorProto.FLOAT, [1, embedding_size])],
      [onnx.numpy_helper.from_array(weights, "w")])
  model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
  onnx.save(model, str(path))
  return weights


def test_arcface_onnx_feeds_the_aligned_face_as_insightface_does(tmp_path, faces):
  pytest.importorskip("onnxruntime")
  if not TASK_FILE.is_file():
    pytest.skip(f"MediaPipe task file {TASK_FILE} not found")
  weights = _tiny_arcface_onnx(tmp_path / "tiny.onnx")
  with face_backends.ArcFaceOnnx(tmp_path / "tiny.onnx", TASK_FILE) as arcface:
    assert arcface.name == "arcface-onnx-tiny"
    face = arcface.aligned_face(faces["a0"])
    assert face.shape == (112, 112, 3) and face.dtype == np.uint8
    # RGB, channels first, (x - 127.5) / 127.5.
    expected = ((face.astype(np.float32) - 127.5) / 127.5).transpose(2, 0, 1).reshape(-1) @ weights
    np.testing.assert_allclose(arcface.embedding(faces["a0"]), expected, rtol=1e-4, atol=1e-5)
    assert arcface.embedding(np.full((128, 128, 3), 128, np.uint8)) is None
    # The aligned eyes sit where the template puts them: MediaPipe finds the irises there again (within 1 px).
    with face_backends.MediaPipeFace(TASK_FILE) as landmarker:
      big = np.asarray(np.kron(face, np.ones((4, 4, 1))), np.uint8)
      eyes = landmarker.landmarks(big)[[468, 473]] / 4
    np.testing.assert_allclose(eyes, face_backends.ARCFACE_TEMPLATE[:2], atol=1.0)
  with pytest.raises(MissingWeightsError, match="--arcface-onnx"):
    face_backends.ArcFaceOnnx(tmp_path / "absent.onnx", TASK_FILE)
  (tmp_path / "corrupt.onnx").write_bytes(b"not a model")
  with pytest.raises(ValueError, match="not a readable ONNX model"):
    face_backends.ArcFaceOnnx(tmp_path / "corrupt.onnx", TASK_FILE)
