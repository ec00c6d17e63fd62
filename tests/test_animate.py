"""The animate command on real faces: cropping, relative and absolute motion, audio, best frame, clear errors."""
import pathlib

import av
import numpy as np
import pytest
from PIL import Image

from configs import tiny
from conftest import REAL_MEDIA
from mcc_jax.animate import find_best_frame, main
from mcc_jax.io.video import read_video, write_video
from mcc_jax.model_checkpoint import save_model
from mcc_jax.models.factory import build_mcc

SIZE = 64
SOURCE = REAL_MEDIA / "images" / "liveportrait_d19.jpg"  # 720x720, face not centred-cropped
DRIVING_WITH_AUDIO = REAL_MEDIA / "videos" / "liveportrait_d12.mp4"  # 512x512 with AAC audio
CROPPED_CLIP = REAL_MEDIA / "crops256" / "fomm_04.mp4"  # a 256x256 face crop, no audio
LANDMARKER = REAL_MEDIA.parent / "reference" / "models" / "face_landmarker_v2_with_blendshapes.task"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> pathlib.Path:
  config = tiny.get_config().model
  return save_model(build_mcc(config, seed=5), config, tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def media():
  missing = [p for p in (SOURCE, DRIVING_WITH_AUDIO, CROPPED_CLIP) if not p.is_file()]
  if missing:
    pytest.skip(f"real media not found: {missing} (it lives in ../shared/real_media)")


def streams(path) -> dict:
  with av.open(str(path)) as container:
    video = container.streams.video[0]
    frames = sum(1 for _ in container.decode(video))  # playable: every frame decodes
    info = {"frames": frames, "size": (video.width, video.height), "fps": float(video.average_rate)}
  with av.open(str(path)) as container:
    if container.streams.audio:
      audio = container.streams.audio[0]
      info["audio"] = (audio.codec_context.name, float(audio.duration * audio.time_base))
  return info


def test_relative_motion_with_face_crop_and_audio(checkpoint, media, tmp_path):
  out, visual = tmp_path / "out.mp4", tmp_path / "visual.mp4"
  assert main(["--checkpoint", str(checkpoint), "--source", str(SOURCE), "--driving", str(DRIVING_WITH_AUDIO),
               "--out", str(out), "--visual", str(visual), "--max-frames", "8", "--batch-size", "8"]) == 0
  info = streams(out)
  assert (info["frames"], info["size"], info["fps"]) == (8, (SIZE, SIZE), 25.0)
  codec, seconds = info["audio"]
  assert codec == "aac" and abs(seconds - 8 / 25) < 0.1  # the driving audio, cut to the 8 frames
  assert streams(visual)["size"] == (3 * SIZE, SIZE)
  # the crop centres the face: the source panel differs from the whole picture squeezed to 64 px
  source_panel = read_video(visual).frames[0, :, :SIZE].astype(float)
  squeezed = np.asarray(Image.open(SOURCE).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR), float)
  assert np.abs(source_panel - squeezed).mean() > 10


def test_absolute_motion_without_crop(checkpoint, media, tmp_path):
  out = tmp_path / "out.mp4"
  source = tmp_path / "source.png"
  Image.fromarray(read_video(CROPPED_CLIP, max_frames=1).frames[0]).save(source)
  assert main(["--checkpoint", str(checkpoint), "--source", str(source), "--driving", str(CROPPED_CLIP), "--out",
               str(out), "--no-crop", "--absolute", "--max-frames", "5", "--batch-size", "8"]) == 0
  info = streams(out)
  assert (info["frames"], info["size"], info["fps"]) == (5, (SIZE, SIZE), 30.0) and "audio" not in info


def test_find_best_frame_picks_the_source_pose(media):
  pytest.importorskip("mediapipe")
  if not LANDMARKER.is_file():
    pytest.skip(f"{LANDMARKER} not found (it lives in ../shared/reference/models)")
  from mcc_jax.evaluation.face_backends import MediaPipeFace
  frames = read_video(CROPPED_CLIP, size=SIZE, max_frames=40).frames[::5]
  with MediaPipeFace(LANDMARKER) as landmarker:
    assert find_best_frame(frames[5], frames, landmarker) == 5


def test_clear_errors(checkpoint, media, tmp_path, capsys, monkeypatch):
  def run(source, driving, *extra):
    code = main(["--checkpoint", str(checkpoint), "--source", str(source), "--driving", str(driving),
                 "--out", str(tmp_path / "out.mp4"), *extra])
    return code, capsys.readouterr().err

  garbage = tmp_path / "garbage.png"
  garbage.write_bytes(b"not an image" * 10)
  code, err = run(garbage, CROPPED_CLIP)
  assert code == 1 and "not a readable image" in err
  code, err = run(SOURCE, garbage)
  assert code == 1 and "not a readable video" in err
  code, err = run(tmp_path / "absent.png", CROPPED_CLIP)
  assert code == 1 and "absent.png" in err

  blank = tmp_path / "blank.png"
  Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank)
  code, err = run(blank, CROPPED_CLIP)
  assert code == 1 and "no face found" in err and "--no-crop" in err

  one_frame = write_video(tmp_path / "one.mp4", read_video(CROPPED_CLIP, max_frames=1).frames, 25.0)
  code, err = run(SOURCE, one_frame, "--no-crop")
  assert code == 1 and "at least 2" in err

  monkeypatch.delenv("MCC_FACE_LANDMARKER", raising=False)
  code, err = run(SOURCE, CROPPED_CLIP, "--find-best-frame", "--max-frames", "3")
  assert code == 1 and "--face-landmarker" in err


def test_audio_that_mp4_cannot_hold_is_reencoded(media, tmp_path):
  """PCM audio (a .wav) becomes AAC, cut at the video's end; AAC audio is copied (above)."""
  tone = tmp_path / "tone.wav"
  with av.open(str(tone), "w") as container:
    stream = container.add_stream("pcm_s16le", rate=16000, layout="mono")
    samples = (np.sin(np.arange(32000) * 2 * np.pi * 440 / 16000) * 8000).astype(np.int16)[None]
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
    frame.sample_rate = 16000
    container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
  frames = read_video(CROPPED_CLIP, max_frames=10).frames[:, :63, :61]  # odd sides are padded to even ones
  out = write_video(tmp_path / "out.mp4", frames, 20.0, audio_from=tone)
  info = streams(out)
  assert (info["frames"], info["size"], info["fps"]) == (10, (62, 64), 20.0)
  codec, seconds = info["audio"]
  assert codec == "aac" and abs(seconds - 0.5) < 0.1
