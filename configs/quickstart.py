"""Train the tiny MCC on synthetic talking faces on a CPU (1000 steps: 25-40 minutes on 2 cores).

  python train.py --config configs/quickstart.py --workdir workdir/quickstart
  python benchmarks/quickstart_learning.py --workdir workdir/quickstart   # held-out identities vs copying the source

The synthetic dataset is written into the workdir on first use. No VGG19 weights ship with the project, so the
perceptual loss is off (it is also most of a 64 px model's step); every other official term is on. For the
official loss pass `--config.train.perceptual_weight=1 --config.train.vgg19_path=vgg19-dcbb9e9d.pth`.
"""
import ml_collections

from configs import tiny


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = tiny.get_config(arg)
  # Many identities: with a handful the generator memorises their faces instead of learning to move the source.
  config.data.update(repeat=25, synthetic=dict(identities=64, clips_per_identity=1, frames=32, test_fraction=0.125))
  config.train.update(num_steps=1000, global_batch_size=8, net_d_start_iter=800, milestones=(800, 900),
                      base_lr=2e-4, perceptual_weight=0.0)
  config.checkpoint.update(every_steps=200, keep=6)
  config.log.update(every_steps=10, images_every_steps=100)
  return config
