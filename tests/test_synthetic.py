"""The synthetic talking-face generator: determinism, motion, rendering and the dataset it writes."""
import numpy as np
import pytest

from input_pipeline.clip_store import ClipStore, decode_jpeg
from input_pipeline.face_dataset import open_split
from input_pipeline.synthetic import (MOTION_NAMES, clip_seeds, generate_clip, main, make_identity, render_frame,
                                      write_synthetic_dataset)

COLUMN = {name: i for i, name in enumerate(MOTION_NAMES)}
REST = dict(dx=0.0, dy=0.0, roll=0.0, yaw=0.0, scale=1.0, eye_open=1.0, mouth_open=0.0)


def _pose(**changes):
  return [{**REST, **changes}[name] for name in MOTION_NAMES]


def _mean_abs_diff(a, b):
  return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def test_clip_shapes_and_dtypes():
  frames, motion, names, boxes = generate_clip(3, 1, num_frames=5, size=64)
  assert frames.shape == (5, 64, 64, 3) and frames.dtype == np.uint8
  assert motion.shape == (5, len(MOTION_NAMES)) and motion.dtype == np.float32
  assert list(names) == list(MOTION_NAMES)
  assert boxes.shape == (5, 4) and boxes.dtype == np.float32
  assert np.all(boxes[:, 2:] > boxes[:, :2])
  np.testing.assert_allclose(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1], rtol=1e-5)
  assert frames.std() > 20


def test_deterministic_for_seeds():
  first = generate_clip(5, 2, num_frames=4, size=48)
  again = generate_clip(5, 2, num_frames=4, size=48)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  other_clip = generate_clip(5, 3, num_frames=4, size=48)
  other_identity = generate_clip(6, 2, num_frames=4, size=48)
  assert not np.array_equal(first[1], other_clip[1])
  assert _mean_abs_diff(first[0][0], other_identity[0][0]) > 10


def test_identities_differ():
  looks = [make_identity(seed) for seed in range(8)]
  assert len({look.skin for look in looks}) == 8
  assert len({look.face_width for look in looks}) == 8
  assert len({look.hair_style for look in looks}) > 1


@pytest.mark.parametrize("clip_seed", [0, 1, 2, 3])
def test_motion_is_smooth_and_varies(clip_seed):
  _, motion, _, _ = generate_clip(1, clip_seed, num_frames=64, size=16)
  step = np.abs(np.diff(motion, axis=0)).max(axis=0)
  limits = dict(dx=0.013, dy=0.008, roll=0.031, yaw=0.076, scale=0.016, mouth_open=0.5)
  for name, limit in limits.items():
    assert step[COLUMN[name]] < limit, name
  mouth = motion[:32, COLUMN["mouth_open"]]
  assert mouth.max() > 0.4 and mouth.min() < 0.1
  assert np.sum(np.diff(np.sign(np.diff(mouth))) != 0) >= 4
  eye = motion[:, COLUMN["eye_open"]]
  assert eye.min() < 0.05 and np.median(eye) > 0.8
  assert np.sum(eye < 0.1) <= 6
  for name in ("dx", "dy", "roll", "yaw", "scale"):
    assert np.ptp(motion[:, COLUMN[name]]) > 1e-3, name


def test_frame_difference_grows_with_displacement():
  identity = make_identity(4)
  rest, rest_box = render_frame(identity, _pose(), 64)
  diffs = []
  for dx in (0.01, 0.03, 0.06, 0.1):
    moved, box = render_frame(identity, _pose(dx=dx), 64)
    np.testing.assert_allclose(box - rest_box, [dx * 64, 0, dx * 64, 0], atol=1e-3)
    diffs.append(_mean_abs_diff(moved, rest))
  assert all(a < b for a, b in zip(diffs, diffs[1:])), diffs
  assert diffs[0] > 0.3


@pytest.mark.parametrize("change, rows", [(dict(mouth_open=1.0), (0.55, 1.1)), (dict(eye_open=0.0), (0.3, 0.5))])
def test_face_parts_change_where_motion_says(change, rows):
  """Opening the mouth changes the lower face, closing the eyes the upper face, and not the background."""
  identity = make_identity(2)
  rest, box = render_frame(identity, _pose(), 128)
  changed, _ = render_frame(identity, _pose(**change), 128)
  diff = np.abs(changed.astype(np.float64) - rest.astype(np.float64)).sum(-1)
  x0, y0, x1, y1 = box.round().astype(int)
  inside = diff[y0 + int(rows[0] * (y1 - y0)):y0 + int(rows[1] * (y1 - y0)), x0:x1].sum()
  assert inside > 0.8 * diff.sum() > 0
  assert diff[:, :x0].sum() == 0


def test_clip_frame_changes_follow_motion():
  frames, motion, _, _ = generate_clip(7, 4, num_frames=48, size=64)
  head = motion[:, [COLUMN["dx"], COLUMN["dy"]]] * 64
  displacement = np.linalg.norm(head - head[0], axis=1)
  change = np.array([_mean_abs_diff(frame, frames[0]) for frame in frames])
  assert np.corrcoef(displacement, change)[0, 1] > 0.5
  assert np.all(change[1:] > 0)


def test_dataset_writes_opens_and_round_trips(tmp_path, capsys):
  main(["--out", str(tmp_path), "--identities", "3", "--clips-per-identity", "2", "--frames", "4", "--size", "32",
        "--seed", "1"])
  printed = capsys.readouterr().out
  assert "train: 4 clips, 2 identities" in printed and "test: 2 clips, 1 identities" in printed
  data_dir = write_synthetic_dataset(tmp_path, identities=3, clips_per_identity=2, frames_per_clip=4, size=32, seed=1)
  assert str(data_dir) in printed
  identities = {}
  for split in ("train", "test"):
    source = open_split(data_dir, split)
    identities[split] = {source[i]["identity"] for i in range(len(source))}
    for i in range(len(source)):
      example = source[i]
      assert example["num_frames"] == 4 and len(example["frames"]) == 4
      assert decode_jpeg(example["frames"][0]).shape == (32, 32, 3)
      assert example["motion"].shape == (4, len(MOTION_NAMES))
  assert identities == {"train": {b"synth000", b"synth001"}, "test": {b"synth002"}}

  store = ClipStore(tmp_path / "clips")
  meta = store.read_meta("synth002#clip01")
  assert meta.split == "test" and meta.source_path == "synthetic" and meta.motion_names == list(MOTION_NAMES)
  source = open_split(data_dir, "test")
  example = next(source[i] for i in range(len(source)) if source[i]["clip_id"] == b"synth002#clip01")
  np.testing.assert_array_equal(example["motion"], np.asarray(meta.motion, np.float32))
  np.testing.assert_array_equal(example["boxes"], np.asarray(meta.boxes, np.float32))
  frames, motion, _, boxes = generate_clip(*clip_seeds(1, 2, 1), num_frames=4, size=32)
  np.testing.assert_array_equal(example["motion"], motion)
  np.testing.assert_array_equal(example["boxes"], boxes)
  assert _mean_abs_diff(decode_jpeg(example["frames"][3]), frames[3]) < 8


def test_dataset_is_resumable_and_refuses_other_settings(tmp_path):
  settings = dict(identities=2, clips_per_identity=1, frames_per_clip=2, size=16)
  write_synthetic_dataset(tmp_path, **settings)
  meta = tmp_path / "clips" / "synth000#clip00" / "meta.json"
  written = meta.stat().st_mtime_ns
  (tmp_path / "clips" / "synth001#clip00" / "meta.json").unlink()
  data_dir = write_synthetic_dataset(tmp_path, **settings)
  assert meta.stat().st_mtime_ns == written
  assert len(open_split(data_dir, "train")) == 1 and len(open_split(data_dir, "test")) == 1
  with pytest.raises(ValueError, match="made with"):
    write_synthetic_dataset(tmp_path, **{**settings, "size": 32})
  with pytest.raises(ValueError, match="at least 2 identities"):
    write_synthetic_dataset(tmp_path / "one", identities=1)
  assert not (tmp_path / "one").exists()


def test_dlib_finds_the_face():
  dlib = pytest.importorskip("dlib")
  detector = dlib.get_frontal_face_detector()
  frames, _, _, boxes = generate_clip(11, 0, num_frames=12, size=256)
  found = 0
  for frame, box in zip(frames, boxes):
    detections = detector(frame, 0)
    if detections:
      found += 1
      center = np.array([detections[0].center().x, detections[0].center().y])
      assert np.all(np.abs(center - (box[:2] + box[2:]) / 2) < 0.25 * (box[2] - box[0]))
  assert found >= 10
