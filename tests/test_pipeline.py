"""The training input pipeline, device transfer and clip-order evaluation reads, on a small generated dataset."""
import collections
import itertools
import json

import jax
import numpy as np
import pytest

from input_pipeline.clip_store import ClipMeta, ClipStore, decode_jpeg, encode_jpeg
from input_pipeline.face_dataset import build_dataset
from input_pipeline.pipeline import (TrainPipelineConfig, iterate_clips, load_clip_index, make_train_dataset,
                                     to_device)
from mcc_jax.io.images import normalize

SIZE = 32
CLIPS_PER_IDENTITY = (1, 3, 2, 1, 2, 3)
NUM_IDENTITIES = len(CLIPS_PER_IDENTITY)


def generated_frame(clip: int, frame: int) -> np.ndarray:
  """A horizontal ramp (so mirroring shows) with the frame and the clip in the other channels."""
  image = np.zeros((SIZE, SIZE, 3), np.uint8)
  image[..., 0] = np.linspace(0, 255, SIZE, dtype=np.uint8)[None, :]
  image[..., 1] = 25 * frame
  image[..., 2] = 15 * clip
  return image


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
  """(data_dir, {clip_id: decoded stored frames})."""
  root = tmp_path_factory.mktemp("clips")
  store = ClipStore(root / "store")
  stored = {}
  clip = 0
  for identity, count in enumerate(CLIPS_PER_IDENTITY):
    for _ in range(count):
      num_frames = 4 + clip % 5
      jpegs = [encode_jpeg(generated_frame(clip, t)) for t in range(num_frames)]
      meta = ClipMeta(clip_id=f"clip{clip:02d}", identity=f"person{identity}", source_path="generated",
                      num_frames=num_frames, boxes=[[0, 0, SIZE, SIZE]] * num_frames, fps=25.0 + clip,
                      split="train")
      store.write(meta, jpegs)
      stored[meta.clip_id] = np.stack([decode_jpeg(jpeg) for jpeg in jpegs])
      clip += 1
  data_dir = root / "tfds"
  build_dataset(store.root, data_dir)
  return data_dir, stored


def config_for(data_dir, **overrides) -> TrainPipelineConfig:
  values = dict(data_dir=str(data_dir), global_batch_size=2, seed=7, image_size=SIZE, num_epochs=1)
  values.update(overrides)
  return TrainPipelineConfig(**values)


def batches(config, count=None, **process):
  iterator = iter(make_train_dataset(config, **process))
  return list(itertools.islice(iterator, count))


def assert_same_batches(expected, actual):
  assert len(expected) == len(actual)
  for a, b in zip(expected, actual):
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_batch_shapes_and_dtypes(dataset):
  (batch,) = batches(config_for(dataset[0], global_batch_size=4), 1)
  expected = {"source": ((4, SIZE, SIZE, 3), np.uint8), "driving": ((4, SIZE, SIZE, 3), np.uint8),
              "identity_index": ((4,), np.int32), "clip_index": ((4,), np.int32),
              "frame_indices": ((4, 2), np.int32), "hflip": ((4,), np.bool_), "time_flip": ((4,), np.bool_),
              "item_index": ((4,), np.int64)}
  assert {key: (value.shape, value.dtype) for key, value in batch.items()} == expected
  (resized,) = batches(config_for(dataset[0], image_size=16), 1)
  assert resized["source"].shape == (2, 16, 16, 3)


def test_same_seed_same_batches_other_seed_differs(dataset):
  config = config_for(dataset[0], num_epochs=2)
  first = batches(config)
  assert_same_batches(first, batches(config))
  other = batches(config_for(dataset[0], num_epochs=2, seed=8))
  assert any((a["clip_index"] != b["clip_index"]).any() or (a["frame_indices"] != b["frame_indices"]).any()
             for a, b in zip(first, other))


def test_each_epoch_is_a_fresh_permutation(dataset):
  epochs = batches(config_for(dataset[0], global_batch_size=NUM_IDENTITIES, num_epochs=4))
  orders = [tuple(batch["identity_index"]) for batch in epochs]
  assert all(sorted(order) == list(range(NUM_IDENTITIES)) for order in orders)
  assert len(set(orders)) > 1
  np.testing.assert_array_equal(np.concatenate([b["item_index"] for b in epochs]), np.arange(4 * NUM_IDENTITIES))


@pytest.mark.parametrize("repeat", [1, 3])
def test_id_sampling_takes_each_identity_repeat_times_per_epoch(dataset, repeat):
  epoch = batches(config_for(dataset[0], global_batch_size=3, repeat=repeat))
  counts = collections.Counter(np.concatenate([batch["identity_index"] for batch in epoch]).tolist())
  assert counts == {identity: repeat for identity in range(NUM_IDENTITIES)}


def test_clip_sampling_takes_each_clip_once_per_epoch(dataset):
  epoch = batches(config_for(dataset[0], global_batch_size=3, id_sampling=False))
  clips = np.concatenate([batch["clip_index"] for batch in epoch])
  assert sorted(clips.tolist()) == list(range(sum(CLIPS_PER_IDENTITY)))


def test_drop_remainder_of_each_epoch(dataset):
  epochs = batches(config_for(dataset[0], global_batch_size=4, num_epochs=2))
  assert len(epochs) == 2
  assert [batch["item_index"].tolist() for batch in epochs] == [[0, 1, 2, 3], [6, 7, 8, 9]]


def test_process_shards_are_disjoint_and_make_the_global_batches(dataset):
  config = config_for(dataset[0], global_batch_size=4, repeat=3)
  whole = batches(config, process_index=0, process_count=1)
  shards = [batches(config, process_index=p, process_count=2) for p in range(2)]
  items = [np.concatenate([batch["item_index"] for batch in shard]) for shard in shards]
  assert not set(items[0].tolist()) & set(items[1].tolist())
  assert sorted(np.concatenate(items).tolist()) == list(range(16))
  for global_batch, *parts in zip(whole, *shards):
    order = np.argsort(np.concatenate([part["item_index"] for part in parts]))
    for key in global_batch:
      np.testing.assert_array_equal(global_batch[key], np.concatenate([part[key] for part in parts])[order])


def check_pairs(epoch, data_dir, stored, *, hflip, time_flip):
  clip_ids = load_clip_index(data_dir, "train").clip_ids
  identities = load_clip_index(data_dir, "train").identities
  for batch in epoch:
    assert (batch["hflip"] == hflip).all() and (batch["time_flip"] == time_flip).all()
    later_first = batch["frame_indices"][:, 0] >= batch["frame_indices"][:, 1]
    earlier_first = batch["frame_indices"][:, 0] <= batch["frame_indices"][:, 1]
    assert (later_first if time_flip else earlier_first).all()
    for i, (clip, (source_frame, driving_frame)) in enumerate(zip(batch["clip_index"], batch["frame_indices"])):
      frames = stored[clip_ids[clip]]
      if hflip:
        frames = frames[:, :, ::-1]
      np.testing.assert_array_equal(batch["source"][i], frames[source_frame])
      np.testing.assert_array_equal(batch["driving"][i], frames[driving_frame])
      assert identities[batch["identity_index"][i]] == f"person{_identity_of(clip_ids[clip])}"


def _identity_of(clip_id: str) -> int:
  clip = int(clip_id[4:])
  return int(np.searchsorted(np.cumsum(CLIPS_PER_IDENTITY), clip, side="right"))


@pytest.mark.parametrize("probability", [0.0, 1.0])
def test_flips_follow_their_probabilities_and_pairs_share_a_clip(dataset, probability):
  data_dir, stored = dataset
  epoch = batches(config_for(data_dir, repeat=4, hflip_prob=probability, time_flip_prob=probability))
  check_pairs(epoch, data_dir, stored, hflip=bool(probability), time_flip=bool(probability))


def test_default_flips_are_mixed(dataset):
  epoch = batches(config_for(dataset[0], repeat=10))
  for key in ("hflip", "time_flip"):
    share = np.concatenate([batch[key] for batch in epoch]).mean()
    assert 0.25 < share < 0.75, key


def test_resume_mid_epoch_from_a_saved_state(dataset):
  config = config_for(dataset[0], repeat=4, num_epochs=2)
  uninterrupted = batches(config)
  iterator = iter(make_train_dataset(config))
  for _ in range(5):
    next(iterator)
  state = json.loads(json.dumps(iterator.get_state()))
  resumed = iter(make_train_dataset(config))
  resumed.set_state(state)
  assert_same_batches(uninterrupted[5:], list(resumed))


def test_two_workers_give_the_same_batches_and_resume(dataset):
  config = config_for(dataset[0], repeat=4, num_epochs=2)
  reference = batches(config)
  with_workers = config_for(dataset[0], repeat=4, num_epochs=2, worker_count=2)
  iterator = iter(make_train_dataset(with_workers))
  head = list(itertools.islice(iterator, 5))
  state = json.loads(json.dumps(iterator.get_state()))
  iterator.close()
  assert_same_batches(reference[:5], head)
  resumed = iter(make_train_dataset(with_workers))
  resumed.set_state(state)
  assert_same_batches(reference[5:], list(resumed))
  resumed.close()


def test_to_device_shards_the_batch_and_normalize_maps_to_unit_range(dataset):
  mesh = jax.make_mesh((jax.device_count(),), ("data",))
  (batch,) = batches(config_for(dataset[0], global_batch_size=jax.device_count(), repeat=4), 1)
  on_device = to_device(batch, mesh)
  assert on_device["source"].dtype == np.uint8 and on_device["source"].shape == batch["source"].shape
  assert len(on_device["source"].sharding.device_set) == jax.device_count()
  np.testing.assert_array_equal(np.asarray(on_device["item_index"]), batch["item_index"])
  images = np.asarray(jax.jit(normalize)(on_device["source"]))
  assert images.dtype == np.float32 and images.min() >= -1 and images.max() <= 1
  np.testing.assert_allclose(images, batch["source"] / 127.5 - 1, atol=1e-6)


def test_iterate_clips_yields_every_clip_in_order_with_all_frames(dataset):
  data_dir, stored = dataset
  clips = list(iterate_clips(data_dir, "train", image_size=SIZE))
  assert [clip["clip_id"] for clip in clips] == sorted(stored)
  for clip in clips:
    np.testing.assert_array_equal(clip["frames"], stored[clip["clip_id"]])
    assert clip["identity"] == f"person{_identity_of(clip['clip_id'])}"
    assert clip["fps"] == 25.0 + int(clip["clip_id"][4:])
  shards = [[clip["clip_id"] for clip in iterate_clips(data_dir, "train", image_size=SIZE, process_index=p,
                                                       process_count=2)] for p in range(2)]
  assert sorted(shards[0] + shards[1]) == sorted(stored) and not set(shards[0]) & set(shards[1])
  assert all(shard == sorted(shard) for shard in shards)
  short = next(iterate_clips(data_dir, "train", image_size=16, max_frames=2))
  assert short["frames"].shape == (2, 16, 16, 3)


def test_clear_errors(dataset, tmp_path):
  with pytest.raises(FileNotFoundError, match="no mcc_face_clips dataset"):
    make_train_dataset(config_for(tmp_path / "missing"))
  with pytest.raises(FileNotFoundError, match="no mcc_face_clips dataset"):
    next(iterate_clips(tmp_path / "missing", "train"))
  with pytest.raises(ValueError, match="not divisible by the process count 2"):
    make_train_dataset(config_for(dataset[0], global_batch_size=5), process_index=0, process_count=2)
  with pytest.raises(ValueError, match="fewer than global_batch_size"):
    make_train_dataset(config_for(dataset[0], global_batch_size=8))
