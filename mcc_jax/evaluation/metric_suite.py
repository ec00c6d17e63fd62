"""The metrics one evaluation computes, with their weights and backends; unavailable ones are skipped with a hint.

What each protocol compares (reference/mcc_spec.md section 10.2):
- reconstruction: L1, PSNR, SSIM, LPIPS, AKD, AED, CSIM and head-pose error compare the result with the driving
  frame (its ground truth); FID compares the set of source images (one per result, as the official test saves
  them) with the set of results.
- cross_identity: no ground truth: FID (sources vs results), AED and CSIM (source vs result: is it still the
  source's person?) and head-pose error (driving vs result: did the pose transfer?).

Batch metrics (L1, PSNR, SSIM, LPIPS, FID features) run jitted on the accelerator; the face backends (MediaPipe
landmarks and pose, dlib identity embeddings) run on the CPU, on frames resized to `face_size`, so AKD is in
pixels of a face_size image whatever the model's size.
"""
import dataclasses
import importlib
import os

import jax
import numpy as np
from flax import nnx

from mcc_jax.evaluation.errors import MissingWeightsError
from mcc_jax.io.video import resize_square

METRICS_BY_MODE = {
    "reconstruction": ("l1", "psnr", "ssim", "lpips", "fid", "akd", "aed", "csim", "pose_error"),
    "cross_identity": ("fid", "aed", "csim", "pose_error"),
}
# Direction of improvement, for tables.
LOWER_IS_BETTER = {"l1": True, "psnr": False, "ssim": False, "lpips": True, "fid": True, "akd": True, "aed": True,
                   "csim": False, "pose_error": True}
FIDELITY = ("l1", "psnr", "ssim")
LANDMARK_METRICS = ("akd", "pose_error")
IDENTITY_METRICS = ("aed", "csim")
FACE_LANDMARKER_ENV = "MCC_FACE_LANDMARKER"


@dataclasses.dataclass
class MetricOptions:
  """Weights and settings of the metrics. None weights: lpips and the face landmarker are skipped (with a hint);
  FID and the dlib descriptor look for the weights their Python packages ship."""
  metrics: tuple[str, ...] | None = None  # None: every metric of the mode
  lpips_backbone: str | None = None
  lpips_net: str = "vgg"
  lpips_heads: str | None = None
  fid_weights: str | None = None
  face_landmarker: str | None = None  # None: $MCC_FACE_LANDMARKER if set
  dlib_model: str | None = None
  face_size: int = 256


def check_metric_names(mode: str, metrics) -> tuple[str, ...]:
  """The metrics to compute in `mode` (None: all of the mode's); ValueError for unknown or inapplicable ones."""
  if mode not in METRICS_BY_MODE:
    raise ValueError(f"mode must be one of {tuple(METRICS_BY_MODE)}; got {mode!r}")
  wanted = tuple(metrics) if metrics is not None else METRICS_BY_MODE[mode]
  unknown = [m for m in wanted if m not in METRICS_BY_MODE["reconstruction"]]
  if unknown:
    raise ValueError(f"unknown metrics {unknown}; known: {METRICS_BY_MODE['reconstruction']}")
  not_applicable = [m for m in wanted if m not in METRICS_BY_MODE[mode]]
  if not_applicable:
    raise ValueError(f"{not_applicable} need ground truth and apply only to reconstruction, not {mode}")
  return wanted


def _module(name: str):
  return importlib.import_module(f"mcc_jax.evaluation.{name}")


def replicate(module, sharding) -> None:
  """Put an nnx module's variables on every device of `sharding` (in place)."""
  if isinstance(module, nnx.Module):
    nnx.update(module, jax.device_put(nnx.state(module), sharding))


class MetricSuite:
  """Loads what the requested metrics need; `names` are the metrics that will run, `skipped` maps the others to
  the one line saying why (and what to pass), `backends` says which network produced each number."""

  def __init__(self, mode: str, options: MetricOptions = MetricOptions(), *, replicated=None):
    wanted = check_metric_names(mode, options.metrics)
    self.mode = mode
    self.options = options
    self.skipped: dict[str, str] = {}
    self.backends: dict[str, str] = {}
    self._fidelity = self._lpips = self._fid = self._landmarks = self._identity = self._face_metrics = None

    if any(m in wanted for m in FIDELITY):
      self._fidelity = self._load(tuple(m for m in FIDELITY if m in wanted), lambda: _module("fidelity"))
      for m in FIDELITY:
        if m in wanted and self._fidelity is not None:
          self.backends[m] = "basicsr (uint8, RGB, crop 0)" if m != "l1" else "mean |a - b| / 255"
    if "lpips" in wanted:
      self._lpips = self._load(("lpips",), lambda: self._load_lpips(replicated))
      if self._lpips is not None:
        self.backends["lpips"] = getattr(self._lpips[1], "name", f"lpips-{options.lpips_net}")
    if "fid" in wanted:
      self._fid = self._load(("fid",), lambda: self._load_fid(replicated))
      if self._fid is not None:
        self.backends["fid"] = getattr(self._fid[1], "name", "pytorch-fid InceptionV3 pool3")
    face_wanted = [m for m in LANDMARK_METRICS + IDENTITY_METRICS if m in wanted]
    if face_wanted:
      self._face_metrics = self._load(tuple(face_wanted), lambda: _module("face_metrics"))
    if self._face_metrics is not None:
      landmark_metrics = tuple(m for m in LANDMARK_METRICS if m in wanted)
      if landmark_metrics:
        self._landmarks = self._load(landmark_metrics, self._load_landmarker)
        for m in landmark_metrics:
          if self._landmarks is not None:
            self.backends[m] = self._landmarks.name
      identity_metrics = tuple(m for m in IDENTITY_METRICS if m in wanted)
      if identity_metrics:
        self._identity = self._load(identity_metrics, self._load_descriptor)
        for m in identity_metrics:
          if self._identity is not None:
            self.backends[m] = self._identity.name
    self.names = tuple(m for m in wanted if m not in self.skipped)

  def _load(self, metrics: tuple, loader):
    """loader() or None, recording why `metrics` are skipped."""
    try:
      return loader()
    except MissingWeightsError as e:
      reason = f"weights not available; {e.hint}"
    except ImportError as e:
      reason = f"its module is not available ({type(e).__name__}: {e})"
    for metric in metrics:
      self.skipped[metric] = reason
    return None

  def _load_lpips(self, replicated):
    lpips = _module("lpips")
    model = lpips.load_lpips(self.options.lpips_backbone, net=self.options.lpips_net,
                             heads_path=self.options.lpips_heads)
    if replicated is not None:
      replicate(model, replicated)
    return lpips, model

  def _load_fid(self, replicated):
    fid = _module("fid")
    model = fid.load_fid_inception(self.options.fid_weights)
    if replicated is not None:
      replicate(model, replicated)
    return fid, model

  def _load_landmarker(self):
    path = self.options.face_landmarker or os.environ.get(FACE_LANDMARKER_ENV)
    if not path:
      raise MissingWeightsError("face landmarker", "pass --face-landmarker PATH (MediaPipe "
                                                   f"face_landmarker_v2_with_blendshapes.task) or set "
                                                   f"${FACE_LANDMARKER_ENV}")
    return _module("face_backends").MediaPipeFace(path)

  def _load_descriptor(self):
    return _module("face_backends").DlibFaceDescriptor(self.options.dlib_model)

  def close(self) -> None:
    """Release the face backends (MediaPipe holds a graph runner)."""
    for backend in (self._landmarks, self._identity):
      if backend is not None and hasattr(backend, "close"):
        backend.close()

  # On the accelerator.

  @property
  def uses_device_metrics(self) -> bool:
    return bool(self._fidelity or self._lpips)

  def batch_metrics(self, results, targets) -> dict:
    """{metric: (B,) device array} of the ground-truth batch metrics; uint8 NHWC inputs."""
    out = {}
    if self._fidelity is not None:
      for m in FIDELITY:
        if m in self.names:
          out[m] = getattr(self._fidelity, m)(results, targets)
    if self._lpips is not None:
      module, model = self._lpips
      out["lpips"] = module.lpips_distance(model, results, targets)
    return out

  @property
  def uses_fid(self) -> bool:
    return self._fid is not None

  def fid_features(self, images):
    module, model = self._fid
    return module.fid_features(model, images)

  def frechet_distance(self, features_a: np.ndarray, features_b: np.ndarray) -> float:
    return float(self._fid[0].frechet_distance(features_a, features_b))

  # On the CPU.

  @property
  def uses_faces(self) -> bool:
    return self._landmarks is not None or self._identity is not None

  def _face_image(self, image: np.ndarray) -> np.ndarray:
    return resize_square(np.asarray(image, np.uint8), self.options.face_size)

  def face_reference(self, image: np.ndarray, *, pose: bool = True, identity: bool = True) -> dict:
    """What the per-frame face metrics compare a result with, from one image: landmarks and head pose (`pose`),
    the identity embedding (`identity`); None where no face is found."""
    image = self._face_image(image)
    reference = {}
    if self._landmarks is not None and pose:
      if "akd" in self.names:
        reference["landmarks"] = self._landmarks.landmarks(image)
      if "pose_error" in self.names:
        reference["pose"] = self._landmarks.head_pose(image)
    if self._identity is not None and identity:
      reference["embedding"] = self._identity.embedding(image)
    return reference

  def face_values(self, result: np.ndarray, pose_reference: dict, identity_reference: dict) -> dict:
    """{metric: value or NaN (no face in either image)} for one result frame."""
    face = self.face_reference(result)
    metrics = self._face_metrics
    values = {}

    def compare(name, key, reference, function):
      if name in self.names:
        a, b = reference.get(key), face.get(key)
        values[name] = np.nan if a is None or b is None else float(function(a, b))

    compare("akd", "landmarks", pose_reference, lambda a, b: metrics.akd(a, b))
    compare("pose_error", "pose", pose_reference, lambda a, b: metrics.pose_error(a, b))
    compare("aed", "embedding", identity_reference, lambda a, b: metrics.aed(a, b))
    compare("csim", "embedding", identity_reference, lambda a, b: metrics.csim(a, b))
    return values
