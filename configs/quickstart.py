"""Train the tiny MCC on synthetic talking faces on a CPU (300 steps: about 18 minutes on 2 cores).

  python train.py --config configs/quickstart.py --workdir workdir/quickstart

The synthetic dataset is written into the workdir on first use. No VGG19 weights ship with the project, so this
config explicitly asks for a random VGG19 in the perceptual loss (a random-feature perceptual loss still trains,
but it is not the official loss): set `--config.train.vgg19_path=vgg19-dcbb9e9d.pth` for the real one.
"""
import ml_collections

from configs import tiny


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = tiny.get_config(arg)
  config.data.update(repeat=25, synthetic=dict(identities=8, clips_per_identity=3, frames=32, test_fraction=0.25))
  config.train.update(num_steps=300, global_batch_size=8, net_d_start_iter=200, milestones=(250, 280),
                      base_lr=2e-4, allow_random_vgg19=True)
  config.checkpoint.update(every_steps=100, keep=2)
  config.log.update(every_steps=10, images_every_steps=100)
  return config
