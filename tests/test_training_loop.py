"""The training loop: exact resume after SIGTERM, a corrupt latest checkpoint skipped, VGG19 refusal, the halt on a
non-finite loss."""
import json
import pathlib
import signal

import pytest

from configs import quickstart

# Four short runs of the loop each compile the full training step (about a minute each on 2 cores; the
# persistent compilation cache does not yet serve them), so this module runs on request: pytest -m training_loop
pytestmark = pytest.mark.training_loop
from mcc_jax.training.loop import train_and_evaluate


def _config(data_dir: str, num_steps: int):
  """The quickstart with the step shapes of tests/test_train_step.py (shared compilations)."""
  config = quickstart.get_config()
  config.model.generator.update(n_layers_motion=1, n_layers_app=1)
  config.data.dir = data_dir
  config.train.update(num_steps=num_steps, net_d_start_iter=0, base_lr=8e-5, milestones=(200_000, 225_000),
                      perceptual_weight=1.0, allow_random_vgg19=True)
  config.checkpoint.update(every_steps=3, keep=3)
  config.log.update(every_steps=3, images_every_steps=6)
  return config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  from input_pipeline.synthetic import write_synthetic_dataset
  return str(write_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), identities=4, clips_per_identity=2,
                                     frames_per_clip=12, size=64, test_fraction=0.25))


def _losses(workdir: pathlib.Path) -> dict[int, float]:
  lines = (workdir / "metrics.jsonl").read_text().splitlines()
  return {record["step"]: record["l_g_total"] for record in map(json.loads, lines)}


def test_resume_after_sigterm_is_exact(data_dir, tmp_path):
  straight = tmp_path / "straight"
  train_and_evaluate(_config(data_dir, 6), straight)

  interrupted = tmp_path / "interrupted"
  def sigterm_at_step_3(step):
    if step == 3:
      signal.raise_signal(signal.SIGTERM)
  train_and_evaluate(_config(data_dir, 6), interrupted, on_step=sigterm_at_step_3)
  assert max(_losses(interrupted)) == 3
  train_and_evaluate(_config(data_dir, 6), interrupted)
  want, got = _losses(straight), _losses(interrupted)
  assert sorted(got) == [1, 2, 3, 4, 5, 6]
  for step in (4, 5, 6):
    assert got[step] == want[step], step
  assert (interrupted / "tensorboard").is_dir()

  # A damaged newest checkpoint: the run reports it, restores step 3 and redoes 4-6 identically.
  for path in (interrupted / "checkpoints" / "6").rglob("*"):
    if path.is_file():
      path.write_bytes(b"damaged")
  (interrupted / "metrics.jsonl").unlink()
  train_and_evaluate(_config(data_dir, 6), interrupted)
  redone = _losses(interrupted)
  assert sorted(redone) == [4, 5, 6]
  for step in (4, 5, 6):
    assert redone[step] == want[step], step


def test_missing_vgg19_refuses_to_start(data_dir, tmp_path):
  config = _config(data_dir, 1)
  config.train.allow_random_vgg19 = False
  with pytest.raises(ValueError, match="vgg19_path"):
    train_and_evaluate(config, tmp_path)


def test_without_perceptual_loss_no_vgg19_is_needed(data_dir, tmp_path):
  config = _config(data_dir, 1)
  config.train.update(perceptual_weight=0.0, allow_random_vgg19=False)
  metrics = train_and_evaluate(config, tmp_path)
  assert metrics["l_g_percep"] == 0.0 and metrics["l_g_percep_lr_0"] == 0.0
  assert metrics["l_g_pix"] > 0.0


def test_non_finite_loss_halts_with_the_batch_ids(data_dir, tmp_path):
  import jax.numpy as jnp

  from mcc_jax.model_checkpoint import save_model
  from mcc_jax.models.factory import build_mcc
  from mcc_jax.training.loop import NonFiniteLossError
  config = _config(data_dir, 2)
  model = build_mcc(config.model, seed=config.seed)
  model.generator.position_emb_app[...] = jnp.full_like(model.generator.position_emb_app[...], jnp.nan)
  config.train.init_from = str(save_model(model, config.model, tmp_path / "poisoned"))
  with pytest.raises(NonFiniteLossError, match="at step 1"):
    train_and_evaluate(config, tmp_path / "run")
  record = json.loads((tmp_path / "run" / "nonfinite_batch.json").read_text())
  assert record["step"] == 1 and len(record["item_index"]) == config.train.global_batch_size
  assert not (tmp_path / "run" / "checkpoints" / "1").exists()  # the poisoned state is not saved
