"""Exporting a training run's model (python -m mcc_jax.export): EMA or raw generator, loadable and trainable from."""
import json

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from configs import tiny
from mcc_jax import export
from mcc_jax.model_checkpoint import load_model, state_arrays
from mcc_jax.models.factory import build_discriminator, build_mcc
from mcc_jax.training.loop import build_networks
from mcc_jax.training.train_state import create_train_state


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A training workdir whose step-7 checkpoint has an EMA generator unlike the trained one."""
  config = tiny.get_config()
  state = create_train_state(build_mcc(config.model, seed=3), build_discriminator(config.model, seed=2),
                             jax.random.key(0))
  state = state.replace(ema=jax.tree.map(lambda x: np.asarray(x) + 1, state.ema))
  workdir = tmp_path_factory.mktemp("run")
  manager = ocp.CheckpointManager((workdir / "checkpoints").absolute())
  manager.save(7, args=ocp.args.Composite(state=ocp.args.StandardSave(state)))
  manager.wait_until_finished()
  manager.close()
  return workdir, state


def _pure(tree) -> dict:
  return jax.tree.map(np.asarray, nnx.to_pure_dict(tree))


def test_exports_the_ema_generator_and_the_trained_motion_estimator(run, tmp_path):
  workdir, state = run
  assert export.main(["--run", str(workdir), "--config", "configs/tiny.py", "--out", str(tmp_path / "m")]) == 0
  model = load_model(tmp_path / "m")
  _, params, rest = nnx.split(model, nnx.Param, ...)
  jax.tree.map(np.testing.assert_array_equal, _pure(params["generator"]), _pure(state.ema))
  jax.tree.map(np.testing.assert_array_equal, _pure(params["motion_estimator"]),
               _pure(state.mcc_params["motion_estimator"]))
  jax.tree.map(np.testing.assert_array_equal, _pure(rest), _pure(state.mcc_rest))
  metadata = json.loads((tmp_path / "m" / "model_config.json").read_text())["metadata"]
  assert (metadata["step"], metadata["generator"]) == (7, "ema")

  config = tiny.get_config()  # a new run can start from it
  config.train.init_from = str(tmp_path / "m")
  started = state_arrays(build_networks(config)[0])
  for path, value in state_arrays(model).items():
    np.testing.assert_array_equal(started[path], value, err_msg=str(path))


def test_raw_generator_and_errors(run, tmp_path, capsys):
  workdir, state = run
  raw = export.export_run(workdir, tiny.get_config(), tmp_path / "raw", use_ema=False)
  _, params, _ = nnx.split(load_model(raw), nnx.Param, ...)
  jax.tree.map(np.testing.assert_array_equal, _pure(params["generator"]), _pure(state.mcc_params["generator"]))

  assert export.main(["--run", str(workdir), "--config", "configs/tiny.py", "--out", str(raw)]) == 1
  assert "exists and is not an empty folder" in capsys.readouterr().err
  assert export.main(["--run", str(tmp_path / "nowhere"), "--config", "configs/tiny.py",
                      "--out", str(tmp_path / "x")]) == 1
  assert "checkpoint not found" in capsys.readouterr().err
  assert export.main(["--run", str(workdir), "--config", "configs/tiny.py", "--step", "8",
                      "--out", str(tmp_path / "y")]) == 1
  assert "no checkpoint at step 8" in capsys.readouterr().err
  other = tiny.get_config()
  other.model.generator.codebook_size_app = 32
  with pytest.raises(ValueError, match="does not match the config's model"):
    export.export_run(workdir, other, tmp_path / "z")
