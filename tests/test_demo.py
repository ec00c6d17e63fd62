"""The README's main job: the demo, on the built-in synthetic face and on a saved checkpoint."""
import numpy as np
from PIL import Image

from configs import tiny
from mcc_jax.demo import main
from mcc_jax.model_checkpoint import save_model
from mcc_jax.models.factory import build_mcc


def test_demo_default(tmp_path):
  out = tmp_path / "demo.png"
  assert main(["--out", str(out)]) == 0
  picture = np.asarray(Image.open(out))
  assert picture.shape == (64, 5 * 64, 3)
  assert picture[:, :64].std() > 10  # the synthetic source face, not a blank


def test_demo_with_checkpoint_and_images(tmp_path):
  config = tiny.get_config().model
  save_model(build_mcc(config, seed=3), config, tmp_path / "ckpt")
  face = (np.random.default_rng(0).uniform(0, 255, (80, 80, 3))).astype(np.uint8)
  Image.fromarray(face).save(tmp_path / "face.png")
  out = tmp_path / "demo.png"
  assert main(["--checkpoint", str(tmp_path / "ckpt"), "--source", str(tmp_path / "face.png"),
               "--driving", str(tmp_path / "face.png"), "--out", str(out)]) == 0
  assert np.asarray(Image.open(out)).shape == (64, 5 * 64, 3)


def test_demo_reports_missing_image(tmp_path, capsys):
  assert main(["--source", str(tmp_path / "absent.png"), "--driving", str(tmp_path / "absent.png"),
               "--out", str(tmp_path / "demo.png")]) == 1
  assert "absent.png" in capsys.readouterr().err
