"""Preparing face clips: real videos cropped around the face, bad files skipped with reasons, resume, vox-png."""
import json
import pathlib
import shutil
import types

import av
import numpy as np
import pytest
from PIL import Image

from input_pipeline import face_crop, prepare
from input_pipeline.clip_store import ClipStore, decode_jpeg
from input_pipeline.face_dataset import open_split

REAL_MEDIA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "real_media"
VIDEOS = REAL_MEDIA / "videos"
SIZE = 128
FAST = ["--size", str(SIZE), "--max-frames", "60"]


def _needs_videos():
  if not (VIDEOS / "fomm_08.mp4").is_file():
    pytest.skip(f"real clips not found at {VIDEOS} (they live in ../shared/real_media/videos)")


def _write_video(path: pathlib.Path, frames, rotation: int = 0) -> None:
  """libx264 or mpeg4, whichever this PyAV build has; `rotation`: display rotation, counter-clockwise."""
  height, width = frames[0].shape[:2]
  for codec in ("libx264", "mpeg4"):
    try:
      with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        if rotation:
          stream.set_display_rotation(rotation)
        for frame in frames:
          container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
      return
    except (av.error.FFmpegError, ValueError):
      continue
  pytest.skip("this PyAV build can encode neither libx264 nor mpeg4")


def _noise_frames(count: int = 40, side: int = 128) -> list[np.ndarray]:
  rng = np.random.default_rng(0)
  ramp = np.linspace(0, 255, side, dtype=np.float32)
  gradients = [(ramp[None, :, None] + ramp[:, None, None] * [0.5, 1, 0] + 9 * t) % 256 for t in range(count)]
  return [np.clip(g + rng.normal(0, 40, g.shape), 0, 255).astype(np.uint8) for g in gradients]


def _real_frames(name: str, count: int) -> list[np.ndarray]:
  with av.open(str(VIDEOS / name)) as container:
    return [frame.to_ndarray(format="rgb24") for _, frame in zip(range(count), container.decode(video=0))]


def _face_in(frame: np.ndarray):
  """(side, centre) of the largest face dlib finds, as fractions of the frame width, or None."""
  boxes = face_crop.FaceDetector(min_face=16)(frame)
  if not len(boxes):
    return None
  x0, y0, x1, y1 = boxes[0]
  return max(x1 - x0, y1 - y0) / frame.shape[1], ((x0 + x1) / 2 / frame.shape[1], (y0 + y1) / 2 / frame.shape[0])


def _run(capsys, *argv) -> tuple[int, str]:
  code = prepare.main([str(a) for a in argv])
  return code, capsys.readouterr().out


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
  """Two real clips (one VoxCeleb-named, one in a person folder) and three bad files, prepared once."""
  _needs_videos()
  root = tmp_path_factory.mktemp("prepare")
  source = root / "input"
  (source / "person_a").mkdir(parents=True)
  shutil.copy(VIDEOS / "dagan_driving.mp4", source / "id10001#dagan_driving.mp4")
  shutil.copy(VIDEOS / "fomm_08.mp4", source / "person_a" / "fomm_08.mp4")
  data = (VIDEOS / "liveportrait_d20.mp4").read_bytes()  # moov atom first: decoding fails part-way
  (source / "truncated.mp4").write_bytes(data[:int(len(data) * 0.3)])
  (source / "notes.mp4").write_text("not a video\n" * 20)
  _write_video(source / "noise.mp4", _noise_frames())
  out = root / "out"
  code = prepare.main(["--input", str(source), "--out", str(out), "--workers", "2", *FAST])
  return types.SimpleNamespace(input=source, out=out, code=code, store=ClipStore(out / "clips"),
                               report=json.loads((out / "report.json").read_text()))


def test_real_clips_are_face_crops(mixed):
  assert mixed.code == 0
  clip_ids = mixed.store.clip_ids()
  assert {mixed.store.read_meta(c).identity for c in clip_ids} == {"id10001", "person_a"}
  assert "id10001#dagan_driving#000000#000059" in clip_ids
  for clip_id in clip_ids:
    meta = mixed.store.read_meta(clip_id)
    frames = mixed.store.read_frames(clip_id)
    assert meta.num_frames == len(frames) >= 32 and meta.split is None
    assert len(meta.boxes) == meta.num_frames and meta.fps > 0
    for index in (0, len(frames) // 2, len(frames) - 1):
      frame = decode_jpeg(frames[index])
      assert frame.shape == (SIZE, SIZE, 3)
      face = _face_in(frame)
      assert face is not None, f"{clip_id} frame {index}: no face in the crop"
      side, (cx, cy) = face
      assert 0.35 < side < 0.9 and 0.25 < cx < 0.75 and 0.2 < cy < 0.8, (clip_id, index, face)


def test_bad_files_are_skipped_with_reasons(mixed):
  skipped = {category: [v["video"] for v in videos] for category, videos in mixed.report["skipped_by_reason"].items()}
  assert skipped == {"unreadable": ["notes.mp4"], "corrupt": ["truncated.mp4"], "no face": ["noise.mp4"]}
  corrupt = mixed.report["skipped_by_reason"]["corrupt"][0]["reason"]
  assert "decoded 45 frames before error" in corrupt


def test_report_counts(mixed):
  report, store = mixed.report, mixed.store
  metas = [store.read_meta(c) for c in store.clip_ids()]
  assert report["videos_seen"] == 5 and report["videos_skipped"] == 3 and report["videos_with_clips"] == 2
  assert report["clips_written"] == len(metas) == report["dataset"]["clips"]
  assert report["frames_written"] == sum(m.num_frames for m in metas) == 120
  assert sum(report["dataset"]["splits"].values()) == len(metas)


def test_dataset_opens_and_frames_decode(mixed):
  for split, count in mixed.report["dataset"]["splits"].items():
    source = open_split(mixed.out / "data", split)
    assert len(source) == count
    for i in range(len(source)):
      example = source[i]
      assert example["boxes"].shape == (example["num_frames"], 4)
      assert decode_jpeg(example["frames"][-1]).shape == (SIZE, SIZE, 3)


def test_rerun_skips_done_videos_and_redoes_half_done_ones(mixed, capsys):
  kept = mixed.store.clip_dir("id10001#dagan_driving#000000#000059") / "meta.json"
  kept_mtime = kept.stat().st_mtime_ns
  half_done = next(c for c in mixed.store.clip_ids() if c.startswith("person_a#"))
  (mixed.store.clip_dir(half_done) / "meta.json").unlink()
  record = next(p for p in (mixed.out / "videos_done").iterdir() if p.name.startswith("person_a_fomm_08"))
  record.unlink()

  code, out = _run(capsys, "--input", mixed.input, "--out", mixed.out, "--workers", "1", *FAST)
  report = json.loads((mixed.out / "report.json").read_text())
  assert code == 0 and "4 already done" in out
  assert report["videos_already_done"] == 4 and report["videos_processed_now"] == 1
  assert mixed.store.has(half_done) and kept.stat().st_mtime_ns == kept_mtime
  assert report["clips_written"] == 2 and report["dataset"]["clips"] == 2

  code, out = _run(capsys, "--input", mixed.input, "--out", mixed.out, "--workers", "1", "--retry-failed", *FAST)
  report = json.loads((mixed.out / "report.json").read_text())
  assert code == 0 and report["videos_processed_now"] == 3 and report["videos_skipped"] == 3
  assert kept.stat().st_mtime_ns == kept_mtime


def test_rerun_with_other_crop_settings_is_refused(mixed, capsys):
  assert prepare.main(["--input", str(mixed.input), "--out", str(mixed.out), "--size", "64"]) == 2
  assert "use the same settings" in capsys.readouterr().err


def test_vox_png_layout_is_imported_as_is(tmp_path, capsys):
  crops = sorted((REAL_MEDIA / "crops256").glob("*.png"))[:4]
  images = [np.asarray(Image.open(p).convert("RGB")) for p in crops] or [
      np.random.default_rng(i).integers(0, 256, (256, 256, 3), dtype=np.uint8) for i in range(4)]
  clips = {"train": ["id10001#aaa#000001#000004.mp4", "id10002#bbb#000010#000013.mp4", "plain_name"],
           "test": ["id10003#ccc#000005#000008.mp4"]}
  for split, names in clips.items():
    for name in names:
      (tmp_path / "vox" / split / name).mkdir(parents=True)
      for i, image in enumerate(images[:3]):
        Image.fromarray(image).save(tmp_path / "vox" / split / name / f"{i:07d}.png")

  code, out = _run(capsys, "--input", tmp_path / "vox", "--out", tmp_path / "out", "--workers", "1",
                   "--size", SIZE)
  assert code == 0, out
  store = ClipStore(tmp_path / "out" / "clips")
  metas = {m.clip_id: m for m in map(store.read_meta, store.clip_ids())}
  assert sorted(metas) == sorted(n for names in clips.values() for n in names)
  assert {(m.split, m.identity) for m in metas.values()} == {
      ("train", "id10001"), ("train", "id10002"), ("train", "plain_name"), ("test", "id10003")}
  assert all(m.num_frames == 3 and m.boxes[0] == [0, 0, 256, 256] for m in metas.values())
  test_split = open_split(tmp_path / "out" / "data", "test")
  assert len(test_split) == 1 and len(open_split(tmp_path / "out" / "data", "train")) == 3
  assert test_split[0]["identity"] == b"id10003"
  assert decode_jpeg(test_split[0]["frames"][0]).shape == (SIZE, SIZE, 3)


def test_frame_folders_are_cropped_like_videos(tmp_path, capsys):
  _needs_videos()
  folder = tmp_path / "frames" / "person_b" / "take1"
  folder.mkdir(parents=True)
  for i, frame in enumerate(_real_frames("fomm_04.mp4", 40)):
    Image.fromarray(frame).save(folder / f"{i}.png")  # unpadded numbers: name order must still be 0, 1, ..., 39

  code, out = _run(capsys, "--input", tmp_path / "frames", "--out", tmp_path / "out", "--workers", "1",
                   "--size", SIZE, "--layout", "frames", "--fps", 30)
  assert code == 0, out
  store = ClipStore(tmp_path / "out" / "clips")
  assert store.clip_ids() == ["person_b#take1#000000#000039"]
  meta = store.read_meta("person_b#take1#000000#000039")
  assert meta.identity == "person_b" and meta.fps == 30 and meta.num_frames == 40
  assert _face_in(decode_jpeg(store.read_frames(meta.clip_id)[39])) is not None


def test_phone_video_is_turned_upright(tmp_path, capsys):
  """A sideways-stored video with a display rotation (as phones write) is cropped upright."""
  _needs_videos()
  upright = [frame[:, 16:] for frame in _real_frames("fomm_08.mp4", 40)]  # 256 high, 240 wide
  (tmp_path / "in").mkdir()
  _write_video(tmp_path / "in" / "phone.mp4", [np.rot90(f, -1) for f in upright], rotation=90)
  code, out = _run(capsys, "--input", tmp_path / "in", "--out", tmp_path / "out", "--workers", "1", "--size", SIZE)
  assert code == 0, out
  record = json.loads(next((tmp_path / "out" / "videos_done").iterdir()).read_text())
  assert record["status"] == "done" and record["frame_size"] == [240, 256]
  store = ClipStore(tmp_path / "out" / "clips")
  side, _ = _face_in(decode_jpeg(store.read_frames(record["clips"][0])[0]))
  assert side > 0.35


def test_missing_input_and_empty_input(tmp_path, capsys):
  assert prepare.main(["--input", str(tmp_path / "absent"), "--out", str(tmp_path / "out")]) == 2
  assert "does not exist" in capsys.readouterr().err
  (tmp_path / "empty").mkdir()
  assert prepare.main(["--input", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 1
  assert "no videos" in capsys.readouterr().err


def test_identity_rules():
  assert prepare.identity_and_key(["id10001#abc#000001#000100"]) == ("id10001", "abc#000001#000100")
  assert prepare.identity_and_key(["id00012", "21Uxsk56VDQ", "00001"]) == ("id00012", "21Uxsk56VDQ/00001")
  assert prepare.identity_and_key(["talk"]) == ("talk", "talk")


def _still_face(x0, y0, side=100):
  return np.array([[x0, y0, x0 + side, y0 + side]], np.float32)


def test_chunks_split_where_the_face_jumps_or_is_lost():
  settings = face_crop.CropSettings(min_frames=32, min_face=64)
  detections = {}
  for t in [*range(0, 200, 5), 199]:
    if 50 <= t < 65:
      detections[t] = np.zeros((0, 4), np.float32)  # lost for 15 frames
    elif t < 160:
      detections[t] = _still_face(200 + t * 0.2, 100)  # drifting slowly: same chunk
    elif t < 180:
      detections[t] = _still_face(600, 100)  # jumped: new chunk, 20 frames: too short
    else:
      detections[t] = _still_face(600, 100, side=40)  # too small
  boxes = face_crop.track(detections, 200, settings)
  np.testing.assert_allclose(boxes[2], [200.4, 100, 300.4, 200], rtol=1e-5)  # interpolated
  chunks = face_crop.plan_chunks(boxes, (720, 1280), settings)
  assert [(c.start, c.stop, c.reason) for c in chunks] == [
      (0, 48, None), (63, 158, None), (158, 178, "too short"), (178, 200, "face too small")]
  x0, y0, x1, y1 = chunks[1].square
  assert x1 - x0 == y1 - y0 == 180


def test_crop_square_shifts_inside_or_pads():
  frame_size = (100, 300)  # height, width
  x0, y0, x1, y1 = face_crop.crop_square(np.array([0, 20, 50, 70]), frame_size, scale=1.8)
  assert (x0, x1) == (0, 90) and (y0, y1) == (0, 90)  # fits: shifted into the frame
  square = face_crop.crop_square(np.array([100, 0, 200, 100]), frame_size, scale=1.8)
  assert square == (60, -40, 240, 140)  # taller than the frame: centred on the face, padded
  frame = np.full((100, 300, 3), 200, np.uint8)
  edge = face_crop.crop_and_resize(frame, square, 90)
  black = face_crop.crop_and_resize(frame, square, 90, pad="black")
  assert edge.shape == black.shape == (90, 90, 3)
  assert (edge == 200).all() and black[0].max() == 0 and black[45, 45, 0] == 200
