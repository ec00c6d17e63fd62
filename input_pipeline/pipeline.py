"""The MCC training input pipeline (grain) over the TFDS face-clip dataset, plus device transfer and evaluation reads.

Training follows the official loader: an epoch is a random permutation of `repeat * num_identities` items (item i
is identity i % num_identities); each item takes a uniformly random clip of its identity, two frame indices drawn
with replacement and sorted (source <= driving), then a horizontal flip and a time flip (source <-> driving),
each with probability 0.5 and shared by both frames. Batches drop the epoch's remainder.
"""
import dataclasses
import io

import grain
import jax
import numpy as np
from absl import flags
from jax.sharding import NamedSharding, PartitionSpec
from PIL import Image
from input_pipeline.face_dataset import clip_index, open_split, record_features


@dataclasses.dataclass
class TrainPipelineConfig:
  """Where the clips are and how pairs are sampled, augmented and batched.

  repeat: the official dataset_enlarge_ratio (items per identity per epoch). num_epochs: None repeats forever.
  id_sampling: items are identities (official); False makes them clips.
  read_threads: threads (per process) reading and decoding batches.
  """
  data_dir: str
  global_batch_size: int
  seed: int
  split: str = "train"
  repeat: int = 1
  num_epochs: int | None = None
  hflip_prob: float = 0.5
  time_flip_prob: float = 0.5
  image_size: int = 256
  worker_count: int = 0
  worker_buffer_size: int = 2
  id_sampling: bool = True
  read_threads: int = 2


@dataclasses.dataclass(frozen=True)
class ClipIndex:
  """What sampling needs to know of every record of a split (record order of the data source)."""
  clip_ids: tuple[str, ...]
  identities: tuple[str, ...]
  clip_identity: np.ndarray
  num_frames: np.ndarray

  @property
  def identity_clips(self) -> list[np.ndarray]:
    return [np.flatnonzero(self.clip_identity == i) for i in range(len(self.identities))]


def load_clip_index(data_dir, split: str) -> ClipIndex:
  """The split's clip table (stored with the dataset); identities are numbered in sorted order."""
  table = clip_index(data_dir, split)
  identities = tuple(sorted(set(table["identities"])))
  number = {name: i for i, name in enumerate(identities)}
  return ClipIndex(
      clip_ids=tuple(table["clip_ids"]),
      identities=identities,
      clip_identity=np.asarray([number[name] for name in table["identities"]], np.int32),
      num_frames=np.asarray(table["num_frames"], np.int32))


class _LazyClipFrames:
  """A clip's JPEG frames by record, from the split's array_record files, opened on first use in each process;
  only the location is pickled."""

  def __init__(self, data_dir, split: str):
    self.data_dir = str(data_dir)
    self.split = split
    self._records = None

  def __getstate__(self):
    return {"data_dir": self.data_dir, "split": self.split}

  def __setstate__(self, state):
    self.__init__(**state)

  def __getitem__(self, record: int):
    if self._records is None:
      self._records = open_split(self.data_dir, self.split).data_source
    return record_features(self._records[record])["frames"].bytes_list.value


def decode_frame(jpeg: bytes, image_size: int, mirror: bool = False) -> np.ndarray:
  """uint8 (S, S, 3) RGB; bilinear resize only when the stored size differs.

  Mirroring here (in PIL) keeps the array contiguous: stacking numpy's reversed views costs ~10x a copy.
  """
  with Image.open(io.BytesIO(jpeg)) as image:
    if image.mode != "RGB":
      image = image.convert("RGB")
    if image.size != (image_size, image_size):
      image = image.resize((image_size, image_size), Image.BILINEAR)
    if mirror:
      image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(image)


class _PairSampler(grain.transforms.RandomMap):
  """(position, item) -> one augmented source/driving pair, decoding only its two frames."""

  def __init__(self, config: TrainPipelineConfig, index: ClipIndex):
    self._clip_frames = _LazyClipFrames(config.data_dir, config.split)
    self._config = config
    self._clip_identity = index.clip_identity
    self._num_frames = index.num_frames
    self._unit_clips = index.identity_clips if config.id_sampling else None

  def random_map(self, element, rng: np.random.Generator) -> dict:
    position, item = element
    config = self._config
    if self._unit_clips is None:
      clip = item % len(self._clip_identity)
    else:
      clips = self._unit_clips[item % len(self._unit_clips)]
      clip = clips[rng.integers(len(clips))]
    frame_indices = np.sort(rng.integers(self._num_frames[clip], size=2))
    hflip = rng.random() < config.hflip_prob
    time_flip = rng.random() < config.time_flip_prob
    if time_flip:
      frame_indices = frame_indices[::-1]
    jpegs = self._clip_frames[int(clip)]
    source_frame, driving_frame = int(frame_indices[0]), int(frame_indices[1])
    source = decode_frame(jpegs[source_frame], config.image_size, hflip)
    driving = (source if source_frame == driving_frame else
               decode_frame(jpegs[driving_frame], config.image_size, hflip))
    return {
        "source": source,
        "driving": driving,
        "identity_index": np.int32(self._clip_identity[clip]),
        "clip_index": np.int32(clip),
        "frame_indices": frame_indices.astype(np.int32),
        "hflip": np.bool_(hflip),
        "time_flip": np.bool_(time_flip),
        "item_index": np.int64(position),
    }


def _with_position(position: int, item: int) -> tuple[int, int]:
  return position, item


def _process(process_index, process_count) -> tuple[int, int]:
  return (jax.process_index() if process_index is None else process_index,
          jax.process_count() if process_count is None else process_count)


def make_train_dataset(config: TrainPipelineConfig, *, process_index: int | None = None,
                       process_count: int | None = None) -> grain.IterDataset:
  """This process's batches (global_batch_size // process_count pairs each), numpy, uint8 frames.

  `item_index` is epoch * items_per_epoch + the pair's position in that epoch's permutation; sampling depends on it
  and the seed only, so batches do not depend on worker_count, and the processes' global batch is the same for any
  process_count.
  """
  process_index, process_count = _process(process_index, process_count)
  if config.global_batch_size % process_count:
    raise ValueError(f"global_batch_size {config.global_batch_size} is not divisible by the process count "
                     f"{process_count}")
  index = load_clip_index(config.data_dir, config.split)
  units = len(index.identities) if config.id_sampling else len(index.clip_ids)
  items_per_epoch = config.repeat * units
  usable = items_per_epoch - items_per_epoch % config.global_batch_size
  if usable == 0:
    raise ValueError(f"an epoch has {items_per_epoch} items ({units} {'identities' if config.id_sampling else 'clips'}"
                     f" x repeat {config.repeat}), fewer than global_batch_size {config.global_batch_size}")
  dataset = (grain.MapDataset.range(items_per_epoch)
             .shuffle(seed=config.seed)
             .map_with_index(_with_position)
             .random_map(_PairSampler(config, index), seed=config.seed)
             [:usable]
             [process_index::process_count]
             .batch(config.global_batch_size // process_count, drop_remainder=True)
             .repeat(config.num_epochs)
             .to_iter_dataset(grain.ReadOptions(num_threads=config.read_threads,
                                                prefetch_buffer_size=2 * config.read_threads)))
  if config.worker_count > 0:
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()  # grain 0.2.18 reads an absl flag in mp_prefetch (google/grain#1355)
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(
        num_workers=config.worker_count, per_worker_buffer_size=config.worker_buffer_size))
  return dataset


def to_device(batch: dict, mesh: jax.sharding.Mesh, batch_axes=("data",)) -> dict:
  """Assembles the processes' numpy batches into global arrays split along the mesh's batch axes (uint8 stays)."""
  sharding = NamedSharding(mesh, PartitionSpec(tuple(batch_axes)))
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def device_batches(iterator, mesh: jax.sharding.Mesh, batch_axes=("data",)):
  """`to_device` over an iterator of numpy batches."""
  for batch in iterator:
    yield to_device(batch, mesh, batch_axes)


def iterate_clips(data_dir, split: str, *, image_size: int = 256, process_index: int | None = None,
                  process_count: int | None = None, max_frames: int | None = None):
  """Whole clips sorted by clip_id, this process's share ([process_index::process_count]): dicts of clip_id,
  identity, frames uint8 (T, S, S, 3) and fps."""
  process_index, process_count = _process(process_index, process_count)
  index = load_clip_index(data_dir, split)
  source = open_split(data_dir, split)
  for record in sorted(range(len(index.clip_ids)), key=index.clip_ids.__getitem__)[process_index::process_count]:
    example = source[record]
    jpegs = example["frames"][:max_frames]
    yield {
        "clip_id": index.clip_ids[record],
        "identity": index.identities[index.clip_identity[record]],
        "frames": np.stack([decode_frame(jpeg, image_size) for jpeg in jpegs]),
        "fps": float(example["fps"]),
    }
