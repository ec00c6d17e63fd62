"""The TFDS dataset of face clips (array_record, readable with no TensorFlow) built from a ClipStore.

One example per clip: `frames` (JPEG bytes, decoded by the input pipeline only for the frames it uses),
`identity`, `clip_id`, `source_path`, `boxes` (T, 4), `num_frames`, `fps`, `motion` (T, M; M = 0 for real clips).
Text fields come back from the data source as bytes.
Splits are by identity: no identity is in both train and test.
"""
import hashlib
import json
import pathlib
import shutil

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.proto import tf_example_pb2

from input_pipeline.clip_store import ClipStore

DATASET_NAME = "mcc_face_clips"
_SCAN_CHUNK = 64


def identity_split(identity: str, test_fraction: float) -> str:
  """'test' for a stable pseudo-random `test_fraction` of identities, else 'train'."""
  digest = int(hashlib.sha256(identity.encode()).hexdigest()[:8], 16)
  return "test" if digest / 0xFFFFFFFF < test_fraction else "train"


class MccFaceClips(tfds.core.GeneratorBasedBuilder):
  """Built by `build_dataset` from a ClipStore; read with `open_split`."""

  VERSION = tfds.core.Version("1.0.0")

  def __init__(self, *, store_root=None, test_fraction: float = 0.1, **kwargs):
    self._store = ClipStore(store_root) if store_root is not None else None
    self._test_fraction = test_fraction
    super().__init__(file_format="array_record", **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "frames": tfds.features.Sequence(tfds.features.Tensor(shape=(), dtype=np.object_)),
        "identity": tfds.features.Text(),
        "clip_id": tfds.features.Text(),
        "source_path": tfds.features.Text(),
        "boxes": tfds.features.Tensor(shape=(None, 4), dtype=np.float32),
        "num_frames": tfds.features.Scalar(dtype=np.int32),
        "fps": tfds.features.Scalar(dtype=np.float32),
        "motion": tfds.features.Tensor(shape=(None, None), dtype=np.float32, encoding="zlib"),
    }), description=__doc__)

  def _split_of(self, clip_id: str) -> str:
    meta = self._store.read_meta(clip_id)
    return meta.split or identity_split(meta.identity, self._test_fraction)

  def _split_generators(self, dl_manager):
    if self._store is None:
      raise ValueError("building needs store_root (a ClipStore filled by prepare or synthetic)")
    by_split = {}
    for clip_id in self._store.clip_ids():
      by_split.setdefault(self._split_of(clip_id), []).append(clip_id)
    return {split: self._generate_examples(ids) for split, ids in sorted(by_split.items())}

  def _generate_examples(self, clip_ids):
    for clip_id in clip_ids:
      meta = self._store.read_meta(clip_id)
      motion = np.asarray(meta.motion, np.float32).reshape(meta.num_frames, -1)
      yield clip_id, {
          "frames": self._store.read_frames(clip_id),
          "identity": meta.identity,
          "clip_id": meta.clip_id,
          "source_path": meta.source_path,
          "boxes": np.asarray(meta.boxes, np.float32).reshape(meta.num_frames, 4),
          "num_frames": meta.num_frames,
          "fps": meta.fps,
          "motion": motion,
      }


def build_dataset(store_root, data_dir, *, test_fraction: float = 0.1) -> pathlib.Path:
  """(Re)write the TFDS dataset from every done clip of the store; returns the dataset's version directory.

  An existing dataset under `data_dir` is replaced (TFDS would otherwise reuse it and miss new clips).
  """
  shutil.rmtree(pathlib.Path(data_dir) / DATASET_NAME, ignore_errors=True)
  builder = MccFaceClips(store_root=store_root, test_fraction=test_fraction, data_dir=str(data_dir))
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(verify_ssl=False))
  path = pathlib.Path(builder.data_dir)
  for split in builder.info.splits:
    index = _scan_clip_index(builder.as_data_source(split).data_source)
    (path / _index_file(split)).write_text(json.dumps(index))
  return path


def dataset_dir(data_dir) -> pathlib.Path:
  """The version directory (holding dataset_info.json) under a data_dir, or the path itself if it is one."""
  path = pathlib.Path(data_dir)
  if (path / "dataset_info.json").is_file():
    return path
  candidates = sorted(path.glob(f"{DATASET_NAME}/*/dataset_info.json"))
  if not candidates:
    raise FileNotFoundError(f"no {DATASET_NAME} dataset under {path} (build one with input_pipeline.prepare or "
                            "input_pipeline.synthetic)")
  return candidates[-1].parent


def open_split(data_dir, split: str):
  """Random-access data source of one split (no TensorFlow needed)."""
  builder = tfds.builder_from_directory(str(dataset_dir(data_dir)))
  if split not in builder.info.splits:
    raise KeyError(f"split {split!r} not in {dataset_dir(data_dir)}; it has {sorted(builder.info.splits)}")
  return builder.as_data_source(split)


def record_features(record: bytes):
  """The tf.train.Example features of a raw record, without TFDS's per-feature decoding (whose cost grows with
  the clip's frame count)."""
  return tf_example_pb2.Example.FromString(record).features.feature


def _index_file(split: str) -> str:
  return f"clip_index.{split}.json"


def _scan_clip_index(records) -> dict:
  index = {"clip_ids": [], "identities": [], "num_frames": []}
  for start in range(0, len(records), _SCAN_CHUNK):
    for record in records.__getitems__(range(start, min(start + _SCAN_CHUNK, len(records)))):
      features = record_features(record)
      index["clip_ids"].append(features["clip_id"].bytes_list.value[0].decode())
      index["identities"].append(features["identity"].bytes_list.value[0].decode())
      index["num_frames"].append(len(features["frames"].bytes_list.value))
  return index


def clip_index(data_dir, split: str) -> dict:
  """clip_ids, identities and num_frames of every record of a split, in record order.

  Written next to the dataset when it is built; datasets without it are scanned (one read of every record).
  """
  path = dataset_dir(data_dir) / _index_file(split)
  if path.is_file():
    return json.loads(path.read_text())
  return _scan_clip_index(open_split(data_dir, split).data_source)
