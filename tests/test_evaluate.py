"""The evaluation job end to end: a tiny checkpoint on real clips, both protocols, baselines, data sources, pairs
CSVs, training checkpoints and the command line."""
import csv
import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx
from PIL import Image

from configs import tiny
from conftest import REAL_MEDIA
from mcc_jax.evaluation.checkpoint_loading import load_for_evaluation
from mcc_jax.evaluation.job import EvaluationOptions, run_evaluation
from mcc_jax.evaluation.metric_suite import MetricOptions
from mcc_jax.evaluation.pairs import ClipTask
from mcc_jax.evaluation.predictors import ModelPredictor, predict_task
from mcc_jax.io.images import to_uint8
from mcc_jax.io.video import read_video
from mcc_jax.model_checkpoint import save_model
from mcc_jax.models.factory import build_discriminator, build_mcc
from mcc_jax.training.sharding import make_mesh
from mcc_jax.training.train_state import create_train_state

CROPS = REAL_MEDIA / "crops256"
LANDMARKER = REAL_MEDIA.parent / "reference" / "models" / "face_landmarker_v2_with_blendshapes.task"
CLIPS = ("fomm_00", "retalking_face1")  # two people
SIZE = 64
FRAMES = 6
STEP = 1234


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> pathlib.Path:
  config = tiny.get_config().model
  return save_model(build_mcc(config, seed=3), config, tmp_path_factory.mktemp("ckpt"), metadata={"step": STEP})


@pytest.fixture(scope="module")
def loaded(checkpoint):
  """The checkpoint loaded once (loading traces the model: seconds); run_evaluation takes it as `loaded`."""
  return load_for_evaluation(checkpoint)


@pytest.fixture(scope="module")
def video_folder(tmp_path_factory) -> pathlib.Path:
  if not all((CROPS / f"{clip}.mp4").is_file() for clip in CLIPS):
    pytest.skip(f"real face clips not found in {CROPS} (they live in ../shared/real_media)")
  folder = tmp_path_factory.mktemp("videos")
  for clip in CLIPS:
    (folder / f"{clip}.mp4").symlink_to(CROPS / f"{clip}.mp4")
  (folder / "still.png").symlink_to(CROPS / "tpsmm_source.png")  # a loose picture is not a clip
  return folder


@pytest.fixture(scope="module")
def frames(video_folder) -> dict:
  return {clip: read_video(video_folder / f"{clip}.mp4", size=SIZE, max_frames=FRAMES + 1).frames for clip in CLIPS}


def read_csv(path) -> list[dict]:
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def result_frames(workdir, clip: str) -> np.ndarray:
  paths = sorted((workdir / "results" / clip).glob("*.png"))
  return np.stack([np.asarray(Image.open(p)) for p in paths])


def l1_and_psnr(results: np.ndarray, targets: np.ndarray) -> tuple[float, float]:
  diff = results.astype(np.float64) - targets.astype(np.float64)
  mse = (diff ** 2).mean(axis=(1, 2, 3))
  return float(np.abs(diff).mean() / 255), float(np.mean(10 * np.log10(255 ** 2 / mse)))


def test_reconstruction_on_real_clips(checkpoint, loaded, video_folder, frames, tmp_path):
  landmarker = str(LANDMARKER) if LANDMARKER.is_file() else None
  options = EvaluationOptions(
      checkpoint=str(checkpoint), data=str(video_folder), workdir=str(tmp_path), max_frames=FRAMES, batch_size=8,
      num_videos=1, save_frames=True, progress=False,
      metrics=MetricOptions(metrics=("l1", "psnr", "ssim", "lpips", "akd", "aed", "csim", "pose_error"),
                            face_landmarker=landmarker))
  summary = run_evaluation(options, loaded=loaded)
  written = json.loads((tmp_path / "summary.json").read_text())
  assert written["mode"] == "reconstruction" and written["predictor"] == "model"
  assert (written["clips"], written["frames"]) == (2, 2 * FRAMES)
  assert written["checkpoint"]["step"] == STEP and written["checkpoint"]["kind"] == "model checkpoint"
  assert written["config"]["model"] == json.loads(json.dumps(tiny.get_config().model.to_dict()))
  assert written["data"]["image_size"] == SIZE and written["settings"]["devices"] == jax.device_count() == 8
  assert "--lpips-backbone" in written["skipped"]["lpips"] and "lpips" not in written["metrics"]
  for metric in ("l1", "psnr", "ssim", "aed", "csim"):
    assert written["metrics"][metric]["backend"], metric
  if landmarker is None:
    assert "--face-landmarker" in written["skipped"]["akd"]
  else:
    assert written["metrics"]["akd"]["backend"].startswith("mediapipe")

  rows = read_csv(tmp_path / "per_clip.csv")
  assert [r["clip"] for r in rows] == list(CLIPS)
  for row in rows:
    clip = row["clip"]
    assert (row["source"], row["driving"], int(row["frames"]), row["anchor_index"]) == (f"{clip}/0", clip, FRAMES, "")
    results = result_frames(tmp_path, clip)
    assert results.shape == (FRAMES, SIZE, SIZE, 3)
    l1, psnr = l1_and_psnr(results, frames[clip][:FRAMES])
    np.testing.assert_allclose(float(row["l1"]), l1, rtol=1e-6)
    np.testing.assert_allclose(float(row["psnr"]), psnr, rtol=1e-5)
    assert 0 <= int(row["aed_frames"]) <= FRAMES
  overall = sum(float(r["l1"]) * int(r["frames"]) for r in rows) / sum(int(r["frames"]) for r in rows)
  np.testing.assert_allclose(summary["metrics"]["l1"]["value"], overall, rtol=1e-9)

  # The batched, sharded, padded evaluation gives the model's own forward pass (second clip, frame 3: the second
  # batch, after the first clip's rows).
  source, driving = (jnp.asarray(frames[CLIPS[1]][i][None], jnp.float32) / 127.5 - 1 for i in (0, 3))
  expected = to_uint8(np.asarray(loaded.model.reconstruct(source, driving)["image"][0]))
  difference = np.abs(expected.astype(int) - result_frames(tmp_path, CLIPS[1])[3])
  assert difference.max() <= 1 and (difference > 0).mean() < 0.01

  video = read_video(tmp_path / written["outputs"]["videos"][0])
  assert written["outputs"]["videos"] == ["videos/fomm_00.mp4"]
  assert video.frames.shape == (FRAMES, SIZE, 3 * SIZE, 3)
  assert (tmp_path / "pairs.csv").read_text().splitlines() == ["source,driving", "fomm_00/0,fomm_00",
                                                               "retalking_face1/0,retalking_face1"]


def test_cross_identity_relative_motion(checkpoint, loaded, video_folder, frames, tmp_path):
  options = EvaluationOptions(
      checkpoint=str(checkpoint), data=str(video_folder), workdir=str(tmp_path), mode="cross_identity",
      max_frames=4, batch_size=8, num_videos=0, save_frames=True, progress=False,
      metrics=MetricOptions(metrics=("csim",)))
  summary = run_evaluation(options, loaded=loaded)
  assert summary["metrics"]["csim"]["compares"] == "result vs source"
  rows = read_csv(tmp_path / "per_clip.csv")
  assert [(r["clip"], r["source"], r["driving"], r["frames"], r["anchor_index"]) for r in rows] == [
      ("retalking_face1_f0__fomm_00", "retalking_face1/0", "fomm_00", "4", "0"),
      ("fomm_00_f0__retalking_face1", "fomm_00/0", "retalking_face1", "4", "0")]
  assert (tmp_path / "pairs.csv").read_text().splitlines()[:2] == ["source,driving,anchor_idx",
                                                                   "retalking_face1/0,fomm_00,0"]

  # The anchor frame (the clip's frame 1: the official loader leaves frame 0 out) moves the source keypoints by
  # nothing, so its result is the source animated by itself with absolute motion.
  mesh = make_mesh()
  predictor = ModelPredictor(loaded.model, mesh)
  source = frames[CLIPS[1]][0]
  itself = predict_task(predictor, ClipTask("itself", "", "", source, source[None], 25.0), mesh, batch_size=8)[0]
  anchored = result_frames(tmp_path, rows[0]["clip"])[0]
  difference = np.abs(itself.astype(int) - anchored)
  assert difference.max() <= 2 and (difference > 0).mean() < 0.01
  assert np.abs(result_frames(tmp_path, rows[0]["clip"])[3].astype(int) - anchored).mean() > 0.5

  # adapt_scale: sqrt of the ratio of the keypoint hull areas of the source and the anchor frame
  spatial = pytest.importorskip("scipy.spatial")
  task = ClipTask("t", "", "", source, frames[CLIPS[0]][1:5], 25.0, anchor_index=0)
  kp = predictor.keypoints(np.stack([source, task.driving[0]]))["value"].astype(np.float64)
  expected = np.sqrt(spatial.ConvexHull(kp[0]).volume / spatial.ConvexHull(kp[1]).volume)
  np.testing.assert_allclose(predictor.prepare(task)["scale"], expected, rtol=1e-5)


@pytest.fixture(scope="module")
def prepared_dataset(tmp_path_factory, frames) -> pathlib.Path:
  """A dataset as input_pipeline.prepare writes it (out/clips + out/data), holding the real frames."""
  from input_pipeline.clip_store import ClipMeta, ClipStore, encode_jpeg
  from input_pipeline.face_dataset import build_dataset
  out = tmp_path_factory.mktemp("prepared")
  store = ClipStore(out / "clips")
  for clip in CLIPS:
    meta = ClipMeta(clip_id=clip, identity=clip, source_path=str(CROPS / f"{clip}.mp4"), num_frames=FRAMES,
                    boxes=[[0, 0, SIZE, SIZE]] * FRAMES, fps=30.0, split="test")
    store.write(meta, [encode_jpeg(f) for f in frames[clip][:FRAMES]])
  build_dataset(store.root, out / "data")
  return out


def test_copy_source_baseline_on_prepared_dataset(checkpoint, loaded, prepared_dataset, tmp_path):
  from input_pipeline.pipeline import iterate_clips
  stored = {c["clip_id"]: c["frames"] for c in iterate_clips(prepared_dataset / "data", "test", image_size=SIZE)}
  summary = run_evaluation(EvaluationOptions(
      checkpoint=str(checkpoint), data=str(prepared_dataset), workdir=str(tmp_path), predictor="copy_source",
      batch_size=8, num_videos=0, progress=False, metrics=MetricOptions(metrics=("l1", "psnr"))), loaded=loaded)
  rows = {r["clip"]: r for r in read_csv(tmp_path / "per_clip.csv")}
  assert sorted(rows) == sorted(CLIPS) and summary["predictor"] == "copy_source"
  for clip, clip_frames in stored.items():
    expected = np.abs(clip_frames.astype(np.float64) - clip_frames[:1]).mean() / 255
    np.testing.assert_allclose(float(rows[clip]["l1"]), expected, rtol=1e-6)
    assert rows[clip]["psnr"] == "inf"  # frame 0 is the source itself, and the official PSNR is inf there
  written = json.loads((tmp_path / "summary.json").read_text())
  assert written["metrics"]["psnr"]["value"] == "inf"
  assert written["data"]["clips"].startswith("dataset")


def test_official_pairs_csv_with_frame_files_and_clip_references(checkpoint, loaded, prepared_dataset, frames,
                                                                tmp_path):
  """PairsList rows: frame image files for one clip, `<clip>/<frame>` references for the other."""
  folder = tmp_path / "frames" / "retalking_face1.mp4"  # FOMM's frame folders are named *.mp4
  folder.mkdir(parents=True)
  for i, frame in enumerate(frames["retalking_face1"][:FRAMES]):
    Image.fromarray(frame).save(folder / f"{i:07d}.png")
  pairs = tmp_path / "pairs.csv"
  lines = ["source,driving,anchor"]
  lines += [f"{folder / '0000000.png'},{folder / f'{i:07d}.png'},{folder / '0000000.png'}" for i in (2, 4, 5)]
  lines += [f"fomm_00/0,fomm_00/{i}," for i in (1, 3)]
  pairs.write_text("\n".join(lines) + "\n")
  run_evaluation(EvaluationOptions(
      checkpoint=str(checkpoint), data=str(prepared_dataset), workdir=str(tmp_path / "out"), pairs=str(pairs),
      predictor="copy_source", batch_size=8, num_videos=0, progress=False, metrics=MetricOptions(metrics=("l1",))),
      loaded=loaded)
  rows = read_csv(tmp_path / "out" / "per_clip.csv")
  assert [(r["clip"], r["frames"]) for r in rows] == [("retalking_face1_0000000__retalking_face1", "3"),
                                                      ("fomm_00", "2")]
  png = np.stack([np.asarray(Image.open(folder / f"{i:07d}.png")) for i in (0, 2, 4, 5)])
  np.testing.assert_allclose(float(rows[0]["l1"]), np.abs(png[1:].astype(float) - png[0]).mean() / 255, rtol=1e-6)
  from input_pipeline.pipeline import iterate_clips
  stored = next(c["frames"] for c in iterate_clips(prepared_dataset / "data", "test", image_size=SIZE)
                if c["clip_id"] == "fomm_00")
  np.testing.assert_allclose(float(rows[1]["l1"]), np.abs(stored[[1, 3]].astype(float) - stored[0]).mean() / 255,
                             rtol=1e-6)


def test_training_checkpoint_gives_the_ema_generator(loaded, tmp_path):
  config = tiny.get_config().model
  state = create_train_state(loaded.model, build_discriminator(config, seed=2), jax.random.key(0))
  state = state.replace(ema=jax.tree.map(lambda x: np.asarray(x) + 1, state.ema))  # numpy: no per-shape compiles
  manager = ocp.CheckpointManager((tmp_path / "run" / "checkpoints").absolute())
  manager.save(7, args=ocp.args.Composite(state=ocp.args.StandardSave(state)))
  manager.wait_until_finished()
  manager.close()
  with pytest.raises(ValueError, match="--config"):
    load_for_evaluation(tmp_path / "run")
  loaded = load_for_evaluation(tmp_path / "run", config)
  assert (loaded.step, loaded.kind, loaded.generator_weights) == (7, "training checkpoint", "ema")
  _, params, rest = nnx.split(loaded.model, nnx.Param, ...)
  for ours, saved in ((params["generator"], state.ema), (params["motion_estimator"],
                                                         state.mcc_params["motion_estimator"]), (rest, state.mcc_rest)):
    jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(ours), nnx.to_pure_dict(saved))
  assert loaded.dtype == "float32" and loaded.model.generator.encoder.blocks[1].conv1.dtype == jnp.float32
  config.dtype = "bfloat16"  # a bf16 training run is evaluated in bf16 unless asked otherwise
  assert load_for_evaluation(tmp_path / "run", config).model.generator.encoder.blocks[1].conv1.dtype == jnp.bfloat16
  assert load_for_evaluation(tmp_path / "run", config, dtype="float32").dtype == "float32"


def test_compute_dtype_of_a_model_checkpoint(checkpoint):
  loaded = load_for_evaluation(checkpoint, dtype="bfloat16")
  assert loaded.dtype == "bfloat16" and loaded.model.generator.encoder.blocks[1].conv1.dtype == jnp.bfloat16
  assert loaded.model.motion_estimator.kp_detector.predictor.encoder.down_blocks[0].conv.dtype == jnp.float32
  with pytest.raises(ValueError, match="dtype must be one of"):
    load_for_evaluation(checkpoint, dtype="float16")


def test_clear_errors(checkpoint, loaded, video_folder, tmp_path):
  def evaluate(**overrides):
    values = dict(checkpoint=str(checkpoint), data=str(video_folder), workdir=str(tmp_path / "out"),
                  predictor="copy_source", progress=False, metrics=MetricOptions(metrics=("l1",)))
    values.update(overrides)
    return run_evaluation(EvaluationOptions(**values), loaded=loaded)

  with pytest.raises(FileNotFoundError, match="--data not found"):
    evaluate(data=str(tmp_path / "absent"))
  (tmp_path / "empty").mkdir()
  with pytest.raises(ValueError, match="holds no videos"):
    evaluate(data=str(tmp_path / "empty"))
  with pytest.raises(FileNotFoundError, match="neither an mcc_jax model checkpoint"):
    load_for_evaluation(tmp_path / "empty")
  bad_pairs = tmp_path / "bad.csv"
  bad_pairs.write_text("source,target\na,b\n")
  with pytest.raises(ValueError, match="no 'driving' column"):
    evaluate(pairs=str(bad_pairs))
  with pytest.raises(ValueError, match="clips not in"):
    evaluate(clips=("nobody",))
  with pytest.raises(ValueError, match="at least two identities"):
    evaluate(mode="cross_identity", clips=("fomm_00",), metrics=MetricOptions(metrics=("aed",)))
  with pytest.raises(ValueError, match="need ground truth"):
    evaluate(mode="cross_identity", metrics=MetricOptions(metrics=("l1",)))


def test_command_line(checkpoint, video_folder, tmp_path):
  root = pathlib.Path(__file__).resolve().parents[1]
  command = [sys.executable, str(root / "evaluate.py"), f"--checkpoint={checkpoint}", f"--data={video_folder}",
             f"--workdir={tmp_path}", "--predictor=copy_driving", "--metrics=l1", "--max-frames=2", "--num-videos=0",
             "--clips=retalking_face1", "--dtype=bfloat16"]
  done = subprocess.run(command, capture_output=True, text=True, cwd=root, timeout=300,
                        env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"})
  assert done.returncode == 0, done.stderr[-2000:]
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert (summary["clips"], summary["frames"], summary["metrics"]["l1"]["value"]) == (1, 2, 0.0)
  assert summary["settings"]["dtype"] == "bfloat16"
