"""The converter: exact round trips, official key sets, and clear errors for checkpoints that do not fit."""
import numpy as np
import pytest

import parity_support as ps
from configs import paper, tiny
from mcc_jax.convert import CheckpointMismatchError, export_state_dict, load_state_dict
from mcc_jax.model_checkpoint import load_model, save_model, state_arrays
from mcc_jax.models.factory import build_discriminator, build_mcc


@pytest.fixture(scope="module")
def tiny_models():
  config = tiny.get_config().model
  return build_mcc(config, seed=0), build_mcc(config, seed=1)


def test_round_trip_is_exact(tiny_models):
  """Flax -> torch state_dict -> Flax reproduces every variable bit for bit (a model with other weights)."""
  source, target = tiny_models
  for name in ("generator", "motion_estimator"):
    before = state_arrays(getattr(target, name))
    load_state_dict(getattr(target, name), export_state_dict(getattr(source, name)))
    after, want = state_arrays(getattr(target, name)), state_arrays(getattr(source, name))
    assert after.keys() == want.keys()
    assert any(not np.array_equal(before[k], want[k]) for k in want)
    for path in want:
      np.testing.assert_array_equal(after[path], want[path], err_msg=str(path))


def _exported_generator(tiny_models):
  return export_state_dict(tiny_models[0].generator)


def test_missing_key_is_named(tiny_models):
  state_dict = _exported_generator(tiny_models)
  del state_dict["refine.conv1.weight"]
  with pytest.raises(CheckpointMismatchError, match=r"missing keys \(1\):\s+refine\.conv1\.weight"):
    load_state_dict(tiny_models[1].generator, state_dict, name="net_g")


def test_unexpected_key_is_named(tiny_models):
  state_dict = _exported_generator(tiny_models)
  state_dict["refine.convc2.weight"] = np.zeros((3, 3), np.float32)
  with pytest.raises(CheckpointMismatchError, match=r"unexpected keys \(1\):\s+refine\.convc2\.weight"):
    load_state_dict(tiny_models[1].generator, state_dict, name="net_g")


def test_wrong_shape_is_named(tiny_models):
  state_dict = _exported_generator(tiny_models)
  state_dict["quantize_app.embedding.weight"] = np.zeros((7, 64), np.float32)
  with pytest.raises(CheckpointMismatchError, match=r"quantize_app\.embedding\.weight: checkpoint \(7, 64\), "
                                                    r"model expects \(64, 64\)"):
    load_state_dict(tiny_models[1].generator, state_dict, name="net_g")


def test_ddp_prefix_is_stripped(tiny_models):
  source, target = tiny_models
  state_dict = {"module." + k: v for k, v in export_state_dict(source.motion_estimator).items()}
  load_state_dict(target.motion_estimator, state_dict)
  np.testing.assert_array_equal(target.motion_estimator.kp_detector.kp.kernel[...],
                                source.motion_estimator.kp_detector.kp.kernel[...])


@pytest.mark.skipif(not ps.KEYS_TSV.exists(), reason=ps.skip_reason())
def test_export_matches_official_key_list():
  """The exported state_dicts of the paper config have exactly the official keys and shapes (torch layout),
  num_batches_tracked included, so the official code loads them with strict=True."""
  config = paper.get_config().model
  model = build_mcc(config)
  exported = {"net_g": export_state_dict(model.generator),
              "net_motion_estimator": export_state_dict(model.motion_estimator),
              "net_d": export_state_dict(build_discriminator(config))}
  for net, keys in ps.official_keys().items():
    assert set(exported[net]) == set(keys), net
    for key, shape in keys.items():
      assert exported[net][key].shape == shape, f"{net}/{key}"


def test_model_checkpoint_round_trip(tiny_models, tmp_path):
  model = tiny_models[0]
  save_model(model, tiny.get_config().model, tmp_path / "ckpt", metadata={"note": "test"})
  restored = load_model(tmp_path / "ckpt")
  want, got = state_arrays(model), state_arrays(restored)
  assert want.keys() == got.keys()
  for path in want:
    np.testing.assert_array_equal(got[path], want[path], err_msg=str(path))


def test_load_model_reports_missing_directory(tmp_path):
  with pytest.raises(FileNotFoundError, match="not an mcc_jax model checkpoint"):
    load_model(tmp_path)


def test_read_torch_checkpoint_errors(tmp_path):
  pytest.importorskip("torch")
  from mcc_jax.convert import read_torch_checkpoint
  with pytest.raises(FileNotFoundError):
    read_torch_checkpoint(tmp_path / "absent.pth")
  text = tmp_path / "notes.pth"
  text.write_text("not a checkpoint")
  with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
    read_torch_checkpoint(text)
  import torch
  other = tmp_path / "other.pth"
  torch.save({"weights": {"a": torch.zeros(1)}, "step": 3}, other)
  with pytest.raises(KeyError, match="top-level keys are"):
    read_torch_checkpoint(other, ("params",))


def test_float64_without_x64_is_refused():
  from mcc_jax.convert import mcc_from_state_dicts
  import jax.numpy as jnp
  with pytest.raises(ValueError, match="jax_enable_x64"):
    mcc_from_state_dicts({}, {}, dtype=jnp.float64)
