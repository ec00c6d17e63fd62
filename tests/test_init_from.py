"""Training from a saved model (config.train.init_from): its variables, the config's compute dtype, a mismatch refused."""
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from mcc_jax.model_checkpoint import save_model, state_arrays
from mcc_jax.models.factory import build_mcc
from mcc_jax.training.loop import build_networks


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
  config = tiny.get_config()
  model = build_mcc(config.model, seed=7)
  return save_model(model, config.model, tmp_path_factory.mktemp("init")), state_arrays(model)


def test_starts_from_the_saved_variables_in_the_configured_dtype(saved):
  directory, want = saved
  config = tiny.get_config()
  config.model.dtype = "bfloat16"
  config.train.init_from = str(directory)
  mcc, _ = build_networks(config)
  got = state_arrays(mcc)
  assert sorted(got) == sorted(want)
  for path, value in want.items():
    np.testing.assert_array_equal(got[path], value, err_msg=str(path))
  assert mcc.generator.encoder.blocks[1].conv1.dtype == jnp.bfloat16
  fresh = state_arrays(build_mcc(tiny.get_config().model, seed=0))
  assert any(not np.array_equal(fresh[p], want[p]) for p in want)


def test_a_different_architecture_is_refused(saved):
  directory, _ = saved
  config = tiny.get_config()
  config.model.generator.nf = 16
  config.train.init_from = str(directory)
  with pytest.raises(ValueError, match="different generator.*nf saved 32 vs config 16"):
    build_networks(config)


def test_a_missing_checkpoint_is_reported(tmp_path):
  config = tiny.get_config()
  config.train.init_from = str(tmp_path / "nowhere")
  with pytest.raises(FileNotFoundError, match="model_config.json is missing"):
    build_networks(config)
